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

    def __init__(self, model, y, speaker=None):
        self.model, self.y, self.speaker = model, y, speaker

    def step(self, x: torch.Tensor, t: int) -> torch.Tensor:
        extra = {} if self.speaker is None else {"speaker": self.speaker}
        return self.model(x[:, :, : t + 1], self.y, **extra)[:, :, t]


def _speakers(count: int, speaker: int, generators: list[torch.Generator], device) -> torch.Tensor | None:
    """(n,) speakers of a speaker-conditional model (``count`` > 0), or None."""
    if not count:
        if speaker != -1:
            raise InputError("this model does not condition on the speaker: drop the speaker option")
        return None
    if speaker >= count:
        raise InputError(f"speaker {speaker} out of range: the model knows speakers 0..{count - 1}")
    if speaker >= 0:
        return torch.full((len(generators),), speaker, dtype=torch.long, device=device)
    return torch.cat([torch.randint(count, (1,), generator=g, device=g.device) for g in generators]).to(device)


@dataclass
class SequenceSamplerOptions:
    temperature: float = bounded(1.0, gt=0)  # divides every conditional's logits
    cache: bool = True  # the model's queue cache; false reruns the network over the whole past per sample (slow)
    speaker: int = bounded(-1, ge=-1)  # speaker-conditional models: this speaker; -1 draws one per clip uniformly


@register_sampler("autoregressive-1d", SequenceSamplerOptions)
@torch.no_grad()
def sample(model, n: int, generators: list[torch.Generator], device, label=None, temperature: float = 1.0,
           cache: bool = True, speaker: int = -1, until: int | None = None) -> torch.Tensor:
    """Draw n signals (n, C, L) in [0, 1] (codes / 255) from a 1-D autoregressive model.

    Args:
        model: a model of 1-D signals (``head``, ``data`` with ``is_signal``, ``sampling_cache``).
        n: number of signals; signal i uses only ``generators[i]``.
        generators: one torch.Generator per signal (``rng.make_generators``).
        label: class (int) or (n,) classes, for class-conditional models only.
        temperature: < 1 sharpens each conditional, > 1 flattens it; 1 is the model itself.
        cache: use the model's incremental cache; False recomputes the past at every step.
        speaker: the speaker of every clip, for a speaker-conditional model; -1 draws clip i's from
            ``generators[i]`` (uniform), before any of its samples.
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
    speakers = _speakers(conditioning(model).num_speakers, speaker, generators, device)
    x = torch.zeros(n, *spec.shape, device=device, dtype=next(model.parameters()).dtype)
    extra = {} if speakers is None else {"speaker": speakers}
    with eval_mode(model):
        stepper = model.sampling_cache(n, y, **extra) if cache else _NaiveSequence(model, y, speakers)
        for t in range(length):
            x[:, :, t] = head.sample_step(stepper.step(x, t), generators, temperature).to(x.dtype)
    return x
