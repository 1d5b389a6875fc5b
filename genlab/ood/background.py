"""Background models for the likelihood-ratio score: the same objective on mutated inputs.

Ren, Liu, Fertig, Snoek, Poplin, DePristo, Dillon & Lakshminarayanan 2019,
"Likelihood Ratios for Out-of-Distribution Detection" (arXiv:1906.02845),
Section 3.1: a *background* model is trained on inputs perturbed by random
mutations, so that it learns the population-level statistics of the pixels
(background level, stroke density, local smoothness) but not the semantic
content. Each sub-pixel is replaced, independently with probability
``mutation_rate`` (their mu), by a level drawn uniformly from all 2^bits levels,
and the perturbation is drawn afresh at every training step.

The perturbation lives in an objective rather than a separate loop: the
objectives registered here ("elbo-mutated", "nll-mutated") are the ELBO and the
exact NLL with a ``mutation_rate`` field, so a background run is an ordinary
`genlab train` run (presets in ``genlab/configs/ood.py``), resumable and
distributed like any other. Inputs are perturbed only while the model is in
training mode; in evaluation mode (``genlab eval``, OOD scoring) the objective
sees clean images, which is how the background model is used in the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.config import bounded
from genlab.errors import InputError
from genlab.objectives.autoregressive import NLL
from genlab.objectives.latent import ELBO
from genlab.registry import OBJECTIVES


def mutate(x: torch.Tensor, rate: float, bits: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each sub-pixel with probability ``rate`` by a uniformly drawn level (Ren et al. 2019, Sec. 3.1).

    Args:
        x: (B, C, H, W) model input in [0, 1] (levels k / (2^bits - 1)).
        rate: the mutation rate mu in [0, 1].
        bits: 1 for binary data (a mutated pixel is 0 or 1 with equal odds), 8 for 256 levels.
        generator: torch generator on ``x.device``; None draws from the global RNG (which the
            training loop reseeds from (seed, step), so background runs resume exactly).
    Returns:
        A new tensor like ``x``: the same levels grid, a ``rate`` share of sub-pixels redrawn.
    """
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"mutation rate {rate} must be in [0, 1]")
    top = 2**bits - 1
    hit = torch.rand(x.shape, generator=generator, device=x.device) < rate
    level = torch.randint(0, top + 1, x.shape, generator=generator, device=x.device)
    return torch.where(hit, level.to(x.dtype) / top, x)


def _check_rate(rate: float) -> None:
    if not 0.0 < rate < 1.0:
        raise InputError(f"mutation_rate={rate} must be strictly between 0 and 1 (Ren et al. 2019 use 0.1-0.3); "
                         "for an unperturbed model use the plain objective")


def _trained_on_mutations(base, name: str, what: str):
    """``base`` objective measured on mutated inputs while training: a background model (Ren et al. 2019).

    One wrapper serves every likelihood objective: the mutation is a property of the
    training data, not of the model family. In evaluation mode the terms are those of
    ``base`` on the clean batch.
    """

    @dataclass
    class Config(base.Config):
        # mu: share of sub-pixels redrawn uniformly (paper's range 0.1-0.3)
        mutation_rate: float = bounded(0.2, gt=0.0, lt=1.0)

        def validate(self):
            parent = getattr(base.Config, "validate", None)
            if parent is not None:
                parent(self)
            _check_rate(self.mutation_rate)

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        if model.training:
            batch = {**batch, "x": mutate(batch["x"], self.cfg.mutation_rate, self.data.bits)}
        return base.__call__(self, model, batch, phase, step)

    cls = type(f"Mutated{base.__name__}", (base,), {"Config": Config, "__call__": __call__,
                                                   "__doc__": f"{what} of a model trained on mutated inputs "
                                                              "(Ren et al. 2019, arXiv:1906.02845)."})
    return OBJECTIVES.register(name)(cls)


MutatedELBO = _trained_on_mutations(ELBO, "elbo-mutated", "The negative ELBO of a VAE")
MutatedNLL = _trained_on_mutations(NLL, "nll-mutated", "The exact NLL of an autoregressive model")
