"""SimCLR: contrastive learning of two augmented views.

Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning of Visual
Representations" (arXiv:2002.05709): two random views of each image go through the encoder and an MLP
projection head; the NT-Xent loss (genlab/objectives/self_supervised.py ``nt_xent``) makes each view
pick its partner out of the other 2B - 2 views of the batch. The representation is the encoder's
output before the head. Differences: genlab's small shared backbone instead of a ResNet-50; digit-safe
augmentations (random resized crop, small rotation, contrast / brightness, noise; no flips or colour
distortion: genlab/nn/ssl.py ``random_view``); Adam instead of LARS at small batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.config import bounded
from genlab.models.self_supervised import BackboneConfig, ssl_card
from genlab.nn.spec import DataSpec, Phase
from genlab.nn.ssl import Backbone, mlp
from genlab.registry import MODELS


@MODELS.register("simclr")
class SimCLR(nn.Module):
    card = ssl_card("simclr", projection=8)

    @dataclass
    class Config(BackboneConfig):
        projection: int = bounded(64, ge=1)  # output of the projection head (paper 128)

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        self.backbone = Backbone(data.channels, cfg.width)
        d = self.backbone.out_dim
        self.head = mlp(d, d, cfg.projection)

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) views in [0, 1] -> (B, projection) projections (not normalised)."""
        return self.head(self.backbone(x))
