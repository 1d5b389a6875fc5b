"""The Gaussian diffusion process as pure functions of a noise schedule.

Kept apart from the network (as ``GaussianDiffusion`` is apart from the U-Net in
openai/improved-diffusion) so that the objective, the samplers and the likelihood
evaluator share one implementation, and tests can pin it against closed forms.

Conventions. Data live on [-1, 1] (``to_process`` maps genlab's [0, 1] images there).
Timesteps are 0-based indices t = 0 .. T-1 (the papers' t = 1 .. T), so
``abar[t] = prod_{s <= t} (1 - beta_s)`` and

    q(x_t | x_0)          = N(sqrt(abar_t) x_0, (1 - abar_t) I)                        (Ho et al. eq. 4)
    q(x_{t-1} | x_t, x_0) = N(c0_t x_0 + ct_t x_t, beta~_t I),  beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)

with abar_{-1} = 1. The variance-exploding view used by the EDM samplers writes
x_t / sqrt(abar_t) = x_0 + sigma_t eps with sigma_t = sqrt((1 - abar_t) / abar_t).
Schedule values are float64 (the products of 1000 factors near 1 lose digits in float32);
they are cast to the data's dtype where they meet it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch

ScheduleKind = Literal["linear", "cosine"]
Target = Literal["eps", "x0", "v"]
Variance = Literal["small", "large", "learned"]


def linear_betas(steps: int) -> torch.Tensor:
    """DDPM's linear schedule, 1e-4 .. 0.02 for T = 1000, rescaled for other T (as in iDDPM).

    Capped at 0.999 like the cosine schedule: for T <= 50 the rescaled end would reach 1, where
    abar = 0 and x_T carries no trace of a finite noise level.
    """
    scale = 1000.0 / steps
    return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64).clamp(max=0.999)


def cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """iDDPM's cosine schedule: abar(t) = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) * pi/2) (eq. 17)."""
    f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


@dataclass(frozen=True)
class Schedule:
    """A discrete noise schedule, beta_0 .. beta_{T-1}, and every quantity derived from it (float64), each
    computed once, on the device of ``betas`` (a training step reads them on every call)."""

    betas: torch.Tensor  # (T,)

    @staticmethod
    def create(kind: ScheduleKind, steps: int) -> "Schedule":
        return Schedule(linear_betas(steps) if kind == "linear" else cosine_betas(steps))

    @property
    def T(self) -> int:
        return self.betas.shape[0]

    @cached_property
    def abar(self) -> torch.Tensor:
        return torch.cumprod(1 - self.betas, 0)

    @cached_property
    def abar_prev(self) -> torch.Tensor:
        return torch.cat([self.betas.new_ones(1), self.abar[:-1]])

    @cached_property
    def posterior_variance(self) -> torch.Tensor:
        """beta~_t; 0 at t = 0, where x_{-1} is x_0 itself."""
        return self.betas * (1 - self.abar_prev) / (1 - self.abar)

    @cached_property
    def posterior_logvar(self) -> torch.Tensor:
        """log beta~_t with the t = 0 value replaced by t = 1's (log 0 is not usable; iDDPM does the same)."""
        v = self.posterior_variance
        return torch.log(torch.cat([v[1:2], v[1:]]))

    @cached_property
    def sigmas(self) -> torch.Tensor:
        """sigma_t = sqrt((1 - abar_t) / abar_t): the noise level of x_t / sqrt(abar_t)."""
        return ((1 - self.abar) / self.abar).sqrt()


def at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, ..., 1) to broadcast against ``like`` (B, ...), in its dtype and device."""
    v = values.to(t.device)[t.long()].to(like.dtype)
    return v.reshape(-1, *([1] * (like.dim() - 1))).to(like.device)


def to_process(x01: torch.Tensor) -> torch.Tensor:
    """genlab images in [0, 1] -> the process's [-1, 1]."""
    return x01 * 2 - 1


