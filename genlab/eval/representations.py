"""What a frozen model gives as the representation of an image, read from its card's ``features``.

One extractor per ``FeatureSpec.kind`` (genlab/card.py), registered in ``FEATURES``; models never
compute probe features themselves, and nothing here guesses from attributes: the card names the
submodule or the method. Two floors need no model: raw pixels, and the shared self-supervised backbone
(genlab/nn/ssl.py) with seeded random weights ("untrained").

Feature maps (B, C, H, W) are average-pooled to an s x s grid and flattened, with s the largest side
<= 4 for which C * s * s <= 2048 (so a 64-channel PixelCNN layer gives 64 x 4 x 4 = 1024 features and a
256-channel one 256 x 2 x 2); token sequences (B, T, D) are averaged over T.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from genlab.card import FeatureSpec, conditioning
from genlab.errors import InputError
from genlab.nn.modes import eval_mode
from genlab.nn.ssl import Backbone
from genlab.registry import FEATURES
from genlab.rng import make_generators, randn_per_sample

MAX_POOLED = 2048  # features kept from a pooled feature map, at most
MAX_GRID = 4  # cells per side of the pooled grid, at most
FLOORS = ("pixels", "untrained")
UNTRAINED_WIDTH = 16  # the untrained floor: the shared backbone at the self-supervised encoders' default width


def pooled(h: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * s * s) average-pooled (see the module docstring); (B, T, D) -> (B, D); (B, D) as is."""
    if h.dim() == 4:
        C, H, W = h.shape[1:]
        side = max(1, min(MAX_GRID, math.isqrt(max(1, MAX_POOLED // C))))
        return F.adaptive_avg_pool2d(h, (min(side, H), min(side, W))).flatten(1)
    if h.dim() == 3:
        return h.mean(1)
    return h.flatten(1)


def _captured(model, module: str, run) -> torch.Tensor:
    """The output of ``model.<module>`` while ``run()`` runs the model."""
    out = {}

    def keep(mod, args, result):
        out["h"] = result[0] if isinstance(result, tuple) else result

    handle = model.get_submodule(module).register_forward_hook(keep)
    try:
        run()
    finally:
        handle.remove()
    if "h" not in out:
        raise InputError(f"the card's feature module {module!r} did not run in the model's forward pass")
    return out["h"]


@FEATURES.register("posterior-mean")
def _posterior_mean(model, spec: FeatureSpec, x, generators):
    return model.encode(x)[0]


@FEATURES.register("code")
def _code(model, spec: FeatureSpec, x, generators):
    return model.encode(x)


@FEATURES.register("submodule")
def _submodule(model, spec: FeatureSpec, x, generators):
    return model.get_submodule(spec.module)(x)


@FEATURES.register("hidden")
def _hidden(model, spec: FeatureSpec, x, generators):
    return _captured(model, spec.module, lambda: model(x))  # teacher-forced on the image itself


@FEATURES.register("denoiser-hidden")
def _denoiser_hidden(model, spec: FeatureSpec, x, generators):
    # The noise of image i comes from its own generator, so its features do not depend on the batch.
    eps = randn_per_sample(generators, tuple(x.shape[1:]), x.device)
    noisy = (x * 2 - 1) + spec.sigma * eps  # the variance-exploding scale of model.denoise, data on [-1, 1]
    sigma = torch.full((x.shape[0],), spec.sigma, device=x.device)
    # A class-conditional denoiser is given its null label: the probe's features never see the class.
    y = torch.full_like(sigma, model.null_label, dtype=torch.long) if conditioning(model).class_conditional else None
    return _captured(model, spec.module, lambda: model.denoise(noisy, sigma, y))


@dataclass
class Representation:
    """A frozen feature map: ``fn(x, generators) -> (B, D)`` on model-ready images, with what it is in words."""

    name: str  # "model", "pixels" or "untrained"
    description: str
    fn: Callable[[torch.Tensor, list], torch.Tensor]
    net: torch.nn.Module | None = None  # run in eval mode while features are extracted


def representation_of(model) -> Representation:
    """The features the model's card declares (a user error if it declares none)."""
    spec = model.card.features
    if spec is None:
        raise InputError(f"a {type(model).__name__} run declares no features to probe (its card's `features` is "
                         "empty); probe a model that encodes images, or the floors with --floor pixels|untrained")
    if spec.kind != "denoiser-hidden" and conditioning(model).class_conditional:  # the denoiser has a null label
        raise InputError(f"this {type(model).__name__} is class-conditional: its features depend on the label, which a "
                         "probe must not be given; probe a run trained without model.conditional=true")
    where = {"posterior-mean": "the posterior mean of encode(x)", "code": "the code encode(x)",
             "submodule": f"the output of the frozen `{spec.module}`",
             "hidden": f"the output of `{spec.module}` during the model's forward pass on x",
             "denoiser-hidden": f"the output of `{spec.module}` while denoising x + sigma * eps at sigma = "
                                f"{spec.sigma} ([-1, 1] scale, per-image seeded eps)"}[spec.kind]
    extractor = FEATURES.get(spec.kind)
    return Representation("model", f"{type(model).__name__}: {where}", lambda x, g: extractor(model, spec, x, g), model)


def floor(name: str, channels: int, seed: int = 0) -> Representation:
    """A floor: raw pixels, or the self-supervised encoders' shared backbone with seeded random weights."""
    if name == "pixels":
        return Representation("pixels", "raw pixels in [0, 1]", lambda x, g: x.flatten(1))
    if name == "untrained":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = Backbone(channels, UNTRAINED_WIDTH)
        return Representation("untrained", f"the shared self-supervised backbone (width {UNTRAINED_WIDTH}) with "
                              f"random weights (seed {seed}), batch-norm in eval mode", lambda x, g: net(x), net)
    raise InputError(f"unknown floor {name!r}; choose one of {', '.join(FLOORS)}")


@torch.no_grad()
def extract_features(rep: Representation, images: torch.Tensor, indices: torch.Tensor, device,
                     batch_size: int = 256, seed: int = 0) -> torch.Tensor:
    """Features (N, D) float32 on the CPU for model-ready images (N, C, H, W) in [0, 1], pooled (``pooled``).

    Args:
        indices: (N,) the images' indices in their split: image i's noise (if any) comes from the
            generator seeded (seed, indices[i]), whatever batch it falls in.
    """
    out = []
    with eval_mode(rep.net) if rep.net is not None else nullcontext():
        if rep.net is not None:
            rep.net.to(device)
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            gens = [make_generators(seed, 1, device, start=int(i))[0] for i in indices[start:start + batch_size]]
            out.append(pooled(rep.fn(x, gens)).float().cpu())
    return torch.cat(out)
