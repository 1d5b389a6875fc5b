"""Seeds and one random generator per sample, so that sample i is the same image whatever the batch size.

The lowest layer of genlab (it imports only torch): data order, training noise, samplers, distributions and
evaluators all seed through here.

Samplers draw every random number for sample ``i`` from ``generators[i]``,
seeded from (seed, i). Splitting the same request into batches, or across
processes, then changes nothing.
"""

from __future__ import annotations

import torch


def sample_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for sample ``index`` of a run seeded ``seed`` (SplitMix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def make_generators(seed: int, n: int, device="cpu", start: int = 0) -> list[torch.Generator]:
    """Generators for samples ``start .. start + n - 1``."""
    gens = []
    for i in range(start, start + n):
        g = torch.Generator(device=device)
        g.manual_seed(sample_seed(seed, i))
        gens.append(g)
    return gens


def randn_per_sample(generators: list[torch.Generator], shape: tuple[int, ...], device="cpu", dtype=torch.float32) -> torch.Tensor:
    """(len(generators), *shape) standard normals, row i from generators[i]."""
    return torch.stack([torch.randn(shape, generator=g, device=device, dtype=dtype) for g in generators])


def rand_per_sample(generators: list[torch.Generator], shape: tuple[int, ...], device="cpu", dtype=torch.float32) -> torch.Tensor:
    """(len(generators), *shape) uniforms on [0, 1), row i from generators[i]."""
    return torch.stack([torch.rand(shape, generator=g, device=device, dtype=dtype) for g in generators])


def categorical_per_sample(generators: list[torch.Generator], probs: torch.Tensor) -> torch.Tensor:
    """Draw one category per row of ``probs`` (n, ..., K) with row i's generator.

    Uses inverse-CDF sampling with one uniform per draw, so the result depends
    only on the generator and that row's probabilities.
    """
    n = probs.shape[0]
    u = rand_per_sample(generators, probs.shape[1:-1], device=probs.device, dtype=probs.dtype)  # (n, ...)
    cdf = probs.cumsum(-1)
    cdf = cdf / cdf[..., -1:].clamp_min(1e-30)
    idx = torch.searchsorted(cdf.contiguous(), u.unsqueeze(-1).contiguous()).squeeze(-1)
    return idx.clamp_max(probs.shape[-1] - 1).reshape(n, *probs.shape[1:-1])


def random_subset(n_all: int, n: int, seed: int) -> torch.Tensor:
    """Indices (n,) of a seeded random subset of ``range(n_all)``, in drawn order (not sorted).

    The first ``n`` entries of a permutation drawn by a CPU generator seeded ``seed``, so the same
    (n_all, seed) gives the same images on any device, and a larger ``n`` extends a smaller one.
    Splits are subsampled this way, never by a prefix: some test files are sorted by class.
    """
    return torch.randperm(n_all, generator=torch.Generator().manual_seed(seed))[:n]
