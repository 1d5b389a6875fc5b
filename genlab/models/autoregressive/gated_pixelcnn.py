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

Sampling cache (``sampling_cache``): the vertical stack of row i - 1 is computed
once when row i starts, and each new pixel recomputes only the horizontal stack
at that pixel (every layer reads a 1 x (k/2+1) window of the layer below), so a
pixel costs O(layers) small products instead of a full forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.card import ConditioningSpec, ModelCard, SamplerSpec, TINY_RGB
from genlab.config import bounded
from genlab.errors import InputError
from genlab.models.autoregressive.heads import AutoregressiveHead, Likelihood
from genlab.nn.distributions import PixelDistribution
from genlab.nn.labels import batch_labels
from genlab.nn.masked import MaskedConv2d, causal_mask, channel_groups, down_shift
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


def _gate(pre: torch.Tensor) -> torch.Tensor:
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class _GatedLayer(nn.Module):
    """One layer of both stacks (Figure 2 of the paper)."""

    def __init__(self, in_channels: int, channels: int, kernel: int, first: bool, in_groups: torch.Tensor,
                 groups: int, num_classes: int):
        super().__init__()
        self.first = first
        self.kernel = kernel
        half = kernel // 2
        feat_groups = channel_groups(channels, groups)
        gate_groups = torch.cat([feat_groups, feat_groups])  # the tanh and sigmoid halves of each feature
        # Vertical: rows i - k/2 .. i, columns j - k/2 .. j + k/2. No mask: it only reaches
        # the horizontal stack after the down shift.
        v_mask = torch.ones(2 * channels, in_channels, half + 1, kernel)
        self.v_conv = MaskedConv2d(in_channels, 2 * channels, v_mask, (half, half, half, 0))
        # Horizontal: columns j - k/2 .. j of row i; the centre tap is colour-masked.
        h_mask = causal_mask(gate_groups, in_groups, (1, half + 1), (0, half), "A" if first else "B")
        self.h_conv = MaskedConv2d(in_channels, 2 * channels, h_mask, (half, 0, 0, 0))
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = MaskedConv2d.raster(channels, channels, 1, "B", feat_groups, feat_groups)
        if num_classes:
            self.v_class = nn.Embedding(num_classes, 2 * channels)
            self.h_class = nn.Embedding(num_classes, 2 * channels)
            nn.init.zeros_(self.v_class.weight)
            nn.init.zeros_(self.h_class.weight)
        else:
            self.v_class = self.h_class = None

    def forward(self, v, h, y):
        v_pre = self.v_conv(v)  # (B, 2p, H, W)
        h_pre = self.h_conv(h) + self.link(down_shift(v_pre))  # row i receives vertical row i - 1
        if self.v_class is not None:
            v_pre = v_pre + self.v_class(y)[:, :, None, None]
            h_pre = h_pre + self.h_class(y)[:, :, None, None]
        h_new = self.h_out(_gate(h_pre))
        return _gate(v_pre), h_new if self.first else h + h_new


