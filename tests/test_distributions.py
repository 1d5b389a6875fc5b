"""Discretized pixel likelihoods: every bin's mass against an arbitrary-precision reference, and the mean image."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.nn.distributions import (HALF_BIN, DiscretizedGaussian, DiscretizedLogistic, discretized_gaussian_log_mass,
                                     make_head)
from genlab.nn.spec import DataSpec

mpmath = pytest.importorskip("mpmath")  # ships with torch (through sympy)

CENTRES = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1  # bin centres on the [-1, 1] scale


def _reference_log_masses(loc: float, sigma: float) -> torch.Tensor:
    """log P(bin k), k = 0..255, of a normal(loc, sigma) on [-1, 1] with open end bins, at 60 digits."""
    with mpmath.workdps(60):
        out = []
        for y in CENTRES.tolist():
            lower = (mpmath.mpf(y) - loc - HALF_BIN) / sigma
            upper = (mpmath.mpf(y) - loc + HALF_BIN) / sigma
            if y < -1 + HALF_BIN:
                mass = mpmath.ncdf(upper)
            elif y > 1 - HALF_BIN:
                mass = mpmath.ncdf(-lower)
            elif lower + upper > 0:  # right of loc: 1 - 1e-9000 would round to 1 even at 60 digits
                mass = mpmath.ncdf(-lower) - mpmath.ncdf(-upper)
            else:
                mass = mpmath.ncdf(upper) - mpmath.ncdf(lower)
            out.append(float(mpmath.log(mass)))
    return torch.tensor(out, dtype=torch.float64)


# sigma on the [0, 1] pixel scale: 0.04 is the Frey preset's; the tails hold bins of mass down to exp(-10^5).
@pytest.mark.parametrize("sigma", [0.005, 0.04, 0.1, 0.5])
@pytest.mark.parametrize("loc", [-1.2, -0.37, 0.0, 0.61, 1.0])
def test_gaussian_bin_masses_are_exact_in_the_tails(sigma, loc):
    ref = _reference_log_masses(loc, 2 * sigma)
    log_scale = torch.tensor(math.log(2 * sigma), dtype=torch.float64)
    got = discretized_gaussian_log_mass(CENTRES, torch.tensor(loc, dtype=torch.float64), log_scale)
    # Relative to the size of the log-mass (some are -10^5 nats): float64 rounding, nothing more.
    assert ((got - ref).abs() / ref.abs().clamp_min(1.0)).max().item() < 1e-12
    assert torch.logsumexp(got, 0).exp().item() == pytest.approx(1.0, abs=1e-12)
    # float32, as models train: within float32 rounding of the log-masses.
    got32 = discretized_gaussian_log_mass(CENTRES.float(), torch.tensor(loc), log_scale.float()).double()
    assert ((got32 - ref).abs() / ref.abs().clamp_min(1.0)).max().item() < 2e-5
    assert torch.logsumexp(got32, 0).exp().item() == pytest.approx(1.0, abs=1e-5)


def test_gaussian_head_uses_the_exact_masses():
    spec = DataSpec(1, 1, 1, bits=8)
    head = make_head("gaussian", spec, gaussian_sigma=0.04)
    raw = torch.full((256, 1, 1, 1), 0.3, dtype=torch.float64)
    log_p = head.build(raw).log_prob(((CENTRES + 1) / 2).view(256, 1, 1, 1)).flatten()
    assert torch.allclose(log_p, _reference_log_masses(0.3, 0.08), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.0, -0.1, float("nan"), float("inf")])
def test_gaussian_sigma_must_be_positive_and_finite(sigma):
    with pytest.raises(ValueError, match="gaussian_sigma.*finite number > 0"):
        make_head("gaussian", DataSpec(1, 4, 4, bits=8), gaussian_sigma=sigma)


@pytest.mark.parametrize("cls", [DiscretizedLogistic, DiscretizedGaussian])
def test_mean_is_the_mean_of_the_discrete_distribution(cls):
    # Locations inside, at and beyond the edges; scales from a fraction of a bin to wider than [-1, 1].
    loc = torch.tensor([-1.4, -1.0, -0.9, -0.2, 0.0, 0.35, 0.97, 1.3], dtype=torch.float64)
    log_scale = torch.tensor([-6.0, -3.0, -1.0, 0.5], dtype=torch.float64)
    loc, log_scale = (t.reshape(1, 1, -1, 1) for t in torch.broadcast_tensors(loc[:, None], log_scale[None]))
    dist = cls(loc, log_scale)  # (1, 1, 32, 1): one sub-pixel per (location, scale)
    values = (CENTRES + 1) / 2  # the 256 levels on [0, 1]
    masses = cls(loc.expand(256, -1, -1, -1), log_scale.expand(256, -1, -1, -1)).log_prob(
        values.view(256, 1, 1, 1).expand(-1, 1, 32, 1)).exp()  # (256, 1, 32, 1)
    brute = (masses * values.view(256, 1, 1, 1)).sum(0, keepdim=True)
    assert torch.allclose(dist.mean(), brute, atol=1e-12)
    assert dist.mean().dtype == loc.dtype and dist.mean().shape == loc.shape
