"""Inception-v3 as the FID reference graph computes it, built from genlab's own code.

Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
https://arxiv.org/abs/1512.00567; FID (Heusel et al. 2017, https://arxiv.org/abs/1706.08500)
reads its 2048-d pool3 features. The weights are the TensorFlow 2015-12-05 graph's,
converted to a PyTorch state dict (``pt_inception-2015-12-05-6726825d.pth``, 566 tensors,
1008 classes). Only tensors are ever read from that file; this module is the network.

What differs from the ImageNet paper network, as in the FID graph:
* input: uint8 levels resized to 299x299 by TensorFlow 1's bilinear resize (source
  coordinate = destination coordinate * in/out, no half-pixel shift), then (x - 128) / 128;
* the average pools inside blocks 5b-5d, 6b-6e and 7b exclude the zero padding from
  their mean; block 7c pools its last branch with a max pool instead of an average;
* no auxiliary classifier (it does not exist in the converted weights).

Parameter names follow the converted file (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, ...) so that it loads with ``strict=True``.
Checked once against torch-fidelity 0.4.0's port (not a dependency): with the same
random state dict (BatchNorm statistics randomized too) and uint8 inputs of 28x28,
32x32 and 64x48, the pool3 features agree to 1.7e-7 of their largest value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 299
POOL3_DIM = 2048
NUM_CLASSES = 1008  # the 2015 graph's 1000 ImageNet classes + 8 unused outputs


class ConvBN(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3, as in the TF graph), ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x):
    # The TF graph averages over the valid pixels only at the borders.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _max3(x):
    return F.max_pool2d(x, 3, stride=1, padding=1)


class MixedA(nn.Module):
    """35x35 block (5b-5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1; out 224 + pool_features."""

    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 64, 1)
        self.branch5x5_1 = ConvBN(c_in, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(c_in, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class ReduceB(nn.Module):
    """35x35 -> 17x17 (6a): strided 3x3 | 1x1-3x3-strided 3x3 | max pool; out 480 + c_in."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class MixedC(nn.Module):
    """17x17 block (6b-6e) with factorized 7x7 convolutions (1x7 then 7x1); out 768."""

    def __init__(self, c_in: int, c7: int):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(c_in, 192, 1)
        self.branch7x7_1 = ConvBN(c_in, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x):
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool(_avg3(x)),
        ], 1)


class ReduceD(nn.Module):
    """17x17 -> 8x8 (7a): 1x1-strided 3x3 | 1x1-1x7-7x1-strided 3x3 | max pool; out 512 + c_in."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(c_in, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class MixedE(nn.Module):
    """8x8 block (7b, 7c) whose 3x3 convolutions split into parallel 1x3 and 3x1; out 2048."""

    def __init__(self, c_in: int, pool):
        super().__init__()
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        self.pool = pool
        self.branch1x1 = ConvBN(c_in, 320, 1)
        self.branch3x3_1 = ConvBN(c_in, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, **row)
        self.branch3x3_2b = ConvBN(384, 384, **col)
        self.branch3x3dbl_1 = ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, **row)
        self.branch3x3dbl_3b = ConvBN(384, 384, **col)
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
            self.branch_pool(self.pool(x)),
        ], 1)


class FIDInceptionV3(nn.Module):
    """uint8-level float images (N, 3, H, W) -> pool3 features (N, 2048) and logits (N, 1008)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = MixedA(192, 32)
        self.Mixed_5c = MixedA(256, 64)
        self.Mixed_5d = MixedA(288, 64)
        self.Mixed_6a = ReduceB(288)
        self.Mixed_6b = MixedC(768, 128)
        self.Mixed_6c = MixedC(768, 160)
        self.Mixed_6d = MixedC(768, 160)
        self.Mixed_6e = MixedC(768, 192)
        self.Mixed_7a = ReduceD(768)
        self.Mixed_7b = MixedE(1280, _avg3)
        self.Mixed_7c = MixedE(2048, _max3)
        self.fc = nn.Linear(POOL3_DIM, NUM_CLASSES)

    def pool3(self, levels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) floats in [0, 255] -> (N, 2048)."""
        x = (resize_bilinear_tf1(levels, INPUT_SIZE) - 128.0) / 128.0  # (N, 3, 299, 299)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (N, 192, 71, 71)
        x = F.max_pool2d(x, 3, stride=2)  # (N, 192, 35, 35)
        for block in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{block}")(x)  # ends (N, 2048, 8, 8)
        return x.mean(dim=(2, 3))

    def forward(self, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.pool3(levels)
        return feats, self.fc(feats)


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1's ``resize_bilinear(align_corners=False)`` of (N, C, H, W) to (N, C, size, size).

    Output pixel i reads input coordinate i * in / out (not the half-pixel centres of
    ``F.interpolate``), interpolating linearly between its floor and the next pixel,
    clamped at the last row/column. The FID statistics in papers were computed this way.
    """
    for dim in (2, 3):
        n_in = x.shape[dim]
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = (src - lo).to(x.dtype).to(x.device)
        shape = [1, 1, 1, 1]
        shape[dim] = size
        frac = frac.view(shape)
        lo, hi = lo.to(x.device), hi.to(x.device)
        x = x.index_select(dim, lo) * (1 - frac) + x.index_select(dim, hi) * frac
    return x
