"""Masked convolutions: the layers that make a convolutional network autoregressive.

PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural
Networks", arXiv:1601.06759, Section 3.4) orders the sub-pixels of an image in
raster order, and within a pixel R before G before B. A convolution whose kernel
is zero on every position at or after the centre in that order computes, at each
pixel, a function of the past only.

Two mask types:

* type "A" (first layer, reads the image): at the centre position, output
  colour group g sees input colour groups strictly before g, so a pixel never
  sees its own value;
* type "B" (every later layer, reads features): at the centre, group g also sees
  group g, whose features were already computed from the strict past.

Feature maps of a colour-ordered network are split into one contiguous block of
channels per colour group (``channel_groups``). With one group the masks are the
purely spatial ones.

The mask is a registered buffer multiplied into the weight inside ``forward``
(functional), so the stored parameter is never modified and optimizers, weight
decay and checkpoints see the plain weight.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import InputError

MaskType = Literal["A", "B"]


def channel_groups(n: int, groups: int) -> torch.Tensor:
    """Colour group of each of ``n`` channels: ``groups`` contiguous blocks, as equal as possible.

    Returns:
        int64 tensor (n,) with values 0 .. groups - 1 in increasing order
        (exactly n / groups channels per group when ``groups`` divides ``n``).
    """
    if groups < 1:
        raise InputError(f"groups must be >= 1, got {groups}")
    if n < groups:
        raise InputError(f"{n} channels cannot hold {groups} colour groups; use at least {groups} channels")
    return torch.arange(n) * groups // n


def _as_groups(groups: int | torch.Tensor, n: int) -> torch.Tensor:
    if isinstance(groups, torch.Tensor):
        if groups.shape != (n,):
            raise InputError(f"group ids must have shape ({n},), got {tuple(groups.shape)}")
        return groups.long()
    return channel_groups(n, groups)


def causal_mask(
    out_groups: torch.Tensor,
    in_groups: torch.Tensor,
    kernel_size: tuple[int, int],
    centre: tuple[int, int],
    mask_type: MaskType,
) -> torch.Tensor:
    """A (out, in, kh, kw) 0/1 mask allowing only kernel taps before ``centre`` in raster order.

    Rows above the centre row are open; in the centre row, columns left of the
    centre are open; at the centre itself, output group g sees input group h
    when h < g (type A) or h <= g (type B); everything after is closed.
    """
    if mask_type not in ("A", "B"):
        raise InputError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    kh, kw = kernel_size
    ci, cj = centre
    if not (0 <= ci < kh and 0 <= cj < kw):
        raise InputError(f"centre {centre} lies outside a {kh}x{kw} kernel")
    spatial = torch.zeros(kh, kw)
    spatial[:ci] = 1
    spatial[ci, :cj] = 1
    mask = spatial.expand(len(out_groups), len(in_groups), kh, kw).clone()
    o, i = out_groups.view(-1, 1), in_groups.view(1, -1)
    mask[:, :, ci, cj] = ((i < o) if mask_type == "A" else (i <= o)).float()
    return mask


class MaskedConv2d(nn.Module):
    """Conv2d with a fixed 0/1 weight mask and explicit (left, right, top, bottom) zero padding.

    Args:
        in_channels, out_channels: as for nn.Conv2d.
        mask: (out_channels, in_channels, kh, kw) 0/1 tensor, stored as a buffer.
        padding: zero padding (left, right, top, bottom) applied before the convolution,
            so that asymmetric (causal) windows keep the image size.
        bias: learn an additive bias per output channel.
    """

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor,
                 padding: tuple[int, int, int, int], bias: bool = True):
        super().__init__()
        if mask.shape[:2] != (out_channels, in_channels) or mask.dim() != 4:
            raise InputError(f"mask of shape {tuple(mask.shape)} does not fit a {in_channels}->{out_channels} conv")
        kh, kw = mask.shape[2:]
        self.padding = tuple(int(p) for p in padding)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("mask", mask.float().clone())
        # nn.Conv2d's default initialisation, but with the fan-in counted over the open taps
        # only: a 7x7 type-A kernel sees 24 of 49 positions, and counting closed taps would
        # shrink the initial activations layer after layer.
        fan_in = max(1, int(self.mask.sum(dim=(1, 2, 3)).max().item()))
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def raster(cls, in_channels: int, out_channels: int, kernel_size: int, mask_type: MaskType,
               in_groups: int | torch.Tensor = 1, out_groups: int | torch.Tensor = 1,
               bias: bool = True) -> "MaskedConv2d":
        """A centred k x k PixelCNN convolution (odd k) that keeps the image size."""
        if kernel_size % 2 != 1:
            raise InputError(f"masked kernels must have odd size, got {kernel_size}")
        mask = causal_mask(_as_groups(out_groups, out_channels), _as_groups(in_groups, in_channels),
                           (kernel_size, kernel_size), (kernel_size // 2, kernel_size // 2), mask_type)
        p = kernel_size // 2
        return cls(in_channels, out_channels, mask, (p, p, p, p), bias)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding)
        return F.conv2d(x, self.masked_weight(), self.bias)

    def extra_repr(self) -> str:
        o, i, kh, kw = self.weight.shape
        return f"{i}, {o}, kernel=({kh}, {kw}), padding(l,r,t,b)={self.padding}, open_taps={int(self.mask.sum())}"


def down_shift(x: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """Move a (B, C, H, W) map down by ``rows``, filling the top with zeros: row i then holds row i - rows."""
    return F.pad(x, (0, 0, rows, 0))[:, :, : x.shape[2]]
