"""Jigsaw puzzles.

Noroozi & Favaro 2016, "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles"
(arXiv:1603.09246): the image is cut into a 3 x 3 grid of tiles, shuffled by one permutation of a
fixed set chosen far apart in Hamming distance, each tile goes through the same (siamese) backbone,
and a head on the concatenated tile features names the permutation. Differences: a small set
(24 permutations by default, the paper 100-1000), chosen greedily from a seeded pool of candidates
rather than from all 9! (genlab/nn/ssl.py ``permutation_set``); no gaps or jitter between tiles
(the paper's guard against edge shortcuts; tiles of 28 x 28 digits are only 9 pixels wide).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.config import bounded
from genlab.models.self_supervised import BackboneConfig, ssl_card
from genlab.nn.spec import DataSpec, Phase
from genlab.nn.ssl import Backbone, permutation_set
from genlab.registry import MODELS


@MODELS.register("jigsaw")
class JigsawNet(nn.Module):
    card = ssl_card("jigsaw", permutations=6)

    @dataclass
    class Config(BackboneConfig):
        grid: int = bounded(3, ge=2)  # tiles per side (paper 3)
        permutations: int = bounded(24, ge=2)  # size of the permutation set (paper 100 to 1000)
        permutation_seed: int = bounded(0, ge=0)  # seeds the candidate pool the set is chosen from

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        self.backbone = Backbone(data.channels, cfg.width)
        tiles, d = cfg.grid**2, self.backbone.out_dim
        self.head = nn.Sequential(nn.Linear(tiles * d, 4 * d), nn.ReLU(inplace=True), nn.Linear(4 * d, cfg.permutations))
        # A pure function of the config, so not saved with the weights.
        self.register_buffer("perms", permutation_set(cfg.permutations, tiles, cfg.permutation_seed), persistent=False)

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, T, C, t, t) shuffled tiles -> (B, permutations) logits of which permutation was applied."""
        B, T = tiles.shape[:2]
        h = self.backbone(tiles.flatten(0, 1))  # (B * T, D): every tile alone through the shared backbone
        return self.head(h.reshape(B, -1))
