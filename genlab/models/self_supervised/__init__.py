"""Self-supervised encoders on one shared small backbone (genlab/nn/ssl.py), one file each with its paper.

They have no sampler and no likelihood: what they produce is a representation, read by ``genlab probe``
(linear and k-NN probes, genlab/eval/probe.py) through the card's ``features``.
"""

from __future__ import annotations

from dataclasses import dataclass

from genlab.card import TINY_GREY, FeatureSpec, ModelCard
from genlab.config import bounded


@dataclass
class BackboneConfig:
    """The knob every encoder here shares (each model's Config adds its own)."""

    width: int = bounded(16, ge=1)  # backbone width: features are 4 x width (64 by default)


def ssl_card(objective: str, features: str = "backbone", **tiny) -> ModelCard:
    """The card every self-supervised encoder shares: no sampler, no likelihood, probed through ``features``
    (the submodule mapping images to (B, D) features); the loop's optional EMA averages the trained encoder."""
    return ModelCard(family="self-supervised", default_objective=objective, evaluators=("probe",),
                     likelihood="none", features=FeatureSpec("submodule", features),
                     ema_modules=("backbone", "head"),
                     run_defaults={"optim.lr": 1e-3, "train.batch_size": 128, "train.log_every": 25},
                     tiny={"width": 4, **tiny}, tiny_data=TINY_GREY)
