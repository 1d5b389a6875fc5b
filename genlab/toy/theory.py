"""The optimal discriminator, the Jensen-Shannon divergence and the value of the GAN game,
computed from known densities by numerical integration on a grid.

Goodfellow et al. 2014 ("Generative Adversarial Nets", arXiv:1406.2661):

* Proposition 1: for a fixed generator the discriminator maximizing
  V(D, G) = E_data[log D(x)] + E_g[log(1 - D(x))] is
  D*(x) = p_data(x) / (p_data(x) + p_g(x)), i.e. logit D*(x) = log p_data(x) - log p_g(x);
* Theorem 1: V(D*, G) = 2 JSD(p_data || p_g) - log 4, whose minimum -log 4 is
  reached only at p_g = p_data.

Every function here works in float64 on explicit grids so that the theory is
checked to integration accuracy, not Monte Carlo accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genlab.errors import InputError
from genlab.toy.mixtures import GaussianMixture


@dataclass
class Grid:
    """A regular grid on a box in d dimensions (d = 1 or 2 in practice).

    Attributes:
        axes: one float64 1-D tensor of coordinates per dimension.
    """

    axes: list[torch.Tensor]

    @classmethod
    def box(cls, low: float, high: float, points: int, dim: int) -> "Grid":
        """``points`` equally spaced coordinates on [low, high] along each of ``dim`` axes."""
        if points < 3 or high <= low:
            raise InputError("a grid needs points >= 3 and high > low")
        axis = torch.linspace(low, high, points, dtype=torch.float64)
        return cls([axis] * dim)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.numel() for a in self.axes)

    @property
    def points(self) -> torch.Tensor:
        """(N, d) grid points in row-major order of ``shape``."""
        mesh = torch.meshgrid(*self.axes, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)

    def integrate(self, values: torch.Tensor) -> float:
        """Trapezoidal integral of (N,) values at ``points`` over the box."""
        v = values.to(torch.float64).reshape(self.shape)
        for axis in reversed(self.axes):
            v = torch.trapezoid(v, axis, dim=-1)
        return float(v)


def optimal_logit(p_data: GaussianMixture, p_g: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """logit D*(x) = log p_data(x) - log p_g(x), (N,) float64."""
    return p_data.log_prob(x) - p_g.log_prob(x)


def optimal_discriminator(p_data: GaussianMixture, p_g: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data / (p_data + p_g), computed as sigmoid of the log-density ratio; (N,)."""
    return torch.sigmoid(optimal_logit(p_data, p_g, x))


def jsd(p: GaussianMixture, q: GaussianMixture, grid: Grid) -> float:
    """JSD(p || q) = KL(p || m) / 2 + KL(q || m) / 2, m = (p + q) / 2, in nats (0 .. log 2).

    The grid must cover both densities' mass; its limits bound the integral.
    """
    x = grid.points
    lp, lq = p.log_prob(x), q.log_prob(x)
    lm = torch.logaddexp(lp, lq) - math.log(2)
    # p log(p / m) is 0 where p underflows to 0, so exp(lp) * (lp - lm) is safe.
    return 0.5 * grid.integrate(lp.exp() * (lp - lm)) + 0.5 * grid.integrate(lq.exp() * (lq - lm))


def game_value(p_data: GaussianMixture, p_g: GaussianMixture, logit: torch.Tensor, grid: Grid) -> float:
    """V(D, G) = int p_data log D + p_g log(1 - D) for D = sigmoid(logit) given at the grid points."""
    x = grid.points
    logit = logit.to(torch.float64).reshape(-1)
    return grid.integrate(-p_data.log_prob(x).exp() * F.softplus(-logit) - p_g.log_prob(x).exp() * F.softplus(logit))


def optimal_value(p_data: GaussianMixture, p_g: GaussianMixture, grid: Grid) -> float:
    """V(D*, G) = 2 JSD(p_data || p_g) - log 4 (Goodfellow et al. 2014, Theorem 1)."""
    return 2 * jsd(p_data, p_g, grid) - math.log(4)


def discriminator_error(p_data: GaussianMixture, p_g: GaussianMixture, d_prob: torch.Tensor, grid: Grid,
                        mass: float = 1e-3) -> dict[str, float]:
    """How far D is from D* where the data lives.

    Args:
        d_prob: D(x) at the grid points, (N,).
        mass: points where the mixture m = (p_data + p_g) / 2 is below ``mass`` times its
            peak are left out of the maximum (D is unconstrained where no data falls).

    Returns:
        {"mean_abs": E_m |D - D*| by integration, "max_abs": max |D - D*| where m is not negligible}.
    """
    x = grid.points
    m = 0.5 * (p_data.log_prob(x).exp() + p_g.log_prob(x).exp())
    err = (d_prob.to(torch.float64).reshape(-1) - optimal_discriminator(p_data, p_g, x)).abs()
    keep = m >= mass * m.max()
    return {"mean_abs": grid.integrate(m * err), "max_abs": float(err[keep].max())}
