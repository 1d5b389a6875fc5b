"""`genlab eval` for unpaired translation (CycleGAN): what a translation keeps, measured without a human.

For each direction d (a2b: domain A = ``data.name`` -> B = ``data.domain_b``; b2a: back) on the
test images of the source domain (a seeded random subset of ``max_examples``, the same for both
domains, or the whole split), with translations quantized to 8 bits as a saved image would be:

* ``label_preservation_d`` (%): the share of translations that the target domain's classifier
  gives the source image's label. The classifier is genlab's shipped LeNet of the domain's
  reader (``data.domains.reader_of``: its source dataset, MNIST for ``digits-28``), read through
  the domain's inverse where it has one (an inverted digit is inverted back before the MNIST LeNet
  reads it, a coloured one through its grey view; thick and thin strokes are read as they are).
  Only where labels mean the same in both domains (the same reader). For unpaired domains of one
  reader (MNIST <-> digits-28) ``..._target_test`` is the classifier's accuracy on the target
  domain's real test images: the ceiling a translation can reach there.
* ``cycle_l1_d``: mean |F(G(x)) - x| per pixel (in [0, 1] units), and ``cycle_l1_noisy_d``,
  the same when Gaussian noise of std 2/255 is added to G(x) before the reverse map: a large
  rise means the translation hides the source in imperceptible signals (Chu et al. 2017,
  "CycleGAN, a Master of Steganography", arXiv:1712.02950); ``hidden_info_ratio_d`` is their ratio.
* ``fid_<net>_d``: FID of the translations against ``n_reference`` real images of the target
  domain's train split, in the same (canonical-view) LeNet features.
* ``gt_l1_d``: mean |G(x) - T(x)| per pixel against the exact ground truth, on synthetic
  pairs (both domains made of the same images: test image i of one is the transform of test image i
  of the other); not towards a domain whose images draw a style per image (coloured MNIST's
  colours are no function of the grey digit).
* ``purity_d`` (%): when the domains have different sources (MNIST <-> Fashion-MNIST, no true
  correspondence), the share of translations of each source class that land in that class's
  most common target class, averaged over source classes: 100 % is a consistent class-to-class map.

Every figure comes with its baselines where they exist: ``..._identity`` (the source image itself
as the "translation"; between a grey and a colour domain, converted the plain way: grey repeated to
RGB, RGB to BT.601 luma) and ``..._true_map`` (the exact ground truth, or the paired target image).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from genlab.data import load_dataset
from genlab.data.base import ImageSet
from genlab.data.domains import SYNTHETIC, as_channels, canonical, reader_of, source_of
from genlab.errors import InputError
from genlab.eval.batches import image_order
from genlab.eval.features import domain_feature_net, extract
from genlab.eval.metric import metric
from genlab.eval.sample_metrics import frechet_distance, gaussian_stats, reference_stats
from genlab.registry import EVALUATORS
from genlab.rng import random_subset

PROBE_NOISE_STD = 2.0 / 255.0  # below one grey level of a saved 8-bit image, after rounding


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] -> uint8 levels, as saving a PNG would."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@torch.no_grad()
def _translate(model, x: torch.Tensor, direction: str, batch_size: int, device) -> torch.Tensor:
    out = [model.translate(x[i:i + batch_size].to(device), direction).float().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).clamp(0, 1)


def _l1(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


def _accuracy(net, images: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (extract(net, images).logits.argmax(1) == labels).float().mean().item()


def _purity(net, images: torch.Tensor, labels: torch.Tensor, classes: int) -> float:
    predicted = extract(net, images).logits.argmax(1)
    shares = []
    for c in range(classes):
        hits = predicted[labels == c]
        if len(hits):
            shares.append(torch.bincount(hits, minlength=net.num_classes).max().item() / len(hits))
    return 100.0 * sum(shares) / max(len(shares), 1)


def _styled(name: str) -> bool:
    return name in SYNTHETIC and SYNTHETIC[name].styled


@EVALUATORS.register("translation")
@torch.no_grad()
def evaluate_translation(model, objective, test: ImageSet, device, opts) -> dict[str, dict]:
    """The metrics of the module docstring, both directions; ``test`` is domain A's split."""
    data_cfg = opts.data
    if data_cfg is None or not data_cfg.domain_b:
        raise InputError("the translation evaluator needs the run's data.domain_b (domain B's dataset)")
    names = {"a": test.name, "b": data_cfg.domain_b}
    test_b = load_dataset(names["b"], test.split, data_cfg)
    bs = opts.batch_size or 256
    # One seeded order for both domains, so synthetic pairs stay pairs.
    order, which = image_order(min(len(test), len(test_b)), opts.max_examples, opts.seed)
    n = len(order)
    images = {"a": test.images.cpu()[order], "b": test_b.images.cpu()[order]}
    labels = {"a": test.labels.cpu()[order] if test.labels is not None else None,
              "b": test_b.labels.cpu()[order] if test_b.labels is not None else None}
    # Synthetic pairs: image i of both domains is made from the same source image.
    paired = source_of(names["a"]) == source_of(names["b"]) and len(test) == len(test_b)
    records = {}
    for direction, src, tgt in (("a2b", "a", "b"), ("b2a", "b", "a")):
        reverse = "b2a" if direction == "a2b" else "a2b"
        where = f"{names[src]}/{test.split} -> {names[tgt]}, {which}"
        x = images[src].float() / 255
        fake = _quantize(_translate(model, x, direction, bs, device))
        back = _translate(model, fake.float() / 255, reverse, bs, device)
        noise = torch.randn(fake.shape, generator=torch.Generator().manual_seed(opts.seed)) * PROBE_NOISE_STD
        back_noisy = _translate(model, (fake.float() / 255 + noise).clamp(0, 1), reverse, bs, device)
        cycle, cycle_noisy = _l1(back, x), _l1(back_noisy, x)
        records[f"cycle_l1_{direction}"] = metric(
            cycle, "per pixel", "estimate", f"mean |F(G(x)) - x|, pixels in [0, 1], G(x) saved to 8 bits; {where}")
        records[f"cycle_l1_noisy_{direction}"] = metric(
            cycle_noisy, "per pixel", "estimate",
            f"as cycle_l1 with N(0, {PROBE_NOISE_STD:.4f}^2) noise (seed {opts.seed}) added to G(x); {where}")
        records[f"hidden_info_ratio_{direction}"] = metric(
            cycle_noisy / max(cycle, 1e-12), "ratio", "estimate",
            f"cycle_l1_noisy / cycle_l1: >> 1 means the source is hidden in imperceptible signals; {where}")
        # The identity map between a grey and a colour domain converts channels the plain way (as_channels).
        identity = as_channels(images[src], fake.shape[1])
        truth = images[tgt] if paired else None
        if truth is not None and not _styled(names[tgt]):  # a styled target (colour) is no function of the source
            for suffix, guess in (("", fake), ("_identity", identity)):
                records[f"gt_l1_{direction}{suffix}"] = metric(
                    _l1(guess, truth) / 255, "per pixel", "exact",
                    f"mean |{'G(x)' if not suffix else 'x'} - T(x)| against the exact ground truth T(x), "
                    f"pixels in [0, 1]; {where}")
        net = domain_feature_net(reader_of(names[tgt]), opts, "cpu")
        if net is None:
            continue
        views = {"": canonical(names[tgt], fake), "_identity": canonical(names[tgt], identity)}
        if truth is not None:
            views["_true_map"] = canonical(names[tgt], truth)
        elif reader_of(names[src]) == reader_of(names[tgt]):  # same classes, no pairs (MNIST <-> digits-28)
            views["_target_test"] = canonical(names[tgt], images[tgt])
        if labels[src] is not None and reader_of(names[src]) == reader_of(names[tgt]):
            for suffix, view in views.items():
                truth_labels = labels[tgt] if suffix == "_target_test" else labels[src]
                records[f"label_preservation_{direction}{suffix}"] = metric(
                    _accuracy(net, view, truth_labels), "%", "estimate",
                    f"{net.name} (test accuracy {net.test_accuracy} % on {net.dataset}) gives the source label to "
                    f"{'the translation' if not suffix else suffix[1:].replace('_', ' ')}, read through "
                    f"{names[tgt]}'s inverse where it has one; {where}"
                    + ("; target_test: its accuracy on real test images of the target domain" if suffix == "_target_test" else ""))
        elif labels[src] is not None and net.num_classes:
            records[f"purity_{direction}"] = metric(
                _purity(net, views[""], labels[src], 10), "%", "estimate",
                f"mean over source classes of the share of translations in the class's most common "
                f"{net.name} class; {where}")
        train_t = load_dataset(names[tgt], "train", data_cfg)
        pick = random_subset(len(train_t), opts.n_reference, seed=0)
        canonical_train = canonical(names[tgt], train_t.images[pick])
        reference = ImageSet(f"{names[tgt]}-canonical", "train", _quantize(canonical_train), None,
                             replace(train_t.spec, channels=canonical_train.shape[1]), "scale",
                             f"{len(pick)} images drawn with seed 0; {train_t.note}")
        ref = reference_stats(net, reference, len(pick), seed=0, cache_dir=opts.cache_dir)
        for suffix, view in views.items():
            value = frechet_distance(ref.mu, ref.sigma, *gaussian_stats(extract(net, view).features))
            records[f"fid_{net.name}_{direction}{suffix}"] = metric(
                value, "", "estimate",
                f"FID in {net.description} features of {n} {'translations' if not suffix else suffix[1:]} vs "
                f"{ref.describe()} of {names[tgt]} (canonical view); {where}")
    return records
