"""Sampling from autoregressive models of 1-D signals (WaveNet), one sample at a time.

At step t the sampler asks for the logits of x_t given x_<t and draws x_t with each sample's own
generator. Two ways to get the logits, which compute the same numbers (up to floating-point summation
order; tests check equal samples in float64):

* naive: run the whole network on the signal so far and read its last output (t forward columns per
  step, O(L^2) in all);
* cached: the model's ``sampling_cache`` (WaveNet's per-layer queues, Paine et al. 2016,
  arXiv:1611.09482) computes one new column per layer (O(layers) per step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.card import conditioning
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.labels import class_labels
from genlab.nn.modes import eval_mode
from genlab.registry import register_sampler


class _NaiveSequence:
    """Full recomputation: the network over x_0..x_t (x_t still unset: the output at t never reads it)."""

    def __init__(self, model, y):
        self.model, self.y = model, y

    def step(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.model(x[:, :, : t + 1], self.y)[:, :, t]


@dataclass
class SequenceSamplerOptions:
    temperature: float = bounded(1.0, gt=0)  # divides every conditional's logits
    cache: bool = True  # the model's queue cache; false reruns the network over the whole past per sample (slow)


@register_sampler("autoregressive-1d", SequenceSamplerOptions)
@torch.no_grad()
def sample(model, n: int, generators: list[torch.Generator], device, label=None, temperature: float = 1.0,
           cache: bool = True, until: int | None = None) -> torch.Tensor:
    """Draw n signals (n, C, L) in [0, 1] (codes / 255) from a 1-D autoregressive model.

    Args:
        model: a model of 1-D signals (``head``, ``data`` with ``is_signal``, ``sampling_cache``).
        n: number of signals; signal i uses only ``generators[i]``.
        generators: one torch.Generator per signal (``rng.make_generators``).
        label: class (int) or (n,) classes, for class-conditional models only.
        temperature: < 1 sharpens each conditional, > 1 flattens it; 1 is the model itself.
        cache: use the model's incremental cache; False recomputes the past at every step.
        until: stop after this many samples (later ones stay 0); those drawn equal a full draw's (benchmarks).
    """
    if len(generators) != n:
        raise InputError(f"need one generator per sample: got {len(generators)} for n={n}")
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    spec, head = model.data, model.head
    length = spec.width if until is None else until
    if not spec.is_signal or not 0 <= length <= spec.width:
        raise InputError(f"autoregressive-1d draws 1-D signals of at most {spec.width} samples")
    y = class_labels(label, n, conditioning(model).num_classes, device, who=type(model).__name__, required=True)
    x = torch.zeros(n, *spec.shape, device=device, dtype=next(model.parameters()).dtype)
    with eval_mode(model):
        stepper = model.sampling_cache(n, y) if cache else _NaiveSequence(model, y)
        for t in range(length):
            x[:, :, t] = head.sample_step(stepper.step(x, t), generators, temperature).to(x.dtype)
    return x
