"""The objective of the autoregressive models: exact negative log-likelihood.

An autoregressive model factorizes p(x) = prod_d p(x_d | x_<d) over the D
sub-pixels in raster (and colour) order, so -log p(x) is computed exactly in one
pass from the model's raw outputs (van den Oord et al. 2016, arXiv:1601.06759).
"""

from __future__ import annotations

import torch

from genlab.card import conditioning
from genlab.errors import InputError
from genlab.objectives.base import OptionlessObjective
from genlab.registry import OBJECTIVES
from genlab.stats import bits_per_dim


def labels_for(model, batch: dict):
    """The batch's labels when the model is class-conditional, else None."""
    if not conditioning(model).class_conditional:
        return None
    if "y" not in batch:
        raise InputError(f"{type(model).__name__} is class-conditional but the batch has no labels: "
                         "use a labelled dataset or set model.conditional=false")
    return batch["y"]


def speaker_inputs(model, batch: dict) -> dict:
    """{"speaker": batch["speaker"]} for a speaker-conditional model (its card and config say so), else {}."""
    if not conditioning(model).num_speakers:
        return {}
    if "speaker" not in batch:
        raise InputError(f"{type(model).__name__} is speaker-conditional (model.speakers > 0) but the batch has no "
                         "speakers: use a dataset with speakers (fsdd) or set model.speakers=0")
    return {"speaker": batch["speaker"]}


def log_prob_per_subpixel(model, x: torch.Tensor, y=None, **inputs) -> torch.Tensor:
    """log p(x_d | x_<d) for every sub-pixel, in nats: (B, C, H, W); ``inputs``: e.g. speaker_inputs."""
    return model.distribution(model(x, y, **inputs)).log_prob(x)


@OBJECTIVES.register("nll")
class NLL(OptionlessObjective):
    """-log p(x) in nats per image (exact, not a bound)."""

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        """Returns per-example (B,) terms: loss = nll_nats (nats/image) and bpd (bits/dim)."""
        x = batch["x"]
        nll = -log_prob_per_subpixel(model, x, labels_for(model, batch), **speaker_inputs(model, batch))
        nll = nll.flatten(1).sum(1)
        return {"loss": nll, "nll_nats": nll, "bpd": bits_per_dim(nll, self.data.dims)}
