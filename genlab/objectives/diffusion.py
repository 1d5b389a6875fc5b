"""Objectives of diffusion models: L_simple, iDDPM's L_hybrid, and EDM's weighted denoising loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.config import bounded
from genlab.nn import diffusion as proc
from genlab.nn.spec import DataSpec
from genlab.registry import OBJECTIVES
from genlab.stats import bits_per_dim


def drop_labels(y: torch.Tensor | None, null: int, p_uncond: float) -> torch.Tensor | None:
    """Each label replaced by the null token with probability p_uncond (classifier-free guidance training)."""
    if y is None or p_uncond <= 0:
        return y
    return torch.where(torch.rand(y.shape, device=y.device) < p_uncond, torch.full_like(y, null), y)


def vlb_terms_per_dim(s: proc.Schedule, p: dict, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                      levels: int) -> torch.Tensor:
    """L_t in nats per dimension, shaped like x0: KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0
    and the discrete decoder -log p(x_0 | x_1) at t = 0 (Ho et al. eq. 5 and 13). Both factorize over
    dimensions, so the per-pixel maps of ``genlab score`` add up to the bound."""
    mean, _, logvar = proc.q_posterior(s, x0, xt, t)  # clipped log-variance: finite at t = 0, unused there
    kl = proc.normal_kl(mean, logvar, p["mean"], p["logvar"])
    decoder = -proc.discretized_gaussian_log_likelihood(x0, p["mean"], p["logvar"], levels)
    first = (t == 0).reshape(-1, *([1] * (x0.dim() - 1)))
    return torch.where(first, decoder, kl)


def vlb_terms(s: proc.Schedule, p: dict, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
              levels: int) -> torch.Tensor:
    """L_t per example in nats, summed over dimensions (B,) (see ``vlb_terms_per_dim``)."""
    return vlb_terms_per_dim(s, p, x0, xt, t, levels).flatten(1).sum(1)


@OBJECTIVES.register("diffusion")
class DiffusionLoss:
    """The training loss of ``models/diffusion``, chosen by the model's parameterization.

    ddpm: t ~ U{0..T-1}, x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and
    ``mse`` = |target - network|^2 averaged over dimensions (L_simple, Ho et al. eq. 14 for eps).
    With ``model.variance=learned`` the loss is L_hybrid = L_simple + vlb_weight * L_vlb, where L_vlb
    is the bound's term at the sampled t (bits/dim, times T/1000 as in iDDPM's code) computed with
    the mean's channels detached, so it trains the variance only (iDDPM Section 3.1).
    edm: ln sigma ~ N(P_mean, P_std^2) and ``loss`` = lambda(sigma) |D(x_0 + sigma n; sigma) - x_0|^2
    averaged over dimensions, lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (EDM Table 1).
    Every term is per example, (B,).
    """

    @dataclass
    class Config:
        vlb_weight: float = bounded(0.001, ge=0.0)  # lambda of L_hybrid (iDDPM), used with model.variance=learned
        p_uncond: float = bounded(0.1, ge=0.0, le=1.0)  # share of labels replaced by the null token (CFG; Ho & Salimans 0.1-0.2)
        p_mean: float = bounded(-1.2)  # EDM: mean of ln sigma during training
        p_std: float = bounded(1.2, gt=0.0)  # EDM: standard deviation of ln sigma during training

    def __init__(self, cfg: Config, data: DataSpec):
        self.cfg, self.data = cfg, data

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        x0 = proc.to_process(batch["x"])
        y = drop_labels(batch.get("y"), model.null_label, self.cfg.p_uncond) if model.cfg.conditional else None
        if model.cfg.parameterization == "edm":
            return self._edm(model, x0, y)
        s, B = model.schedule, x0.shape[0]
        t = torch.randint(0, s.T, (B,), device=x0.device)
        noise = torch.randn_like(x0)
        xt = proc.q_sample(s, x0, t, noise)
        raw = model(xt, t.float(), y)
        learned = model.cfg.variance == "learned"
        out = raw.chunk(2, dim=1)[0] if learned else raw
        mse = (proc.training_target(s, x0, noise, t, model.cfg.target) - out).pow(2).flatten(1).mean(1)
        terms = {"mse": mse}
        loss = mse
        if learned:
            frozen = torch.cat([out.detach(), raw.chunk(2, dim=1)[1]], dim=1)  # stop-gradient on the mean
            p = proc.p_mean_var(s, frozen, xt, t, model.cfg.target, "learned")
            vlb = bits_per_dim(vlb_terms(s, p, x0, xt, t, self.data.levels), self.data.dims)
            terms["vlb_t_bpd"] = vlb
            loss = loss + self.cfg.vlb_weight * vlb * (s.T / 1000.0)
        return {"loss": loss, **terms}

    def _edm(self, model, x0: torch.Tensor, y) -> dict[str, torch.Tensor]:
        sigma = torch.exp(self.cfg.p_mean + self.cfg.p_std * torch.randn(x0.shape[0], device=x0.device))
        noisy = x0 + sigma.reshape(-1, 1, 1, 1) * torch.randn_like(x0)
        denoised, _ = model.denoise(noisy, sigma, y)
        sd = model.cfg.sigma_data
        weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
        mse = (denoised - x0).pow(2).flatten(1).mean(1)
        return {"loss": weight * mse, "mse": mse}
