"""Sampling from implicit (GAN) generators, latent walks, and the nearest-training-neighbour check.

A GAN sample is G(z) with z ~ p(z), one forward pass, no likelihood. Sample i
draws its latent (and, for a class-conditional model without a given label,
then its class) from ``generators[i]`` only, and the generator runs in eval
mode (batch norm with running statistics), so sample i is the same image
whatever the batch it is drawn in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from genlab.card import conditioning
from genlab.errors import InputError
from genlab.nn.labels import class_labels
from genlab.nn.modes import eval_mode
from genlab.registry import register_sampler
from genlab.rng import categorical_per_sample, make_generators
from genlab.sampling.latent import slerp


def _labels(model, n: int, label, generators: list[torch.Generator] | None, device) -> torch.Tensor | None:
    """(n,) class labels for a class-conditional model, or None for an unconditional one."""
    num_classes = conditioning(model).num_classes
    if num_classes and label is None:
        if generators is None:
            raise InputError("give a label, or generators to draw one per sample")
        probs = torch.full((n, num_classes), 1.0 / num_classes, device=device)
        return categorical_per_sample(generators, probs)  # uniform classes, one draw per sample
    return class_labels(label, n, num_classes, device, who=f"{type(model).__name__} (cgan takes labels)")


@dataclass
class GANSamplerOptions:
    """A GAN sample is one generator pass: no options yet (truncation would go here)."""


@register_sampler("gan", GANSamplerOptions)
@torch.no_grad()
def sample_gan(model, n: int, generators: list[torch.Generator], device, label=None, **_) -> torch.Tensor:
    """n images G(z_i[, y_i]) in [0, 1], (n, C, H, W); z_i (then y_i) from generators[i] only.

    Args:
        model: an adversarial model (``sample_latent`` and ``generate``).
        n: number of samples; len(generators) must be n.
        generators: one torch.Generator per sample (``make_generators``).
        device: where to run.
        label: class-conditional models only: one class for all samples, or one per
            sample; None draws a uniform class per sample after its latent.
    """
    z = model.sample_latent(n, device, generators)  # (n, latent_dim)
    y = _labels(model, n, label, generators, device)
    with eval_mode(model):
        return model.generate(z, y)


# ----------------------------------------------------------------------------------------------
# Latent interpolation


def latent_path(z_a: torch.Tensor, z_b: torch.Tensor, steps: int,
                mode: Literal["linear", "slerp"] = "slerp") -> torch.Tensor:
    """(steps, latent_dim) points from z_a to z_b; slerp keeps Gaussian latents at a typical norm."""
    if steps < 2:
        raise InputError("an interpolation needs steps >= 2")
    t = torch.linspace(0, 1, steps, device=z_a.device)
    if mode == "slerp":
        return slerp(z_a, z_b, t)
    if mode == "linear":
        return (1 - t)[:, None] * z_a + t[:, None] * z_b
    raise InputError(f"unknown interpolation mode {mode!r}; use linear or slerp")


@torch.no_grad()
def interpolations(model, pairs: int, steps: int, seed: int, device="cpu", label=None,
                   mode: Literal["linear", "slerp", "auto"] = "auto") -> torch.Tensor:
    """Images along ``pairs`` latent paths between seeded endpoints; (pairs, steps, C, H, W).

    Endpoint latents come from generators seeded (seed, 2p) and (seed, 2p + 1), so a
    path is reproducible. ``mode="auto"`` uses slerp for a normal prior and a
    straight line for a uniform one (whose support is a box, not a sphere).
    """
    if mode == "auto":
        mode = "slerp" if model.cfg.prior == "normal" else "linear"
    gens = make_generators(seed, 2 * pairs, device)
    ends = model.sample_latent(2 * pairs, device, gens).view(pairs, 2, -1)
    # A class-conditional path keeps one class: the given label, or one drawn per path.
    y_path = _labels(model, pairs, label, gens[0::2], device)
    rows = []
    with eval_mode(model):
        for p in range(pairs):
            z = latent_path(ends[p, 0], ends[p, 1], steps, mode)
            y = None if y_path is None else y_path[p].expand(steps)
            rows.append(model.generate(z, y))
    return torch.stack(rows)


# ----------------------------------------------------------------------------------------------
# Nearest training neighbours: does the generator copy its training set?


@torch.no_grad()
def nearest_neighbours(samples: torch.Tensor, train: torch.Tensor, k: int = 3,
                       chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The k training images closest to each sample in pixel L2 distance.

    Args:
        samples: (N, C, H, W) in [0, 1].
        train: (M, C, H, W) in [0, 1] (or uint8, scaled by 1/255).
        k: neighbours per sample.
        chunk: training images compared per pass (memory bound).

    Returns:
        (distances (N, k) as root-mean-square pixel differences, indices (N, k) into train).
    """
    if train.dtype == torch.uint8:
        train = train.float() / 255
    if samples.shape[1:] != train.shape[1:]:
        raise InputError(f"samples {tuple(samples.shape[1:])} and training images {tuple(train.shape[1:])} "
                         "differ in shape")
    s = samples.flatten(1).double()
    best_d = torch.full((s.shape[0], 0), 0.0, dtype=torch.double)
    best_i = torch.zeros((s.shape[0], 0), dtype=torch.long)
    for start in range(0, train.shape[0], chunk):
        t = train[start:start + chunk].flatten(1).double().to(s.device)
        d = torch.cdist(s, t).cpu()  # (N, chunk)
        d_all = torch.cat([best_d, d], 1)
        i_all = torch.cat([best_i, torch.arange(start, start + t.shape[0]).expand(s.shape[0], -1)], 1)
        best_d, pos = d_all.topk(min(k, d_all.shape[1]), dim=1, largest=False)
        best_i = i_all.gather(1, pos)
    return best_d / s.shape[1] ** 0.5, best_i
