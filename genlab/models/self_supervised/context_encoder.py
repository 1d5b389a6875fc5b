"""Context encoder: reconstruction of masked regions.

Pathak et al. 2016, "Context Encoders: Feature Learning by Inpainting" (arXiv:1604.07379): an encoder
sees the image with a region removed and a decoder reconstructs the missing pixels from the encoder's
code; the encoder's features are the representation. Here the removed region is the paper's "random
block" (one square per image at a random place, filled with grey 0.5) and the loss is the squared error
on the hole (its L2 reconstruction loss, genlab/objectives/self_supervised.py). Differences: no
adversarial term (the paper adds one for sharper inpainting; it is not needed for features), genlab's
shared small backbone with its pooled (B, D) code, and a small transposed-conv decoder from that code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import bounded
from genlab.models.self_supervised import BackboneConfig, ssl_card
from genlab.nn.spec import DataSpec, Phase
from genlab.nn.ssl import Backbone
from genlab.registry import MODELS


@MODELS.register("context-encoder")
class ContextEncoder(nn.Module):
    card = ssl_card("context-encoder", hole=4)

    @dataclass
    class Config(BackboneConfig):
        hole: int = bounded(0, ge=0)  # side of the masked square in pixels; 0: half the image side

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        self.backbone = Backbone(data.channels, cfg.width)
        w = cfg.width
        self.grid = (math.ceil(data.height / 4), math.ceil(data.width / 4))
        self.head = nn.Sequential(  # the decoder: code -> (2w, H/4, W/4) -> x2 -> x2 -> image logits
            nn.Linear(self.backbone.out_dim, 2 * w * self.grid[0] * self.grid[1]), nn.ReLU(inplace=True),
            nn.Unflatten(1, (2 * w, *self.grid)),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(w, data.channels, 4, 2, 1))

    @property
    def hole_size(self) -> int:
        return self.cfg.hole or min(self.data.height, self.data.width) // 2

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def forward(self, masked: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images with a hole -> (B, C, H, W) logits of the whole image (sigmoid: pixels)."""
        raw = self.head(self.backbone(masked))
        if raw.shape[-2:] != masked.shape[-2:]:  # sides that are not multiples of 4
            raw = F.interpolate(raw, size=masked.shape[-2:], mode="bilinear", align_corners=False)
        return raw
