"""The gated PixelCNN stack (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders", arXiv:1606.05328, Section 2 and Figure 2), shared by the gated PixelCNN and by PixelVAE's decoder.

Two stacks remove PixelCNN's blind spot. The vertical stack sees every row at or
above the current one (a (k/2+1) x k window), and is shifted down one row before it
feeds the horizontal stack, so that row i only receives rows < i. The horizontal
stack sees the current row up to the current pixel (a 1 x (k/2+1) window, type A in
the first layer). Each layer is gated,
y = tanh(W_f * x + V_f^T h) * sigmoid(W_g * x + V_g^T h), where the conditioning h is
a learned per-class bias (paper Eq. 4) and/or a map s = m(z) of the image's size
added through 1x1 convolutions (paper Eq. 5, location-dependent conditioning; what
PixelVAE's decoder takes). Conditioning never reads x, so it cannot break causality.

Sampling cache (``GatedStack.cache``): the vertical stack of row i - 1 is computed
once when row i starts, and each new pixel recomputes only the horizontal stack at
that pixel (every layer reads a 1 x (k/2+1) window of the layer below), so a pixel
costs O(layers) small products instead of a full forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.nn.masked import MaskedConv2d, causal_mask, channel_groups, down_shift


def gate(pre: torch.Tensor) -> torch.Tensor:
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One layer of both stacks (Figure 2 of the paper)."""

    def __init__(self, in_channels: int, channels: int, kernel: int, first: bool, in_groups: torch.Tensor,
                 groups: int, num_classes: int, cond_channels: int = 0):
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
        if cond_channels:  # V * s of Eq. 5, a 1x1 convolution of the conditioning map
            self.v_cond = nn.Conv2d(cond_channels, 2 * channels, 1)
            self.h_cond = nn.Conv2d(cond_channels, 2 * channels, 1)
        else:
            self.v_cond = self.h_cond = None

    def biases(self, y, cond) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """The conditioning terms added to the vertical and horizontal pre-activations: (B, 2p, 1|H, 1|W) or 0."""
        v, h = 0.0, 0.0
        if self.v_class is not None:
            v, h = self.v_class(y)[:, :, None, None], self.h_class(y)[:, :, None, None]
        if self.v_cond is not None:
            v, h = v + self.v_cond(cond), h + self.h_cond(cond)
        return v, h

    def forward(self, v, h, y=None, cond=None):
        v_pre = self.v_conv(v)  # (B, 2p, H, W)
        h_pre = self.h_conv(h) + self.link(down_shift(v_pre))  # row i receives vertical row i - 1
        v_bias, h_bias = self.biases(y, cond)
        v_pre, h_pre = v_pre + v_bias, h_pre + h_bias
        h_new = self.h_out(gate(h_pre))
        return gate(v_pre), h_new if self.first else h + h_new


