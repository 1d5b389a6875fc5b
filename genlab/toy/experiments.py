"""The toy GAN experiments: optimal discriminator, generator saturation, mode coverage.

Each returns plain numbers (and the trained networks where a figure needs
them); tests run them on small budgets and benchmarks/gan_toy_theory.py on
larger ones. All randomness is seeded and the caller's global RNG state is
restored afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from genlab.errors import InputError
from genlab.objectives.adversarial import GAN
from genlab.toy.fit import fit
from genlab.toy.mixtures import GaussianMixture, gaussian, mixture_1d, ring
from genlab.toy.nets import AffineGenerator, Critic, ToyGAN, mlp_gan
from genlab.toy.theory import Grid, discriminator_error, game_value, jsd, optimal_value


def _sampler(dist: GaussianMixture, batch_size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda step: {"x": dist.sample(batch_size, g)}


def _d_only(model: ToyGAN):
    return [p for p in model.phases() if p.name == "D"]


@torch.no_grad()
def _logits_on(model: ToyGAN, grid: Grid, chunk: int = 65536) -> torch.Tensor:
    pts = grid.points.float()
    return torch.cat([model.discriminator(pts[i:i + chunk]) for i in range(0, pts.shape[0], chunk)]).double()


# ----------------------------------------------------------------------------------------------
# 1. A discriminator trained against a frozen generator approaches D* and the value 2 JSD - log 4


def optimality_setup(dim: int) -> tuple[GaussianMixture, AffineGenerator, Grid]:
    """Data, frozen Gaussian generator and integration grid of the optimality check.

    dim=1: p_data = mixture of N(-2, 0.5^2) and N(2, 0.5^2); p_g = N(0, 1.5^2); grid [-7, 7].
    dim=2: p_data = 8 Gaussians of std 0.25 on a circle of radius 2; p_g = N(0, 1.5^2 I); grid [-6, 6]^2.
    """
    if dim == 1:
        return mixture_1d((-2.0, 2.0), (0.5, 0.5)), AffineGenerator(1, 0.0, 1.5), Grid.box(-7, 7, 2801, 1)
    if dim == 2:
        return ring(8, 2.0, 0.25), AffineGenerator(2, 0.0, 1.5), Grid.box(-6, 6, 241, 2)
    raise InputError("the optimality check has dim 1 or 2")


@dataclass
class OptimalityResult:
    jsd: float  # JSD(p_data || p_g), nats, by integration
    optimal_value: float  # 2 JSD - log 4
    value_before: float  # V(D, G) of the untrained discriminator
    value_after: float  # V(D, G) after training
    error_before: dict = field(default_factory=dict)  # |D - D*| before training
    error_after: dict = field(default_factory=dict)  # |D - D*| after training
    model: ToyGAN | None = None
    grid: Grid | None = None
    p_data: GaussianMixture | None = None
    p_g: GaussianMixture | None = None


def discriminator_optimality(dim: int = 1, steps: int = 1500, batch_size: int = 512, lr: float = 2e-3,
                             hidden: int = 64, depth: int = 2, seed: int = 0) -> OptimalityResult:
    """Train D alone (generator frozen) with the logistic D loss and compare it with D*.

    The D loss is that of the minimax game (the non-saturating variant changes only G's loss).
    """
    p_data, generator, grid = optimality_setup(dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ToyGAN(generator, Critic(dim, hidden, depth, act=nn.SiLU), latent_dim=dim)
        p_g = generator.density()
        objective = GAN(GAN.Config(loss="minimax"))
        before = _logits_on(model, grid)
        fit(model, objective, _sampler(p_data, batch_size, seed + 1), steps, lr=lr, betas=(0.9, 0.999),
            phases=_d_only(model))
        after = _logits_on(model, grid)
    return OptimalityResult(
        jsd=jsd(p_data, p_g, grid),
        optimal_value=optimal_value(p_data, p_g, grid),
        value_before=game_value(p_data, p_g, before, grid),
        value_after=game_value(p_data, p_g, after, grid),
        error_before=discriminator_error(p_data, p_g, torch.sigmoid(before), grid),
        error_after=discriminator_error(p_data, p_g, torch.sigmoid(after), grid),
        model=model, grid=grid, p_data=p_data, p_g=p_g,
    )


# ----------------------------------------------------------------------------------------------
# 2. Saturation: once D rejects the fakes, the minimax generator gradient vanishes


def generator_grad_norm(model: ToyGAN, loss: str, batch: dict, seed: int) -> tuple[float, float]:
    """||d G-loss / d theta_G|| for one G-phase evaluation of the ``gan`` objective.

    Returns:
        (gradient norm over the generator's parameters, mean D(G(z)) as a probability).
    """
    objective = GAN(GAN.Config(loss=loss))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same z for every loss
        model.zero_grad(set_to_none=True)
        terms = objective(model, batch, "G", 0)
        terms["loss"].mean().backward()
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.generator.parameters() if p.grad is not None))
    model.zero_grad(set_to_none=True)
    return float(norm), float(terms["p_fake"].mean())


def saturation(checkpoints: tuple[int, ...] = (0, 25, 50, 100, 200, 400), batch_size: int = 512,
               lr: float = 2e-3, seed: int = 0) -> list[dict[str, float]]:
    """Generator gradient norms of the minimax and non-saturating losses as D is trained.

    p_data = N(2, 0.5^2); the generator N(-2, 0.5^2) (affine, so it has two parameters)
    stays frozen while D trains; at each checkpoint (D steps so far) both G losses are
    differentiated on the same 4096 latents. Goodfellow et al. 2014 (Sec. 3) and
    Arjovsky & Bottou 2017 (arXiv:1701.04862) predict that the minimax
    gradient vanishes as D(G(z)) -> 0 while the non-saturating one does not: per fake,
    the gradients with respect to the logit f are -s(f) and -s(-f), in ratio e^f.

    Returns:
        One row per checkpoint: d_steps, p_fake (mean D(G(z))), grad_minimax, grad_nonsaturating.
    """
    p_data = gaussian([2.0], 0.5)
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ToyGAN(AffineGenerator(1, -2.0, 0.5), Critic(1, 64, 2, act=nn.SiLU), latent_dim=1)
        eval_batch = {"x": p_data.sample(4096, torch.Generator().manual_seed(seed + 2))}
        next_batch = _sampler(p_data, batch_size, seed + 1)
        objective = GAN(GAN.Config(loss="minimax"))
        done = 0
        for target in sorted(checkpoints):
            if target > done:
                fit(model, objective, lambda s: next_batch(done + s), target - done, lr=lr, betas=(0.9, 0.999),
                    phases=_d_only(model))
                done = target
            g_mm, p_fake = generator_grad_norm(model, "minimax", eval_batch, seed + 3)
            g_ns, _ = generator_grad_norm(model, "nonsaturating", eval_batch, seed + 3)
            rows.append({"d_steps": target, "p_fake": p_fake, "grad_minimax": g_mm, "grad_nonsaturating": g_ns})
    return rows


# ----------------------------------------------------------------------------------------------
# 3. Mode coverage on the 8-Gaussian ring


def mode_coverage(samples: torch.Tensor, mixture: GaussianMixture, n_std: float = 3.0,
                  min_fraction: float = 0.01) -> dict[str, float]:
    """Modes covered and sample quality, as counted by Srivastava et al. 2017 (VEEGAN,
    arXiv:1705.07761) and Metz et al. 2017 on the ring.

    A sample is high quality when it lies within ``n_std`` standard deviations of its
    nearest mode's mean; a mode is covered when at least ``min_fraction`` of all samples
    are high-quality samples of it (1% of samples, against 12.5% for a perfect fit of 8
    equal modes).

    Returns:
        modes_covered: number of covered modes;
        high_quality: fraction of samples within n_std of a mode;
        mode_kl: KL (nats) from the high-quality samples' mode frequencies to the mixture
            weights over the modes that have any (0 when balanced; see ``_mode_kl``).
    """
    x = torch.as_tensor(samples, dtype=torch.float64)
    dist = torch.cdist(x, mixture.means)  # (N, K)
    nearest = dist.argmin(1)
    good = dist.gather(1, nearest[:, None]).squeeze(1) <= n_std * mixture.stds[nearest]
    counts = torch.bincount(nearest[good], minlength=mixture.num_components).double()
    covered = int((counts >= min_fraction * x.shape[0]).sum())
    return {"modes_covered": covered, "high_quality": float(good.double().mean()),
            "mode_kl": _mode_kl(counts, mixture.weights)}


def _mode_kl(counts: torch.Tensor, weights: torch.Tensor) -> float:
    """KL(q || w) of the high-quality mode frequencies q against the mixture weights w, in nats.

    q puts no mass on an empty mode, so KL(q || w) stays finite when modes are dropped
    (it is log(1 / mass of the covered modes) when the covered ones are balanced).
    """
    if counts.sum() == 0:
        return math.inf
    q = counts / counts.sum()
    keep = q > 0
    return float((q[keep] * (q[keep] / weights[keep]).log()).sum())


@dataclass
class RingConfig:
    """One GAN of the ring experiment."""

    loss: str = "nonsaturating"
    penalty: str = "none"
    penalty_weight: float = 10.0
    n_critic: int = 1
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)

    @property
    def name(self) -> str:
        name = self.loss + ("" if self.penalty == "none" else f"+{self.penalty}")
        return name + (f" (n_critic={self.n_critic})" if self.n_critic > 1 else "")


def train_ring_gan(cfg: RingConfig, steps: int = 5000, batch_size: int = 256, samples: int = 2500,
                   seed: int = 0, hidden: int = 128, depth: int = 3) -> tuple[dict[str, float], torch.Tensor, ToyGAN]:
    """Train an MLP GAN on the 8-Gaussian ring (radius 2, std 0.02) and count its modes.

    Returns:
        (mode_coverage of ``samples`` generated points, those points (samples, 2), the model).
    """
    data = ring()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = mlp_gan(dim=2, latent_dim=2, hidden=hidden, depth=depth, n_critic=cfg.n_critic)
        objective = GAN(GAN.Config(loss=cfg.loss, penalty=cfg.penalty, penalty_weight=cfg.penalty_weight))
        fit(model, objective, _sampler(data, batch_size, seed + 1), steps, lr=cfg.lr, betas=cfg.betas)
        with torch.no_grad():
            model.eval()
            z = model.sample_latent(samples)
            x = model.generate(z)
    return mode_coverage(x, data), x, model
