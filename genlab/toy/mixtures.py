"""Isotropic Gaussian mixtures in d dimensions with exact densities and seeded sampling."""

from __future__ import annotations

import math

import torch

from genlab.errors import InputError


class GaussianMixture:
    """p(x) = sum_k w_k N(x; mu_k, s_k^2 I_d).

    Args:
        means: (K, d) component means.
        stds: (K,) component standard deviations (one per component, isotropic).
        weights: (K,) mixture weights (normalised here); None gives equal weights.
    """

    def __init__(self, means, stds, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.dim() != 2:
            raise InputError("means must be (K, d)")
        k = self.means.shape[0]
        self.stds = torch.as_tensor(stds, dtype=torch.float64).reshape(-1).expand(k).clone()
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if (self.stds <= 0).any() or (w < 0).any() or w.sum() <= 0:
            raise InputError("stds must be > 0 and weights >= 0 with a positive sum")
        self.weights = w / w.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats for x of shape (N, d); float64 (N,)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        d = self.dim
        sq = (x[:, None, :] - self.means[None]).pow(2).sum(-1)  # (N, K)
        log_comp = -0.5 * sq / self.stds**2 - d * torch.log(self.stds) - 0.5 * d * math.log(2 * math.pi)
        return torch.logsumexp(log_comp + torch.log(self.weights), dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
        """(n, d) draws: a component per draw by its weight, then its Gaussian."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.stds[comp, None] * eps).to(dtype)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.num_components}, d={self.dim})"


def ring(modes: int = 8, radius: float = 2.0, std: float = 0.02) -> GaussianMixture:
    """Equal-weight Gaussians on a circle: the 8-Gaussian ring of Metz et al. 2017
    ("Unrolled Generative Adversarial Networks", arXiv:1611.02163): radius 2, std 0.02."""
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means, std)


def mixture_1d(means=(-2.0, 2.0), stds=(0.5, 0.5), weights=None) -> GaussianMixture:
    """A 1-D mixture, e.g. two bumps at -2 and 2."""
    return GaussianMixture(torch.as_tensor(means, dtype=torch.float64)[:, None], stds, weights)


def gaussian(mean, std: float) -> GaussianMixture:
    """One isotropic Gaussian N(mean, std^2 I)."""
    return GaussianMixture(torch.as_tensor(mean, dtype=torch.float64).reshape(1, -1), std)