@MODELS.register("gated-pixelcnn")
class GatedPixelCNN(nn.Module):
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
        first_kernel: int = bounded(7, ge=1)  # window width of the first layer (7 in the paper)
        kernel: int = bounded(3, ge=1)  # window width of the later layers (3 in the paper)
        head_channels: int = bounded(256, ge=1)  # ReLU + 1x1 output layer width (paper 1024)
        conditional: bool = False  # a learned per-class bias in every gated layer (needs labelled data)
        mixture_components: int = bounded(10, ge=1)  # logistic-mixture only

        def validate(self):
            if self.first_kernel % 2 == 0 or self.kernel % 2 == 0:
                raise InputError("first_kernel and kernel must be odd")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        self.cfg, self.data = cfg, data
        self.conditional = cfg.conditional
        if cfg.conditional and data.num_classes < 1:
            raise InputError("model.conditional=true needs a labelled dataset (this one has no classes)")
        self.head = AutoregressiveHead.create(cfg.likelihood, data, cfg.mixture_components)
        g = self.head.colour_groups
        image_groups = torch.arange(data.channels) if g > 1 else torch.zeros(data.channels, dtype=torch.long)
        n_cls = data.num_classes if cfg.conditional else 0
        self.layers = nn.ModuleList()
        for i in range(cfg.layers):
            first = i == 0
            self.layers.append(_GatedLayer(
                data.channels if first else cfg.channels, cfg.channels, cfg.first_kernel if first else cfg.kernel,
                first, image_groups if first else channel_groups(cfg.channels, g), g, n_cls))
        self.hidden = MaskedConv2d.raster(cfg.channels, cfg.head_channels, 1, "B", g, g)
        self.output = MaskedConv2d.raster(cfg.head_channels, self.head.raw_channels, 1, "B", g,
                                          self.head.raw_groups())

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def _labels(self, y, batch: int):
        if not self.conditional:
            return None
        return batch_labels(y, batch, "this gated-pixelcnn")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1], y (B,) labels when conditional -> raw outputs (B, R, H, W)."""
        y = self._labels(y, x.shape[0])
        v = h = x * 2 - 1
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.output(F.relu(self.hidden(F.relu(h))))

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.distribution(raw)

    def sampling_cache(self, batch: int, y: torch.Tensor | None) -> "_GatedCache":
        """Incremental evaluation for sampling; see the module docstring."""
        return _GatedCache(self, batch, self._labels(y, batch))


class _GatedCache:
    """Raw outputs pixel by pixel, recomputing only what a new pixel can change.

    ``step(canvas, i, j, c)`` must be called in raster order (then channel order),
    with ``canvas`` holding every sub-pixel before (i, j, c). It returns the raw
    outputs that step c of pixel (i, j) reads, ``model(canvas)[:, head.step_raw(c), i, j]``.
    """

    def __init__(self, model: GatedPixelCNN, batch: int, y):
        p = next(model.parameters())
        H, W = model.data.height, model.data.width
        F_ = model.cfg.channels
        self.model, self.y = model, y
        self.rows_done = 0  # vertical stack computed for rows < rows_done
        # Inputs of each layer's convolutions: layer 0 reads the image, layer l the outputs of l - 1.
        self.v_in = [None] + [p.new_zeros(batch, F_, H, W) for _ in model.layers[1:]]
        self.h_in = [None] + [p.new_zeros(batch, F_, H, W) for _ in model.layers[1:]]
        self.v_pre = [p.new_zeros(batch, 2 * F_, H, W) for _ in model.layers]
        # Effective weights, masked once: (out, in * kw) matrices for the per-pixel products.
        self.h_weight = [layer.h_conv.masked_weight().flatten(1) for layer in model.layers]
        self.link_weight = [layer.link.weight.flatten(1) for layer in model.layers]
        self.out_weight = [layer.h_out.masked_weight().flatten(1) for layer in model.layers]
        self.hidden_weight = model.hidden.masked_weight().flatten(1)
        self.output_weight = model.output.masked_weight().flatten(1)
        self.v_class = [None if l.v_class is None else l.v_class(y)[:, :, None] for l in model.layers]
        self.h_class = [None if l.h_class is None else l.h_class(y) for l in model.layers]

    def _image(self, canvas, rows: slice) -> torch.Tensor:
        return canvas[:, :, rows] * 2 - 1

    def _vertical_row(self, canvas, r: int) -> None:
        """Compute every layer's vertical stack at row r (canvas rows <= r are final)."""
        for l, layer in enumerate(self.model.layers):
            half = layer.kernel // 2
            lo = max(0, r - half)
            src = self._image(canvas, slice(lo, r + 1)) if l == 0 else self.v_in[l][:, :, lo : r + 1]
            # Same zero padding as the full convolution: k/2 columns each side, missing rows on top.
            src = F.pad(src, (half, half, half - (r - lo), 0))
            pre = F.conv2d(src, layer.v_conv.masked_weight(), layer.v_conv.bias)[:, :, 0]  # (B, 2p, W)
            self.v_pre[l][:, :, r] = pre
            if l + 1 < len(self.model.layers):
                if self.v_class[l] is not None:
                    pre = pre + self.v_class[l]
                self.v_in[l + 1][:, :, r] = _gate(pre)

    def step(self, canvas: torch.Tensor, i: int, j: int, c: int) -> torch.Tensor:
        while self.rows_done < i:  # row i needs the vertical stack of row i - 1
            self._vertical_row(canvas, self.rows_done)
            self.rows_done += 1
        model = self.model
        h = None
        for l, layer in enumerate(model.layers):
            half = layer.kernel // 2
            lo = max(0, j - half)
            src = self._image(canvas, slice(i, i + 1))[:, :, 0, lo : j + 1] if l == 0 else \
                self.h_in[l][:, :, i, lo : j + 1]  # (B, in, <= k/2 + 1)
            src = F.pad(src, (half - (j - lo), 0)).flatten(1)
            pre = F.linear(src, self.h_weight[l], layer.h_conv.bias)  # (B, 2p)
            above = self.v_pre[l][:, :, i - 1, j] if i > 0 else torch.zeros_like(pre)  # the down shift
            pre = pre + F.linear(above, self.link_weight[l], layer.link.bias)
            if self.h_class[l] is not None:
                pre = pre + self.h_class[l]
            h_new = F.linear(_gate(pre), self.out_weight[l], layer.h_out.bias)
            h = h_new if layer.first else self.h_in[l][:, :, i, j] + h_new
            if l + 1 < len(model.layers):
                self.h_in[l + 1][:, :, i, j] = h
        hidden = F.linear(F.relu(h), self.hidden_weight, model.hidden.bias)
        raw = F.linear(F.relu(hidden), self.output_weight, model.output.bias)  # (B, R)
        return raw[:, model.head.step_raw(c)]
