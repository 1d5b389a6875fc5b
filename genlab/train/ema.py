"""Exponential moving average of weights (Polyak averaging), with an optional warm-up."""

from __future__ import annotations

import math

import torch
from torch import nn

# `genlab eval` warns when the initial (untrained) weights still carry more than this share of the average.
YOUNG_EMA_SHARE = 0.01


def ema_decay_at(decay: float, warmup: str, updates: int, batch_size: int = 1, rampup: float = 0.05) -> float:
    """The decay of the update that follows ``updates`` earlier ones.

    Args:
        decay: the target decay (train.ema_decay).
        warmup: "none" (always ``decay``); "count": min(decay, (1 + n) / (10 + n)), so the first
            updates nearly copy the weights; "halflife": EDM's ramp-up, the half-life of the average
            (in images) at most ``rampup`` x the images seen so far, with ``decay`` the longest.
        updates: n, the updates made before this one.
        batch_size: images per update (the global batch), for "halflife".
    """
    if warmup == "none":
        return decay
    if warmup == "count":
        return min(decay, (1 + updates) / (10 + updates))
    if warmup == "halflife":
        # After this update (updates + 1) * batch images have been seen; a half-life of H images is a
        # decay of 0.5 ** (batch / H) per update.
        halflife = rampup * (updates + 1) * batch_size
        return min(decay, 0.5 ** (batch_size / halflife))
    raise ValueError(f"unknown EMA warm-up {warmup!r}")


class EMA:
    """Shadow copies of a model's floating-point parameters and buffers.

    A model may restrict the average to some submodules with its card's
    ``ema_modules`` (a GAN averages its generator only); the shadow then holds
    just those entries, and ``merged`` fills the rest from the live weights.
    ``updates`` counts the updates and ``init_share`` is the product of their decays: the weight
    the initial copy still has in the average (both are saved with each checkpoint).
    """

    def __init__(self, model: nn.Module, decay: float, warmup: str = "none", batch_size: int = 1,
                 rampup: float = 0.05):
        self.decay, self.warmup, self.batch_size, self.rampup = decay, warmup, batch_size, rampup
        self.updates, self.init_share = 0, 1.0
        prefixes = model.card.ema_modules
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()
                       if prefixes is None or k.split(".", 1)[0] in prefixes}
        self._pairs = None  # (model, its first weight, shadow/live float lists, shadow/live other lists)

    def _live_pairs(self, model: nn.Module):
        """The shadow tensors and the model's tensors they follow, split into floating-point ones (averaged)
        and the rest (copied). Building them walks the whole module tree (``state_dict``: half of the
        update's time for the 184 tensors of the DDPM U-Net), so they are kept while the model and the
        storage of its first weight are the same: optimizers update weights in place, while ``.to()`` or
        ``load_state_dict(assign=True)`` give them new storage."""
        first = next(model.parameters(), None)
        anchor = None if first is None else first.data_ptr()
        if self._pairs is None or self._pairs[0] is not model or self._pairs[1] != anchor:
            state = model.state_dict()

            def lists(floating: bool):
                keys = [k for k, s in self.shadow.items() if s.dtype.is_floating_point == floating]
                return [self.shadow[k] for k in keys], [state[k] for k in keys]

            self._pairs = (model, anchor, lists(True), lists(False))
        return self._pairs[2:]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = ema_decay_at(self.decay, self.warmup, self.updates, self.batch_size, self.rampup)
        (shadow_floats, live_floats), (shadow_others, live_others) = self._live_pairs(model)
        if shadow_floats:  # one multi-tensor kernel per dtype and device instead of one launch per tensor
            torch._foreach_lerp_(shadow_floats, live_floats, 1.0 - decay)
        for s, v in zip(shadow_others, live_others):
            s.copy_(v)
        self.updates += 1
        self.init_share *= decay

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def counters(self) -> dict[str, float]:
        """What a checkpoint records beside the tensors, so a resumed warm-up continues where it was."""
        return {"ema_updates": self.updates, "ema_init_share": self.init_share}

    def load_counters(self, state: dict, step: int) -> None:
        # Checkpoints from before the counters: one update per step with the constant decay.
        self.updates = int(state.get("ema_updates", step))
        self.init_share = float(state.get("ema_init_share", self.decay ** self.updates))


def young_ema_warning(state: dict, step: int, decay: float) -> str | None:
    """A warning when the EMA of a checkpoint is still dominated by its starting weights, else None.

    The rule: the initial (untrained) weights still carry more than ``YOUNG_EMA_SHARE`` (1 %) of the
    average, i.e. the product of the decays of all updates so far exceeds 0.01 (with a constant
    decay d, fewer than ln(100) / (1 - d) updates: 919 at 0.995, 46,050 at 0.9999).
    """
    updates = int(state.get("ema_updates", step))
    share = float(state.get("ema_init_share", decay ** updates))
    if share <= YOUNG_EMA_SHARE:
        return None
    needed = math.ceil(math.log(1 / YOUNG_EMA_SHARE) / (1 - decay)) if decay < 1 else None
    return (f"the EMA has seen {updates} updates and its initial (untrained) weights still make up "
            f"{100 * share:.1f} % of the average (more than {100 * YOUNG_EMA_SHARE:.0f} %): its numbers describe "
            f"a blend with the initialization. Compare the raw weights (both are reported), train longer"
            + (f" (about {needed} updates at decay {decay})" if needed else "")
            + ", or train with train.ema_warmup=count")


def merged(live_state: dict[str, torch.Tensor], ema_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's weights with the averaged entries swapped in (for evaluation and sampling)."""
    return {**live_state, **ema_state}
