"""The ELBO of a hierarchical VAE, with the rate of every latent group named, KL warm-up and free bits."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.config import bounded
from genlab.nn.spec import DataSpec
from genlab.objectives.latent import ELBO, posterior_rate
from genlab.registry import OBJECTIVES
from genlab.stats import bits_per_dim

ACTIVE_VARIANCE = 0.01  # a latent unit is active when Var_x E_q[u] exceeds this (Burda et al. 2016, Sec. 5.2)


def group_rates(out: dict, one_sample: bool = False) -> list[torch.Tensor]:
    """Per group, log q(z_g | x, z_<g) - log p(z_g | z_<g): the KL in closed form (Gaussian groups) or its
    one-sample value (an IAF group, or every group when ``one_sample``); each (B,) nats."""
    return [posterior_rate(g, g["mu_p"], g["logvar_p"], one_sample) for g in out["groups"]]


def log_px_given_z(model, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) per example, nats; (B,)."""
    return model.distribution(raw).log_prob(x).flatten(1).sum(1)


def log_weight(model, out: dict, x: torch.Tensor) -> torch.Tensor:
    """log p(x, z) - log q(z | x) of the posterior sample in ``out`` (a posterior pass); (B,) nats.

    Its mean is the ELBO; the log-mean-exp of k of them is the IWAE bound.
    """
    return log_px_given_z(model, out["raw"], x) - sum(group_rates(out, one_sample=True))


def active_units(mu: torch.Tensor) -> torch.Tensor:
    """How many units of posterior means ``mu`` (B, ...) vary across the batch by more than ACTIVE_VARIANCE."""
    return (mu.flatten(1).var(dim=0) > ACTIVE_VARIANCE).sum()


@OBJECTIVES.register("hvae-elbo")
class HierarchicalELBO(ELBO):
    """-ELBO = distortion + sum over groups of rate_g, with rate_g = KL(q(z_g | x, z_<g) || p(z_g | z_<g)).

    Terms: ``neg_elbo`` (the bound, nats), ``distortion``, ``rate`` and ``rate_g{i}`` per group (group 0 is the
    top), ``active_units`` and ``active_g{i}`` (units whose posterior mean varies across this batch by more
    than 0.01, a batch estimate of Burda et al.'s measure, the same value on every row), and ``loss``, the
    weighted objective: each group's rate times the warm-up weight, with free bits (Kingma et al. 2016,
    arXiv:1606.04934, Eq. 15) replacing a group's rate by the constant ``free_bits`` while its batch mean is
    below it, so that no gradient pushes that group further into collapse.
    """

    @dataclass
    class Config(ELBO.Config):
        free_bits: float = bounded(0.0, ge=0.0)  # nats per latent group below which its rate is not penalized

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        x = batch["x"]
        out = model(x)
        distortion = -log_px_given_z(model, out["raw"], x)
        rates = group_rates(out)
        weight = self.rate_weight(step)
        loss = distortion
        terms: dict[str, torch.Tensor] = {}
        for i, (rate, group) in enumerate(zip(rates, out["groups"])):
            if self.cfg.free_bits > 0 and rate.detach().mean() < self.cfg.free_bits:
                rate_loss = torch.full_like(rate, self.cfg.free_bits) + 0 * rate  # no gradient, value kept
            else:
                rate_loss = rate
            loss = loss + weight * rate_loss
            terms[f"rate_g{i}"] = rate
            terms[f"active_g{i}"] = active_units(group["mu"]).float().expand_as(rate)
        rate = sum(rates)
        neg_elbo = distortion + rate
        return {
            "loss": loss,
            "neg_elbo": neg_elbo,
            "distortion": distortion,
            "rate": rate,
            "bpd": bits_per_dim(neg_elbo, self.data.dims),
            "active_units": sum(terms[f"active_g{i}"] for i in range(len(rates))),
            **terms,
        }
