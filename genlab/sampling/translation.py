"""Translating given images with an image-to-image model (CycleGAN): the ``translate`` sampler.

A translation is deterministic: sample i is the translation of source image i, whatever the
batch it is drawn in (the generators are passed for the common sampler signature and unused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from genlab.card import conditioning
from genlab.errors import InputError
from genlab.nn.modes import eval_mode
from genlab.registry import register_sampler


@dataclass
class TranslateOptions:
    direction: Literal["a2b", "b2a"] = "a2b"  # a2b: domain A (data.name) -> B (data.domain_b); b2a: back


@register_sampler("translate", TranslateOptions)
@torch.no_grad()
def sample_translate(model, n: int, generators: list[torch.Generator], device, label=None, source=None,
                     direction: str = "a2b") -> torch.Tensor:
    """The translations (n, C, H, W) in [0, 1] of ``source`` images (n, C, H, W) in [0, 1].

    Args:
        model: a model whose card declares ``conditioning.source_image`` (``translate(x, direction)``).
        source: the images to translate, one per sample.
        direction: a2b or b2a.
    """
    if label is not None:
        raise InputError(f"{type(model).__name__} translates images and takes no label: drop --label")
    if not conditioning(model).source_image:
        raise InputError(f"{type(model).__name__} does not translate images (its card takes no source image)")
    if source is None:
        raise InputError("the translate sampler needs the images to translate: `genlab translate RUN IMAGE...`")
    if source.shape[0] != n:
        raise InputError(f"give one source image per sample: {source.shape[0]} images for {n} samples")
    with eval_mode(model):
        return model.translate(source.to(device).float(), direction).clamp(0, 1)
