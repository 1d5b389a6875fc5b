"""Rotation prediction.

Gidaris, Singh & Komodakis 2018, "Unsupervised Representation Learning by Predicting Image Rotations"
(arXiv:1803.07728): every image is shown turned by 0, 90, 180 and 270 degrees and the network names the
turn (a 4-way classification; the paper's RotNet trains on all four rotations of each image in one batch,
as here). Differences: genlab's small shared backbone (genlab/nn/ssl.py) instead of a NIN / AlexNet,
and a linear head on its pooled features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.models.self_supervised import BackboneConfig, ssl_card
from genlab.nn.spec import DataSpec, Phase
from genlab.nn.ssl import Backbone
from genlab.registry import MODELS


@MODELS.register("rotation")
class RotationNet(nn.Module):
    card = ssl_card("rotation")

    @dataclass
    class Config(BackboneConfig):
        pass  # the backbone's width is the only knob

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        self.backbone = Backbone(data.channels, cfg.width)
        self.head = nn.Linear(self.backbone.out_dim, 4)

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images in [0, 1] -> (B, 4) logits of the quarter turns."""
        return self.head(self.backbone(x))
