"""The objective of VQ-VAE's first stage (van den Oord et al. 2017, arXiv:1711.00937, Eq. 3 with the EMA codebook).

loss = -log p(x | z_q) + beta * ||z_e - sg(z_q)||^2 per image; the codebook is not in the loss
but follows the EMA update of ``genlab/nn/vq.py``, which this objective applies on training
steps (model in training mode with gradients on; an evaluation pass changes no buffer).
The update happens in the objective call, before the trainer's finiteness check, so a
skipped step still moves the codebook; under DDP every process updates its own copy
from its own batch (no all-reduce of the EMA statistics yet).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.config import bounded
from genlab.nn.spec import DataSpec
from genlab.nn.vq import codebook_usage
from genlab.objectives.base import OptionlessObjective
from genlab.registry import OBJECTIVES
from genlab.stats import bits_per_dim


@OBJECTIVES.register("vq")
class VQ:
    @dataclass
    class Config:
        commitment: float = bounded(0.25, ge=0.0)  # beta, weight of ||z_e - sg(e)||^2 (paper 0.25)

    def __init__(self, cfg: Config, data: DataSpec):
        self.cfg, self.data = cfg, data

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        """Per-example (B,) terms: loss; distortion = -log p(x | z_q) in nats and bits/dim; commitment
        (squared distance, summed over the grid); the batch's codebook usage (fraction of codes used),
        perplexity and codes reset, repeated over the batch so that the metrics log shows them."""
        x = batch["x"]
        out = model(x)
        distortion = -model.distribution(out["raw"]).log_prob(x).flatten(1).sum(1)
        commitment = (out["z_e"] - out["z_q"].detach()).pow(2).flatten(1).sum(1)
        q, c = model.quantizer, model.cfg
        reset = 0
        if model.training and torch.is_grad_enabled():
            reset = q.commit(out["z_e"], out["codes"], c.ema_decay, c.ema_eps, c.dead_code_threshold)
        usage, perplexity = codebook_usage(out["codes"], q.size)
        per_batch = lambda v: torch.full_like(distortion, float(v))  # noqa: E731 - a batch figure, one per example
        return {
            "loss": distortion + self.cfg.commitment * commitment,
            "distortion": distortion,
            "distortion_bpd": bits_per_dim(distortion, self.data.dims),
            "commitment": commitment,
            "codebook_usage": per_batch(usage),
            "perplexity": per_batch(perplexity),
            "codes_reset": per_batch(reset),
        }


@OBJECTIVES.register("vq-prior")
class VQPrior(OptionlessObjective):
    """The second stage's objective: the prior's NLL of the first stage's token grids (Section 3.2).

    A batch holds either images ``x`` (encoded here by the frozen first stage) or the cached token
    grids ``codes`` (B, h, w) of the trainer (``genlab/train/stages.py``). With images and the model in
    evaluation mode, the terms also give the bound of ``genlab/models/latent/vqvae_prior.py``:
    -log p(x) <= -log p_prior(z_q(x)) - log p(x | z_q(x)), as ``nll_nats`` (a bound, as the card says).
    """

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        """Per-example (B,) terms: loss = prior_nats = -log p_prior(tokens) in nats per token grid, and
        prior_bits_per_token; with images, in evaluation mode, also distortion = -log p(x | z_q) and the bound
        nll_nats, bpd."""
        images = "codes" not in batch
        with torch.no_grad():  # the first stage is frozen
            tokens = model.tokens(batch["x"]) if images else batch["codes"]
        prior = model.prior_distribution(model(tokens))
        prior_nats = -prior.log_prob(model.token_image(tokens)).flatten(1).sum(1)
        terms = {"loss": prior_nats, "prior_nats": prior_nats,
                 "prior_bits_per_token": bits_per_dim(prior_nats, tokens[0].numel())}
        if images and not model.training:  # the bound costs a decoder pass that training does not need
            with torch.no_grad():
                distortion = -model.distribution(model.decode_tokens(tokens)).log_prob(batch["x"]).flatten(1).sum(1)
            bound = prior_nats.detach() + distortion
            terms.update(distortion=distortion, nll_nats=bound, bpd=bits_per_dim(bound, self.data.dims))
        return terms