def to_image(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Process space -> [0, 1], rounded to the data's ``levels`` (2 for binary, 256 for 8-bit)."""
    return torch.round(((x.clamp(-1, 1) + 1) / 2) * (levels - 1)) / (levels - 1)


# ----------------------------------------------------------------------------------------------
# Forward process and posterior


def q_mean_var(s: Schedule, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_t | x_0)."""
    abar = at(s.abar, t, x0)
    return abar.sqrt() * x0, 1 - abar


def q_sample(s: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    mean, var = q_mean_var(s, x0, t)
    return mean + var.sqrt() * noise


def q_posterior(s: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
    """(mean, variance, clipped log-variance) of q(x_{t-1} | x_t, x_0) (Ho et al. eqs. 6-7)."""
    abar, abar_prev, beta = at(s.abar, t, xt), at(s.abar_prev, t, xt), at(s.betas, t, xt)
    c0 = beta * abar_prev.sqrt() / (1 - abar)
    ct = (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar)
    return c0 * x0 + ct * xt, at(s.posterior_variance, t, xt), at(s.posterior_logvar, t, xt)


# ----------------------------------------------------------------------------------------------
# Prediction targets


def training_target(s: Schedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, target: Target):
    """What the network regresses: eps, x_0, or v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022)."""
    if target == "eps":
        return noise
    if target == "x0":
        return x0
    abar = at(s.abar, t, x0)
    return abar.sqrt() * noise - (1 - abar).sqrt() * x0


def x0_from(s: Schedule, xt: torch.Tensor, t: torch.Tensor, out: torch.Tensor, target: Target) -> torch.Tensor:
    """The network's x_0 estimate from its prediction ``out`` of ``target`` at timestep t."""
    return x0_from_abar(at(s.abar, t, xt), xt, out, target)


def x0_from_abar(abar: torch.Tensor, xt: torch.Tensor, out: torch.Tensor, target: Target) -> torch.Tensor:
    """``x0_from`` at a noise level given by abar (B, 1, ..., 1); fractional timesteps have one too."""
    if target == "x0":
        return out
    if target == "eps":
        return (xt - (1 - abar).sqrt() * out) / abar.sqrt()
    return abar.sqrt() * xt - (1 - abar).sqrt() * out


