"""Gated PixelCNN.

van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu 2016,
"Conditional Image Generation with PixelCNN Decoders" (arXiv:1606.05328),
Section 2 and Figure 2.

Two stacks remove PixelCNN's blind spot. The vertical stack sees every row at
or above the current one (a (k/2+1) x k window), and is shifted down one row
before it feeds the horizontal stack, so that row i only receives rows < i. The
horizontal stack sees the current row up to the current pixel (a 1 x (k/2+1)
window, type A in the first layer). Each layer is gated,
y = tanh(W_f * x + V_f^T h) * sigmoid(W_g * x + V_g^T h), with h a learned
per-class bias when ``conditional``; the horizontal stack is residual.

Differences from the paper: widths and depth sized for CPU training (the paper
uses 20 layers of 384 feature maps on CIFAR-10); the vertical-to-horizontal link
takes the vertical pre-activations (2p channels) through a 1x1 convolution as in
the paper's figure; optional outputs are Bernoulli (binary data), 256-way softmax
(paper) or the PixelCNN++ logistic mixture. For colour data with per-sub-pixel
heads the horizontal stack's centre taps are split into R, G, B groups as in
the paper.

The layers, the stack and the sampling cache are in ``genlab/nn/gated.py`` (shared with PixelVAE).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.card import ConditioningSpec, ModelCard, SamplerSpec, TINY_RGB
from genlab.config import bounded
from genlab.errors import InputError
from genlab.models.autoregressive.heads import AutoregressiveHead, Likelihood
from genlab.nn.distributions import PixelDistribution
from genlab.nn.gated import GatedCache, GatedStack
from genlab.nn.labels import batch_labels
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


@MODELS.register("gated-pixelcnn")
class GatedPixelCNN(GatedStack):  # the stack's attributes are the model's (checkpoint keys unchanged)
    card = ModelCard(
        family="autoregressive", default_objective="nll", samplers=(SamplerSpec("autoregressive"),),
        evaluators=("exact-nll",), likelihood="exact",
        conditioning=ConditioningSpec(class_label="config", partial_image=True),  # model.conditional=true
        run_defaults={"optim.lr": 1e-3, "train.batch_size": 32},
        tiny=dict(channels=6, layers=3, first_kernel=3, kernel=3, head_channels=6, conditional=True),
        tiny_data=TINY_RGB,
    )

    @dataclass
    class Config:
        likelihood: Likelihood = "auto"  # auto: bernoulli for binary data, categorical for 8-bit
        channels: int = bounded(64, ge=1)  # p, feature maps of each stack (paper 384 on CIFAR-10)
        layers: int = bounded(8, ge=1)  # gated layers including the first (paper 20 on CIFAR-10)
        first_kernel: int = bounded(7, ge=1, odd=True)  # window width of the first layer (7 in the paper)
        kernel: int = bounded(3, ge=1, odd=True)  # window width of the later layers (3 in the paper)
        head_channels: int = bounded(256, ge=1)  # ReLU + 1x1 output layer width (paper 1024)
        conditional: bool = False  # a learned per-class bias in every gated layer (needs labelled data)
        mixture_components: int = bounded(10, ge=1)  # logistic-mixture only

    def __init__(self, cfg: Config, data: DataSpec):
        if cfg.conditional and data.num_classes < 1:
            raise InputError("model.conditional=true needs a labelled dataset (this one has no classes)")
        head = AutoregressiveHead.create(cfg.likelihood, data, cfg.mixture_components)
        super().__init__(data.channels, cfg.channels, cfg.layers, cfg.first_kernel, cfg.kernel, cfg.head_channels,
                         head.raw_channels, head.raw_groups(), head.colour_groups,
                         num_classes=data.num_classes if cfg.conditional else 0)
        self.cfg, self.data, self.head = cfg, data, head
        self.conditional = cfg.conditional

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def _labels(self, y, batch: int):
        if not self.conditional:
            return None
        return batch_labels(y, batch, "this gated-pixelcnn")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1], y (B,) labels when conditional -> raw outputs (B, R, H, W)."""
        return super().forward(x, self._labels(y, x.shape[0]))

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.distribution(raw)

    def sampling_cache(self, batch: int, y: torch.Tensor | None) -> GatedCache:
        """Incremental evaluation for sampling (see genlab/nn/gated.py)."""
        return self.cache(batch, self.data.height, self.data.width, self.head.step_raw, self._labels(y, batch))
