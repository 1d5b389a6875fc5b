"""GAN theory on toy data with known densities (Goodfellow et al. 2014, arXiv:1406.2661).

Small budgets: each training check takes a few seconds on one CPU core.
"""

from __future__ import annotations

import math

import pytest
import torch

from genlab.toy.experiments import discriminator_optimality, mode_coverage, saturation
from genlab.toy.mixtures import gaussian, mixture_1d, ring
from genlab.toy.theory import Grid, game_value, jsd, optimal_discriminator, optimal_logit, optimal_value

LOG4 = math.log(4)


def test_mixture_density_integrates_to_one_and_matches_samples():
    p = ring(8, 2.0, 0.3)
    grid = Grid.box(-4, 4, 401, 2)
    assert grid.integrate(p.log_prob(grid.points).exp()) == pytest.approx(1.0, abs=1e-5)
    q = mixture_1d((-2.0, 2.0), (0.5, 1.0), weights=(1, 3))
    g1 = Grid.box(-10, 10, 4001, 1)
    dens = q.log_prob(g1.points).exp()
    assert g1.integrate(dens) == pytest.approx(1.0, abs=1e-6)
    mean = g1.integrate(dens * g1.points[:, 0])
    assert mean == pytest.approx(0.25 * -2 + 0.75 * 2, abs=1e-6)
    x = q.sample(200_000, torch.Generator().manual_seed(0)).double()
    assert x.mean().item() == pytest.approx(1.0, abs=0.02)


def test_jsd_limits_and_symmetry():
    grid = Grid.box(-30, 30, 6001, 1)
    p, q = gaussian([0.0], 1.0), gaussian([1.0], 2.0)
    assert jsd(p, p, grid) == pytest.approx(0.0, abs=1e-9)
    assert jsd(gaussian([-12.0], 1.0), gaussian([12.0], 1.0), grid) == pytest.approx(math.log(2), abs=1e-6)
    assert jsd(p, q, grid) == pytest.approx(jsd(q, p, grid), abs=1e-9)
    assert 0 < jsd(p, q, grid) < math.log(2)


@pytest.mark.parametrize("dim", [1, 2])
def test_value_of_the_optimal_discriminator_is_2jsd_minus_log4(dim):
    # Two independent computations: integrate V(D*, G) with D* = p/(p+q), and 2 JSD - log 4.
    p = mixture_1d((-2.0, 2.0), (0.5, 0.5)) if dim == 1 else ring(8, 2.0, 0.25)
    q = gaussian([0.0] * dim, 1.5)
    grid = Grid.box(-8, 8, 3201 if dim == 1 else 321, dim)
    v_star = game_value(p, q, optimal_logit(p, q, grid.points), grid)
    assert v_star == pytest.approx(optimal_value(p, q, grid), abs=1e-4)
    assert v_star > -LOG4  # p_g != p_data, so the value is above the global minimum
    # D* is the pointwise maximizer: any other D (here D* with its logit shifted) is worse.
    for shift in (-0.5, 0.3):
        assert game_value(p, q, optimal_logit(p, q, grid.points) + shift, grid) < v_star
    assert game_value(p, p, optimal_logit(p, p, grid.points), grid) == pytest.approx(-LOG4, abs=1e-4)


def test_trained_discriminator_approaches_the_optimal_one():
    r = discriminator_optimality(dim=1, steps=300, batch_size=512, lr=3e-3, seed=0)
    assert r.optimal_value == pytest.approx(2 * r.jsd - LOG4)
    # no discriminator beats D* (up to the grid's missing tail mass)
    assert r.value_after <= r.optimal_value + 1e-4
    # the untrained D is far from the optimum, the trained one close to it
    assert r.optimal_value - r.value_before > 0.3
    assert r.optimal_value - r.value_after < 0.02, (r.value_after, r.optimal_value)
    assert r.error_after["mean_abs"] < 0.04 and r.error_after["mean_abs"] < r.error_before["mean_abs"] / 5
    assert r.error_after["max_abs"] < 0.3
    # D* itself, evaluated where the two densities cross, is 1/2
    x = torch.tensor([[0.0]], dtype=torch.float64)
    assert 0 < float(optimal_discriminator(r.p_data, r.p_g, x)) < 1


def test_minimax_generator_gradient_vanishes_once_the_discriminator_wins():
    rows = saturation(checkpoints=(0, 100), batch_size=256, seed=0)
    start, trained = rows
    # an untrained D barely separates the two: both losses give gradients of similar size
    assert 0.2 < start["grad_minimax"] / start["grad_nonsaturating"] < 5
    # after 100 D steps the fakes are rejected: minimax saturates, non-saturating keeps learning
    assert trained["p_fake"] < 0.01
    assert trained["grad_minimax"] < 0.01 * trained["grad_nonsaturating"]
    assert trained["grad_nonsaturating"] > 10 * start["grad_nonsaturating"]


def test_mode_coverage_counts_on_constructed_samples():
    p = ring(8, 2.0, 0.02)
    means = p.means.float()
    g = torch.Generator().manual_seed(0)
    on_three = means[[0, 2, 5]].repeat_interleave(100, 0) + 0.02 * torch.randn(300, 2, generator=g)  # within ~3 sigma
    far = torch.zeros(100, 2)  # the centre of the ring: no mode
    near_one = means[[1]].expand(2, 2) + 0.01  # 2 good samples of mode 1: fewer than 1% of 402
    res = mode_coverage(torch.cat([on_three, far, near_one]), p)
    good = (torch.cdist(on_three.double(), p.means).min(1).values <= 0.06).sum().item() + 2
    assert res["modes_covered"] == 3
    assert res["high_quality"] == pytest.approx(good / 402)
    # mode frequencies nearly balanced over the covered modes, vs uniform weights over 8 modes
    assert res["mode_kl"] == pytest.approx(math.log(8 / 3.0), abs=0.05)
    # samples of the data itself: in 2-D, P(|x - mu| <= 3 sigma) = 1 - exp(-9/2) = 0.98889 (Rayleigh radius)
    perfect = p.sample(4000, g)
    full = mode_coverage(perfect, p)
    assert full["modes_covered"] == 8 and full["mode_kl"] < 0.01
    assert full["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.006)  # 3.5 binomial std