class GatedStack(nn.Module):
    """Gated layers, then ReLU -> 1x1 -> ReLU -> 1x1 to raw outputs; causal in raster (and colour) order.

    Args:
        image_channels: C of the input image.
        channels, layers, first_kernel, kernel, head_channels: widths and depth (see GatedPixelCNN.Config).
        raw_channels, raw_groups: raw output channels and their colour group (from the likelihood head).
        colour_groups: 1, or C for per-sub-pixel heads on colour data.
        num_classes: > 0 adds a learned per-class bias to every layer.
        cond_channels: > 0 adds a conditioning map (B, cond_channels, H, W) to every layer.
    """

    def __init__(self, image_channels: int, channels: int, layers: int, first_kernel: int, kernel: int,
                 head_channels: int, raw_channels: int, raw_groups: torch.Tensor, colour_groups: int,
                 num_classes: int = 0, cond_channels: int = 0):
        super().__init__()
        g = colour_groups
        image_groups = torch.arange(image_channels) if g > 1 else torch.zeros(image_channels, dtype=torch.long)
        self.layers = nn.ModuleList()
        for i in range(layers):
            first = i == 0
            self.layers.append(GatedLayer(
                image_channels if first else channels, channels, first_kernel if first else kernel,
                first, image_groups if first else channel_groups(channels, g), g, num_classes, cond_channels))
        self.hidden = MaskedConv2d.raster(channels, head_channels, 1, "B", g, g)
        self.output = MaskedConv2d.raster(head_channels, raw_channels, 1, "B", g, raw_groups)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> raw outputs (B, R, H, W); y (B,) labels, cond (B, S, H, W) map."""
        v = h = x * 2 - 1
        for layer in self.layers:
            v, h = layer(v, h, y, cond)
        return self.output(F.relu(self.hidden(F.relu(h))))

    def cache(self, batch: int, height: int, width: int, step_raw, y=None, cond=None) -> "GatedCache":
        """Incremental evaluation for sampling; ``step_raw(c)`` names the raw channels of step c."""
        return GatedCache(self, batch, height, width, step_raw, y, cond)


class GatedCache:
    """Raw outputs pixel by pixel, recomputing only what a new pixel can change.

    ``step(canvas, i, j, c)`` must be called in raster order (then channel order),
    with ``canvas`` holding every sub-pixel before (i, j, c). It returns the raw
    outputs that step c of pixel (i, j) reads, ``stack(canvas, y, cond)[:, step_raw(c), i, j]``.
    """

    def __init__(self, stack: GatedStack, batch: int, H: int, W: int, step_raw, y, cond):
        p = next(stack.parameters())
        F_ = stack.layers[0].h_out.weight.shape[0]
        self.stack, self.step_raw = stack, step_raw
        self.rows_done = 0  # vertical stack computed for rows < rows_done
        # Inputs of each layer's convolutions: layer 0 reads the image, layer l the outputs of l - 1.
        self.v_in = [None] + [p.new_zeros(batch, F_, H, W) for _ in stack.layers[1:]]
        self.h_in = [None] + [p.new_zeros(batch, F_, H, W) for _ in stack.layers[1:]]
        self.v_pre = [p.new_zeros(batch, 2 * F_, H, W) for _ in stack.layers]
        # Effective weights, masked once: (out, in * kw) matrices for the per-pixel products.
        self.h_weight = [layer.h_conv.masked_weight().flatten(1) for layer in stack.layers]
        self.link_weight = [layer.link.weight.flatten(1) for layer in stack.layers]
        self.out_weight = [layer.h_out.masked_weight().flatten(1) for layer in stack.layers]
        self.hidden_weight = stack.hidden.masked_weight().flatten(1)
        self.output_weight = stack.output.masked_weight().flatten(1)
        # Conditioning terms of every layer, broadcast to (B, 2p, H, W) once.
        shape = (batch, 2 * F_, H, W)
        self.v_bias, self.h_bias = [], []
        for layer in stack.layers:
            v, h = layer.biases(y, cond)
            self.v_bias.append(p.new_zeros(shape) + v)
            self.h_bias.append(p.new_zeros(shape) + h)

    def _vertical_row(self, canvas, r: int) -> None:
        """Compute every layer's vertical stack at row r (canvas rows <= r are final)."""
        layers = self.stack.layers
        for l, layer in enumerate(layers):
            half = layer.kernel // 2
            lo = max(0, r - half)
            src = canvas[:, :, lo : r + 1] * 2 - 1 if l == 0 else self.v_in[l][:, :, lo : r + 1]
            # Same zero padding as the full convolution: k/2 columns each side, missing rows on top.
            src = F.pad(src, (half, half, half - (r - lo), 0))
            pre = F.conv2d(src, layer.v_conv.masked_weight(), layer.v_conv.bias)[:, :, 0]  # (B, 2p, W)
            self.v_pre[l][:, :, r] = pre
            if l + 1 < len(layers):
                self.v_in[l + 1][:, :, r] = gate(pre + self.v_bias[l][:, :, r])

    def step(self, canvas: torch.Tensor, i: int, j: int, c: int) -> torch.Tensor:
        while self.rows_done < i:  # row i needs the vertical stack of row i - 1
            self._vertical_row(canvas, self.rows_done)
            self.rows_done += 1
        stack = self.stack
        h = None
        for l, layer in enumerate(stack.layers):
            half = layer.kernel // 2
            lo = max(0, j - half)
            src = canvas[:, :, i, lo : j + 1] * 2 - 1 if l == 0 else \
                self.h_in[l][:, :, i, lo : j + 1]  # (B, in, <= k/2 + 1)
            src = F.pad(src, (half - (j - lo), 0)).flatten(1)
            pre = F.linear(src, self.h_weight[l], layer.h_conv.bias)  # (B, 2p)
            above = self.v_pre[l][:, :, i - 1, j] if i > 0 else torch.zeros_like(pre)  # the down shift
            pre = pre + F.linear(above, self.link_weight[l], layer.link.bias) + self.h_bias[l][:, :, i, j]
            h_new = F.linear(gate(pre), self.out_weight[l], layer.h_out.bias)
            h = h_new if layer.first else self.h_in[l][:, :, i, j] + h_new
            if l + 1 < len(stack.layers):
                self.h_in[l + 1][:, :, i, j] = h
        hidden = F.linear(F.relu(h), self.hidden_weight, stack.hidden.bias)
        raw = F.linear(F.relu(hidden), self.output_weight, stack.output.bias)  # (B, R)
        return raw[:, self.step_raw(c)]
