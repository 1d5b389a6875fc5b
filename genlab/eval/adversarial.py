"""Probes of a BiGAN/ALI encoder: reconstruction G(E(x)) and linear classification of E(x).

Donahue et al. 2017 ("Adversarial Feature Learning", arXiv:1605.09782) judge
the encoder by how well a simple classifier separates classes from its
features; Dumoulin et al. 2017 (arXiv:1606.00704) show reconstructions
G(E(x)). A BiGAN's reconstructions are semantic rather than pixel-exact (the
game has no reconstruction loss), so the reconstruction error is reported next
to the error of a "reconstruction" of a different test image, the level that
ignoring x entirely would reach. For the same reason the semantic test is
classifier agreement: the dataset's shipped classifier (mnist-lenet-v1,
fashion-mnist-lenet-v1) labels x and G(E(x)), and the fraction of equal
labels is reported next to the agreement between G(E(x)) and a different test
image (chance level). The probe accuracy is reported next to the same probe on
a randomly initialised encoder of the same architecture and on raw pixels.
The spread of the codes (``code_std``, next to the prior's) catches the
classic failure in which the encoder maps every image to one code.

Protocol (``bigan-probe``): ``n`` test images in a seeded random order
(n = opts.max_examples, or the whole split); the first half fits a
standardised multinomial logistic regression (scikit-learn, L2, C = 1), the
second half scores it. Encoder features are the deterministic code (the
posterior mean for ALI's Gaussian encoder).
"""

from __future__ import annotations

import numpy as np
import torch

from genlab.data.base import ImageSet
from genlab.errors import InputError
from genlab.eval.features import domain_feature_net, extract
from genlab.eval.metric import metric
from genlab.eval.probe import linear_probe_accuracy
from genlab.nn.modes import eval_mode
from genlab.registry import EVALUATORS
from genlab.rng import random_subset

PRIOR_DRAWS = 10000  # prior draws behind the reference spread of the code_std metric


