"""Exponential moving average of weights (Polyak averaging)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copies of a model's floating-point parameters and buffers.

    A model may restrict the average to some submodules with its card's
    ``ema_modules`` (a GAN averages its generator only); the shadow then holds
    just those entries, and ``merged`` fills the rest from the live weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        prefixes = model.card.ema_modules
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()
                       if prefixes is None or k.split(".", 1)[0] in prefixes}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        state = model.state_dict()
        for k, s in self.shadow.items():
            v = state[k]
            if s.dtype.is_floating_point:
                s.lerp_(v.detach(), 1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)


def merged(live_state: dict[str, torch.Tensor], ema_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's weights with the averaged entries swapped in (for evaluation and sampling)."""
    return {**live_state, **ema_state}