def eps_from(s: Schedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The noise implied by x_t and an x_0 estimate."""
    abar = at(s.abar, t, xt)
    return (xt - abar.sqrt() * x0) / (1 - abar).sqrt()


def model_logvar(s: Schedule, t: torch.Tensor, like: torch.Tensor, variance: Variance,
                 frac: torch.Tensor | None = None) -> torch.Tensor:
    """log Sigma_t of p(x_{t-1} | x_t): beta~_t ("small"), beta_t ("large", beta~_1 at t = 0 as in iDDPM),
    or iDDPM's learned interpolation exp(v log beta_t + (1 - v) log beta~_t), v = (frac + 1) / 2 (eq. 15)."""
    small = at(s.posterior_logvar, t, like)
    large = at(torch.log(torch.cat([s.posterior_variance[1:2], s.betas[1:]])), t, like)
    if variance == "small":
        return small.expand_as(like)
    if variance == "large":
        return large.expand_as(like)
    v = (frac + 1) / 2
    return v * large + (1 - v) * small


def p_mean_var(s: Schedule, raw: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, target: Target,
               variance: Variance, clip: bool = False) -> dict[str, torch.Tensor]:
    """p(x_{t-1} | x_t) from the raw network output (B, C or 2C, H, W): mean, logvar, x0, eps.

    With a learned variance the second half of the channels is v's pre-image in [-1, 1].
    """
    out, frac = raw.chunk(2, dim=1) if variance == "learned" else (raw, None)
    x0 = x0_from(s, xt, t, out, target)
    return p_from_x0(s, x0.clamp(-1, 1) if clip else x0, xt, t, variance, frac)


def p_from_x0(s: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, variance: Variance,
              frac: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """p(x_{t-1} | x_t) = N(posterior mean at the x_0 estimate, Sigma_t): every target gives the same
    family of reverse steps, and samplers that hold x_0 (guidance, EDM denoisers) share it."""
    mean, _, _ = q_posterior(s, x0, xt, t)
    return {"mean": mean, "logvar": model_logvar(s, t, xt, variance, frac), "x0": x0, "eps": eps_from(s, xt, t, x0)}


def respace(s: Schedule, steps: int) -> tuple[Schedule, torch.Tensor]:
    """A schedule on ``steps`` evenly spaced timesteps of ``s`` with the same abar there (iDDPM Section 4).

    Returns (the new schedule, the original timestep of each new index), so that a network trained on
    ``s`` is called at its own timesteps while the reverse steps use the new betas.
    """
    if steps >= s.T:
        return s, torch.arange(s.T)
    kept = torch.round(torch.linspace(0, s.T - 1, steps, dtype=torch.float64)).long().unique()
    abar = s.abar[kept]
    prev = torch.cat([abar.new_ones(1), abar[:-1]])
    return Schedule(1 - abar / prev), kept


# ----------------------------------------------------------------------------------------------
# Likelihood terms


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)


def _log_normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return torch.special.log_ndtr(z)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - e^d) for d <= 0, floored so that the unused branch of a torch.where has a finite gradient."""
    return torch.log((-torch.expm1(d)).clamp_min(1e-12))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                                        levels: int) -> torch.Tensor:
    """log P(x) of a Gaussian integrated over x's bin, elementwise (Ho et al. eq. 13).

    ``x`` holds one of ``levels`` evenly spaced values on [-1, 1]; bins are centred on them with the
    outermost ones extended to +-inf. With levels = 2 the bins are x < 0 and x >= 0: a Bernoulli with
    P(1) = Phi(mean / std), so binary data get a likelihood in true nats too.
    """
    half = 1.0 / (levels - 1)  # half a bin width on [-1, 1]
    std = torch.exp(0.5 * logvar)
    upper, lower = (x + half - mean) / std, (x - half - mean) / std
    log_cdf_upper = _log_normal_cdf(upper)  # log P(X < upper edge)
    log_sf_lower = _log_normal_cdf(-lower)  # log P(X > lower edge)
    # Middle bins: log(Phi(u) - Phi(l)), computed on the side of the mean that does not cancel.
    mid = torch.where(lower > 0, log_sf_lower + _log1mexp(_log_normal_cdf(-upper) - log_sf_lower),
                      log_cdf_upper + _log1mexp(_log_normal_cdf(lower) - log_cdf_upper))
    return torch.where(x < -1 + half, log_cdf_upper, torch.where(x > 1 - half, log_sf_lower, mid))


def prior_kl(s: Schedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_{T-1} | x_0) || N(0, I)) elementwise, in nats."""
    t = torch.full((x0.shape[0],), s.T - 1, device=x0.device, dtype=torch.long)
    mean, var = q_mean_var(s, x0.double(), t)  # float64: the KL is a small difference of O(1) numbers
    return normal_kl(mean, torch.log(var), torch.zeros_like(mean), torch.zeros_like(mean)).to(x0.dtype)


# ----------------------------------------------------------------------------------------------
# Continuous noise levels (EDM, Karras et al. 2022)


def sigma_to_t(s: Schedule, sigma: torch.Tensor) -> torch.Tensor:
    """The fractional timestep whose sigma is ``sigma``, linear in log sigma between the schedule's steps."""
    log_sigmas = s.sigmas.log().to(sigma.device)
    ls = sigma.double().log().clamp(log_sigmas[0], log_sigmas[-1])
    hi = torch.searchsorted(log_sigmas, ls).clamp(1, s.T - 1)
    lo = hi - 1
    w = (ls - log_sigmas[lo]) / (log_sigmas[hi] - log_sigmas[lo])
    return (lo + w).to(sigma.dtype)


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM eq. 5: ``steps`` noise levels from sigma_max down to sigma_min, spaced in sigma^(1/rho), then 0."""
    i = torch.arange(steps, dtype=torch.float64)
    inv = 1.0 / rho
    ramp = sigma_max ** inv + i / max(steps - 1, 1) * (sigma_min ** inv - sigma_max ** inv)
    return torch.cat([ramp ** rho, ramp.new_zeros(1)])


def edm_scalings(sigma: torch.Tensor, sigma_data: float):
    """EDM Table 1 preconditioning: (c_skip, c_out, c_in, c_noise) for noise level ``sigma``."""
    total = sigma ** 2 + sigma_data ** 2
    return sigma_data ** 2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4
