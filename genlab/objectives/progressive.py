"""The ``gan`` objective for progressively grown models (Karras et al. 2018, arXiv:1710.10196).

The losses and penalties are the ``gan`` objective's own (this class only inherits them);
the one addition is that the trainer's step reaches the model before each phase, since the
resolution and fade-in weight are a function of it (``genlab.nn.progressive.FadeSchedule``).
"""

from __future__ import annotations

import torch

from genlab.errors import InputError
from genlab.objectives.adversarial import GAN
from genlab.registry import OBJECTIVES


@OBJECTIVES.register("progressive-gan")
class ProgressiveGAN(GAN):
    """``gan`` with ``model.set_step(step)`` first (models whose card says ``growing``); same Config and terms."""

    def __call__(self, model, batch: dict, phase: str, step: int) -> dict[str, torch.Tensor]:
        if not model.card.growing:
            raise InputError(f"the progressive-gan objective trains progressively grown models (progan); "
                             f"use the gan objective for {type(model).__name__}")
        model.set_step(step)
        return super().__call__(model, batch, phase, step)
