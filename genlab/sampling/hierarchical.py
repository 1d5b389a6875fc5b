"""Samplers of the hierarchical VAE: a temperature per latent group, and lower groups resampled under fixed top ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.labels import class_labels
from genlab.registry import register_sampler
from genlab.rng import make_generators, randn_per_sample


@dataclass
class HierarchicalSamplerOptions:
    output: Literal["mean", "sample"] = "mean"  # the decoder's mean image, or a draw of its pixels
    temperature: float = bounded(1.0, gt=0)  # every group's prior std is multiplied by this
    group_temperatures: tuple[float, ...] = bounded((), gt=0)  # per group, top first (e.g. 1,1,0.7); rest: temperature


def temperatures_per_group(model, temperature: float, per_group: tuple[float, ...]) -> list[float]:
    """One temperature per latent group of ``model`` (top first)."""
    n = len(model.group_shapes)
    if len(per_group) > n:
        raise InputError(f"group_temperatures has {len(per_group)} values but the model has {n} latent groups")
    if temperature <= 0 or any(t <= 0 for t in per_group):
        raise InputError("temperatures must be > 0")
    return list(per_group) + [temperature] * (n - len(per_group))


def prior_pass(model, generators: list[torch.Generator], device, temperatures: list[float],
               given: dict[int, torch.Tensor] | None = None) -> dict:
    """z ~ p(z) group by group (top first) with each group's noise from the sample's own generator."""
    eps = [randn_per_sample(generators, shape, device) for shape in model.group_shapes]
    return model.top_down(None, eps, temperatures, given)


@register_sampler("hvae", HierarchicalSamplerOptions)
@torch.no_grad()
def sample_hierarchical(model, n: int, generators: list[torch.Generator], device, label=None,
                        output: Literal["mean", "sample"] = "mean", temperature: float = 1.0,
                        group_temperatures: tuple[float, ...] = (), **_) -> torch.Tensor:
    """Ancestral sampling through the top-down path, then the decoder's mean image or a pixel sample.

    Sample i uses only generators[i]: its latent groups top first, then (output="sample") its pixels.
    """
    class_labels(label, n, 0, device, who=type(model).__name__)  # raises for a label: this sampler draws p(x) alone
    temps = temperatures_per_group(model, temperature, group_temperatures)
    dist = model.distribution(prior_pass(model, generators, device, temps)["raw"])
    return dist.sample(generators) if output == "sample" else dist.mean()


@torch.no_grad()
def resample_below(model, rows: int, cols: int, keep: int, seed: int, device, temperature: float = 1.0) -> torch.Tensor:
    """A grid in which row r fixes the top ``keep`` groups of one prior sample and each column redraws the rest.

    Args:
        keep: how many groups (top first) stay fixed along a row; 0 gives independent samples.
        seed: row r's top groups come from sample r of this seed, column c's lower groups from sample
            rows + r * cols + c.
    Returns:
        (rows * cols, C, H, W) decoder means, row-major.
    """
    n_groups = len(model.group_shapes)
    if not 0 <= keep <= n_groups:
        raise InputError(f"keep must be in 0..{n_groups}, got {keep}")
    temps = [temperature] * n_groups
    tops = prior_pass(model, make_generators(seed, rows, device), device, temps)["groups"]
    images = []
    for r in range(rows):
        given = {g: tops[g]["z"][r:r + 1].expand(cols, *tops[g]["z"].shape[1:]) for g in range(keep)}
        gens = make_generators(seed, cols, device, start=rows + r * cols)
        images.append(model.distribution(prior_pass(model, gens, device, temps, given)["raw"]).mean())
    return torch.cat(images)
