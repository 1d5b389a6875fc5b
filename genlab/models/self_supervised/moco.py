"""MoCo v2: contrast with a queue of keys from a momentum encoder.

He, Fan, Wu, Xie & Girshick 2020, "Momentum Contrast for Unsupervised Visual Representation Learning"
(arXiv:1911.05722), with the v2 changes of Chen, Fan, Girshick & He 2020 (arXiv:2003.04297: MLP head,
stronger augmentation, temperature 0.2). A query view goes through the trained encoder, a key view of
the same image through a momentum encoder (an exponential moving average of the encoder, updated by the
objective once per training step, genlab/nn/ssl.py ``momentum_update``); InfoNCE picks the key among
the queue of keys of earlier batches. The queue is the objective's state (saved in checkpoints); the
momentum encoder is part of the model (``momentum``, never stepped by an optimizer). Differences: the
small shared backbone, a queue of 4096 keys (paper 65536) and momentum 0.99 (paper 0.999) for short
CPU runs; no shuffled batch norm (one process).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.models.self_supervised import ssl_card
from genlab.models.self_supervised.simclr import SimCLR
from genlab.nn.spec import DataSpec, Phase
from genlab.nn.ssl import momentum_twin, twin_forward
from genlab.registry import MODELS


@MODELS.register("moco")
class MoCo(SimCLR):
    """The query encoder is SimCLR's encoder + projection head; MoCo adds the momentum key encoder."""

    card = ssl_card("moco", projection=8)

    @dataclass
    class Config(SimCLR.Config):
        pass  # projection is the key / query dimension (paper 128)

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__(cfg, data)
        # The key encoder starts as a copy of the query encoder (paper, Algorithm 1).
        self.momentum = momentum_twin(self.backbone, self.head)

    def phases(self) -> list[Phase]:
        return [Phase("main", ("backbone", "head"))]

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) key views -> (B, projection) keys from the momentum encoder (no gradient)."""
        return twin_forward(self.momentum, x)
