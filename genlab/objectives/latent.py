"""Objectives of the latent-variable models: the ELBO and plain reconstruction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlab.card import conditioning
from genlab.config import bounded
from genlab.nn.spec import DataSpec
from genlab.objectives.base import OptionlessObjective
from genlab.registry import OBJECTIVES
from genlab.stats import bits_per_dim


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, mu_p: torch.Tensor | None = None,
                logvar_p: torch.Tensor | None = None) -> torch.Tensor:
    """KL( N(mu, diag exp(logvar)) || N(mu_p, diag exp(logvar_p)) ) per example, in nats; (B, ...) -> (B,).

    The prior defaults to N(0, I).
    """
    if mu_p is None:
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    else:
        kl = 0.5 * (logvar_p - logvar + (logvar.exp() + (mu - mu_p).pow(2)) * torch.exp(-logvar_p) - 1.0)
    return kl.flatten(1).sum(dim=1)


def posterior_rate(out: dict, mu_p: torch.Tensor | None = None, logvar_p: torch.Tensor | None = None,
                   one_sample: bool = False) -> torch.Tensor:
    """log q(z|x) - log p(z) of one latent (group) per example, in nats; (B,).

    ``out`` holds the posterior's "mu", "logvar" and the sample "z"; the prior is N(mu_p, exp(logvar_p))
    (default N(0, I)). The KL is in closed form for a Gaussian posterior unless ``one_sample`` (the term
    of an importance weight). With an inverse autoregressive flow (``out`` has "z0", the Gaussian sample,
    and "logdet" = log|det dz/dz0|) it is always the one-sample value
    log N(z0; mu, var) - logdet - log p(z), whose mean is the KL.
    """
    if "logdet" not in out and not one_sample:
        return gaussian_kl(out["mu"], out["logvar"], mu_p, logvar_p)
    z = out["z"].flatten(1)
    log_q = gaussian_log_density(out.get("z0", out["z"]).flatten(1), out["mu"].flatten(1), out["logvar"].flatten(1))
    if "logdet" in out:
        log_q = log_q - out["logdet"]
    if mu_p is None:
        mu_p, logvar_p = torch.zeros_like(z), torch.zeros_like(z)
    return log_q - gaussian_log_density(z, mu_p.flatten(1), logvar_p.flatten(1))


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(dim=-1)


def labels_for(model, batch: dict) -> torch.Tensor | None:
    """The batch's labels when the model is class-conditional (a conditional VAE), else None."""
    return batch["y"] if conditioning(model).class_conditional else None


def decoder_distribution(model, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None = None):
    """p(x | z) (p(x | z, y) with labels y) as a PixelDistribution whose ``log_prob(x)`` is per sub-pixel.

    An autoregressive decoder (card decoder "autoregressive", PixelVAE) reads x itself,
    teacher-forced: ``decode(z, x)``, so the distribution is that of x's own conditionals
    p(x_i | x_<i, z); by the chain rule their log-masses sum to the exact log p(x | z).
    """
    if model.card.decoder == "autoregressive":
        return model.distribution(model.decode(z, x))
    return model.distribution(model.decode(z, y=y))


def decoder_log_prob(model, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x | z[, y]) summed over the sub-pixels, in nats: (B, C, H, W), (B, L) -> (B,)."""
    return decoder_distribution(model, x, z, y).log_prob(x).flatten(1).sum(1)


@OBJECTIVES.register("elbo")
class ELBO:
    """Negative evidence lower bound, -ELBO = distortion + rate (Kingma & Welling 2014).

    distortion = -E_q[log p(x|z)] (one reparameterized sample), rate = KL(q(z|x) || p(z))
    in closed form (a one-sample estimate with an IAF posterior). With beta = 1 and no warm-up,
    ``loss`` is exactly -ELBO; with other settings ``loss`` is the weighted objective and
    ``neg_elbo`` stays the bound.
    """

    @dataclass
    class Config:
        beta: float = bounded(1.0, ge=0.0)  # weight of the rate term (beta-VAE, Higgins et al. 2017); 1 = true ELBO
        kl_warmup_steps: int = bounded(0, ge=0)  # linear ramp of the rate weight from 0 to beta (Sonderby et al. 2016)

    def __init__(self, cfg: Config, data: DataSpec):
        self.cfg, self.data = cfg, data

    def rate_weight(self, step: int) -> float:
        if self.cfg.kl_warmup_steps <= 0:
            return self.cfg.beta
        return self.cfg.beta * min(1.0, step / self.cfg.kl_warmup_steps)

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        x, y = batch["x"], labels_for(model, batch)
        out = model(x, y=y)  # a conditional VAE: bounds on -log p(x | y)
        distortion = -model.distribution(out["raw"]).log_prob(x).flatten(1).sum(1)  # (B,) nats
        rate = posterior_rate(out)  # (B,) nats; a one-sample estimate with an IAF posterior
        neg_elbo = distortion + rate
        return {
            "loss": distortion + self.rate_weight(step) * rate,
            "neg_elbo": neg_elbo,
            "distortion": distortion,
            "rate": rate,
            "bpd": bits_per_dim(neg_elbo, self.data.dims),
        }


@OBJECTIVES.register("reconstruction")
class Reconstruction(OptionlessObjective):
    """Negative log-likelihood of x under the decoder given its own code (no prior, no bound)."""

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        x = batch["x"]
        out = model(x)
        distortion = -model.distribution(out["raw"]).log_prob(x).flatten(1).sum(1)
        return {"loss": distortion, "distortion": distortion, "distortion_bpd": bits_per_dim(distortion, self.data.dims)}
