"""DINO: self-distillation with no labels.

Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers" (arXiv:2104.14294): a
student network matches the output distribution of a teacher over K prototypes across views; the
teacher is an exponential moving average of the student (updated by the objective once per training
step, genlab/nn/ssl.py ``momentum_update``), its outputs are centred (a running mean kept in the
objective's state) and sharpened (temperature 0.04 against the student's 0.1), which together avoid
collapse. The teacher sees the two global crops, the student every crop (multi-crop). The teacher's
backbone is the representation, as in the paper. Differences: genlab's small conv backbone instead of a
ViT, 256 prototypes (paper 65536), constant teacher momentum and temperature (the paper schedules both),
local crops at full resolution (smaller areas of the image, resampled to its size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.config import bounded
from genlab.models.self_supervised import BackboneConfig, ssl_card
from genlab.nn.spec import DataSpec, Phase
from genlab.nn.ssl import Backbone, PrototypeHead, momentum_twin, twin_forward
from genlab.registry import MODELS


@MODELS.register("dino")
class DINO(nn.Module):
    card = ssl_card("dino", features="teacher.backbone", prototypes=16, bottleneck=8)

    @dataclass
    class Config(BackboneConfig):
        prototypes: int = bounded(256, ge=2)  # K, the output dimension (paper 65536)
        bottleneck: int = bounded(64, ge=1)  # the head's l2-normalised bottleneck (paper 256)

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        self.backbone = Backbone(data.channels, cfg.width)
        d = self.backbone.out_dim
        self.head = PrototypeHead(d, 2 * d, cfg.bottleneck, cfg.prototypes)
        self.teacher = momentum_twin(self.backbone, self.head)

    def phases(self) -> list[Phase]:
        return [Phase("main", ("backbone", "head"))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) views -> (B, K) student scores (cosines to the prototypes)."""
        return self.head(self.backbone(x))

    def teacher_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) global views -> (B, K) teacher scores (no gradient)."""
        return twin_forward(self.teacher, x)
