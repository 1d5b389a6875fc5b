"""PixelCNN.

van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks"
(arXiv:1601.06759), Sections 3.4-3.5 and Figure 5 / Table 1: a 7x7 type-A masked
convolution, residual blocks (ReLU, 1x1 2h->h, ReLU, 3x3 type-B masked, ReLU,
1x1 h->2h, added to the input), then ReLU + 1x1 type-B layers and a per-sub-pixel
output. Colour images order R before G before B inside every pixel through the
masks (``genlab.nn.masked``).

Differences from the paper: the default widths and depth are small enough to
train on a CPU (the paper uses h=128, 15 blocks and 1024-wide output layers on
CIFAR-10); besides its 256-way softmax and Bernoulli outputs the model can emit
the discretized logistic mixture of PixelCNN++ (then the colour order lives in
the mixture and the masks are purely spatial). The stacked masked 3x3 kernels
leave the paper's known blind spot (pixels up-right beyond the diagonal are never
seen); ``gated-pixelcnn`` removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.card import ConditioningSpec, FeatureSpec, ModelCard, SamplerSpec, TINY_RGB
from genlab.config import bounded
from genlab.errors import InputError
from genlab.models.autoregressive.heads import AutoregressiveHead, Likelihood
from genlab.nn.distributions import PixelDistribution
from genlab.nn.masked import MaskedConv2d
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


class _ResidualBlock(nn.Module):
    """PixelCNN residual block (Figure 5 of the paper); every conv is type B."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        half = channels // 2
        self.reduce = MaskedConv2d.raster(channels, half, 1, "B", groups, groups)
        self.conv = MaskedConv2d.raster(half, half, kernel, "B", groups, groups)
        self.expand = MaskedConv2d.raster(half, channels, 1, "B", groups, groups)

    def forward(self, x):
        h = self.reduce(F.relu(x))
        h = self.conv(F.relu(h))
        return x + self.expand(F.relu(h))


@MODELS.register("pixelcnn")
class PixelCNN(nn.Module):
    card = ModelCard(
        family="autoregressive", default_objective="nll", samplers=(SamplerSpec("autoregressive"),),
        evaluators=("exact-nll",), likelihood="exact",
        # no class input (use gated-pixelcnn or pixel-transformer for that); completes given top rows
        conditioning=ConditioningSpec(partial_image=True),
        features=FeatureSpec("hidden", "hidden"),  # `genlab probe`: the 1x1 hidden layer before the output, pooled
        run_defaults={"optim.lr": 1e-3, "train.batch_size": 64},
        tiny=dict(channels=6, residual_blocks=2, first_kernel=3, kernel=3, head_channels=6),
        tiny_data=TINY_RGB,
    )

    @dataclass
    class Config:
        likelihood: Likelihood = "auto"  # auto: bernoulli for binary data, categorical for 8-bit
        channels: int = bounded(64, ge=2)  # 2h in the paper: features between residual blocks (paper 256)
        residual_blocks: int = bounded(8, ge=0)  # paper: 15 on CIFAR-10
        first_kernel: int = bounded(7, ge=1, odd=True)  # the type-A layer (paper 7x7)
        kernel: int = bounded(3, ge=1, odd=True)  # the type-B layers inside residual blocks (paper 3x3)
        head_channels: int = bounded(256, ge=1)  # width of the two ReLU + 1x1 output layers (paper 1024)
        mixture_components: int = bounded(10, ge=1)  # logistic-mixture only (PixelCNN++ uses 10)

        def validate(self):
            if self.channels % 2:
                raise InputError("channels must be even (the blocks use channels / 2 inside)")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        self.cfg, self.data = cfg, data
        self.head = AutoregressiveHead.create(cfg.likelihood, data, cfg.mixture_components)
        g = self.head.colour_groups
        image_groups = self.head.image_groups()
        self.input = MaskedConv2d.raster(data.channels, cfg.channels, cfg.first_kernel, "A", image_groups, g)
        self.blocks = nn.ModuleList(_ResidualBlock(cfg.channels, cfg.kernel, g) for _ in range(cfg.residual_blocks))
        self.hidden = MaskedConv2d.raster(cfg.channels, cfg.head_channels, 1, "B", g, g)
        self.output = MaskedConv2d.raster(cfg.head_channels, self.head.raw_channels, 1, "B", g,
                                          self.head.raw_groups())

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> raw outputs (B, R, H, W); pixel (i, j) sees only its past.

        ``y`` is accepted for a uniform signature and ignored: this model is unconditional.
        """
        h = self.input(x * 2 - 1)
        for block in self.blocks:
            h = block(h)
        return self.output(F.relu(self.hidden(F.relu(h))))

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.distribution(raw)

    def rows_seen(self) -> int:
        """How many rows above its own an output can see: each masked k x k kernel adds k // 2."""
        return self.cfg.first_kernel // 2 + self.cfg.residual_blocks * (self.cfg.kernel // 2)

    def sampling_cache(self, batch: int, y=None) -> "_RowWindow":
        """Incremental evaluation for sampling: recompute only the rows the current pixel sees."""
        return _RowWindow(self)


class _RowWindow:
    """Raw outputs of pixel (i, j) from canvas rows i - rows_seen .. i only.

    Exact: the output at row i depends on input rows i - rows_seen .. i alone, and
    every intermediate feature it uses has its own field inside that window, so the
    zero padding above the window never reaches it. On 28x28 images with the default
    depth (11 rows seen) a step costs at most 12 rows instead of 28.
    """

    def __init__(self, model: PixelCNN):
        self.model, self.reach = model, model.rows_seen()

    def step(self, canvas: torch.Tensor, i: int, j: int, c: int) -> torch.Tensor:
        lo = max(0, i - self.reach)
        raw = self.model(canvas[:, :, lo : i + 1])
        return raw[:, self.model.head.step_raw(c), i - lo, j]