@torch.no_grad()
def _in_batches(model, fn, inputs: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """fn over ``inputs`` in batches on ``device`` with the model in eval mode; float32 results on CPU."""
    with eval_mode(model):
        return torch.cat([fn(inputs[start:start + batch_size].to(device)).float().cpu()
                          for start in range(0, inputs.shape[0], batch_size)])


def encode_all(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """E(x) for (N, C, H, W) images in [0, 1] -> (N, latent_dim) on CPU, encoder in eval mode."""
    return _in_batches(model, model.encode, images, batch_size, images.device)


def generate_all(model, codes: torch.Tensor, device, batch_size: int = 256) -> torch.Tensor:
    """G(z) for codes (N, latent_dim) -> images (N, C, H, W) in [0, 1] on CPU, generator in eval mode."""
    return _in_batches(model, model.generate, codes, batch_size, device).clamp(0, 1)


def reconstruct_all(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """G(E(x)) for (N, C, H, W) images in [0, 1] -> (N, C, H, W) in [0, 1] on CPU."""
    return generate_all(model, encode_all(model, images, batch_size), images.device, batch_size)


def reconstruction_errors(recon: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean squared error of G(E(x)) against x and against the next image x'.

    Args:
        recon: G(E(images)) (``reconstruct_all``), (N, C, H, W) in [0, 1].
        images: (N, C, H, W) in [0, 1], N >= 2.

    Returns:
        (mse_self (N,), mse_other (N,)): error of G(E(x_i)) against x_i, and against
        x_{i+1 mod N}, per sub-pixel on the [0, 1] scale.
    """
    if images.shape[0] < 2:
        raise InputError("the reconstruction probe needs at least 2 images")
    x = images.float().cpu()
    mse_self = (recon - x).pow(2).flatten(1).mean(1)
    mse_other = (recon - x.roll(-1, dims=0)).pow(2).flatten(1).mean(1)
    return mse_self, mse_other


def class_agreement(classes_x: torch.Tensor, classes_recon: torch.Tensor) -> tuple[float, float]:
    """Fraction of i with class(G(E(x_i))) == class(x_i), and with class(G(E(x_i))) == class(x_{i+1 mod N}).

    The second number is the agreement an encoder that ignored x would reach: chance level for
    the class frequencies of the evaluated images.
    """
    if classes_x.shape != classes_recon.shape or classes_x.ndim != 1 or classes_x.numel() < 2:
        raise InputError("class_agreement takes two label vectors of the same length N >= 2")
    same = (classes_recon == classes_x).double().mean().item()
    other = (classes_recon == classes_x.roll(-1, dims=0)).double().mean().item()
    return same, other


def _subset(data: ImageSet, opts) -> tuple[torch.Tensor, torch.Tensor]:
    if data.labels is None:
        raise InputError(f"the bigan probe needs a labelled test set; {data.name} has no labels")
    n = len(data) if opts.max_examples is None else min(len(data), opts.max_examples)
    if n < 20:
        raise InputError(f"the bigan probe needs at least 20 test images (got {n}); raise --max-examples")
    order = random_subset(len(data), n, opts.seed)
    batch = data.batch(order.to(data.images.device), torch.Generator(device=data.images.device).manual_seed(opts.seed))
    return batch["x"], batch["y"].cpu()


@EVALUATORS.register("bigan-probe")
def evaluate_bigan_probe(model, objective, data: ImageSet, device, opts) -> dict:
    """Reconstruction error of G(E(x)) and linear-probe accuracy of E(x); see the module docstring."""
    x, y = _subset(data, opts)
    x = x.to(device)
    n = x.shape[0]
    half = n // 2
    where = f"{data.name}/{data.split}, {n} images (seeded order, seed {opts.seed})"

    codes = encode_all(model, x, opts.batch_size)  # the probe's features, and decoded for the reconstructions
    recon = generate_all(model, codes, device, opts.batch_size)
    mse_self, mse_other = reconstruction_errors(recon, x)
    recon_proto = f"{where}; mean over images of the per-sub-pixel squared error, [0, 1] scale"

    feats = codes.numpy()
    with torch.random.fork_rng(devices=[]):  # a seeded untrained encoder and prior draws; global RNG left as it was
        torch.manual_seed(opts.seed)
        random_model = type(model)(model.cfg, model.data).to(device)
        prior_std = model.sample_latent(PRIOR_DRAWS).std(0).mean().item()
    random_feats = encode_all(random_model, x, opts.batch_size).numpy()
    pixels = x.flatten(1).cpu().numpy()
    yy = y.numpy()

    def probe(f):
        return linear_probe_accuracy(f[:half], yy[:half], f[half:], yy[half:])

    probe_proto = (f"{where}; logistic regression (standardised features, L2, C=1) fit on the first {half}, "
                   f"accuracy on the other {n - half}")
    records = {
        "recon_mse": metric(mse_self.mean().item(), "mse per sub-pixel", "estimate",
                            recon_proto + "; G(E(x)) against x"),
        "recon_mse_other_image": metric(mse_other.mean().item(), "mse per sub-pixel", "estimate",
                                        recon_proto + "; G(E(x)) against a different test image (reference)"),
        # A collapsed encoder (one code for every image) is the classic BiGAN failure; it shows here first.
        "code_std": metric(float(feats.std(axis=0, ddof=1).mean()), "", "estimate",
                           f"{where}; standard deviation of E(x) over the images, mean over the {feats.shape[1]} "
                           f"latent dimensions; the prior's is {prior_std:.3f} ({PRIOR_DRAWS} draws), a collapsed encoder's ~0"),
        "probe_accuracy": metric(probe(feats), "fraction", "estimate", probe_proto + "; features E(x)"),
        "probe_accuracy_random_encoder": metric(probe(random_feats), "fraction", "estimate",
                                                probe_proto + f"; features of an untrained encoder (seed {opts.seed})"),
        "probe_accuracy_pixels": metric(probe(pixels), "fraction", "estimate", probe_proto + "; raw pixels"),
    }
    records.update(_classifier_agreement(x, recon, data.name, where, device, opts))
    return records


def _classifier_agreement(x: torch.Tensor, recon: torch.Tensor, data_name: str, where: str, device, opts) -> dict:
    """Agreement of the dataset's shipped classifier on x and G(E(x)); nothing for datasets without one."""
    net = domain_feature_net(data_name, opts, device)
    if net is None:
        return {}
    name = net.name
    classes_x = extract(net, x.float()).logits.argmax(1)
    classes_recon = extract(net, recon).logits.argmax(1)
    same, other = class_agreement(classes_x, classes_recon)
    proto = (f"{where}; fraction of images whose {name} class (test accuracy {net.test_accuracy} % on real "
             f"{net.dataset}) is the same for G(E(x))")
    return {
        f"recon_class_agreement_{name}": metric(same, "fraction", "estimate", proto + " and x", feature_net=name),
        f"recon_class_agreement_other_image_{name}": metric(
            other, "fraction", "estimate", proto + " and a different test image (chance reference)", feature_net=name),
    }
