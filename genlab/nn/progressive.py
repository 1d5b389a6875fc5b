"""Layers and the fade-in schedule of progressive growing (Karras et al. 2018, arXiv:1710.10196).

* ``FadeSchedule``: which resolution the networks run at and the fade-in weight alpha, as a
  pure function of the training step (Sec. 2 and Fig. 2 of the paper). Nothing about it is
  stored in the networks, so a run resumed from any step (mid-fade included) is exact.
* ``ScaledConv2d`` / ``ScaledLinear``: the equalized learning rate of Sec. 4.1: weights are
  stored as N(0, 1) draws and multiplied by the He constant gain / sqrt(fan_in) in every
  forward pass, so Adam's per-parameter step size is the same for every layer. With
  ``equalized=False`` the same layer draws its weights from N(0, c^2) once at init and applies
  no run-time scale (the ablation: plain He initialisation).
* ``pixel_norm``: pixelwise feature vector normalisation in the generator (Sec. 4.2).
* ``minibatch_stddev``: the minibatch standard deviation feature map of Sec. 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import InputError


@dataclass(frozen=True)
class FadeSchedule:
    """Resolutions start, 2 start, ..., final; each new one is faded in, then trained alone.

    Step 0 begins at ``start`` x ``start``, trained for ``stable_steps``. Every later resolution
    is first faded in for ``fade_steps`` (alpha rises linearly from 0 at the first fade step,
    reaching 1 when the fade ends), then stabilised for ``stable_steps`` at alpha = 1. After the
    last stabilisation the networks stay at the final resolution with alpha = 1. Images shown
    = step x train.batch_size (the paper counts 600k images per phase).
    """

    start: int  # side of the first resolution (paper: 4)
    final: int  # side of the last resolution (a power of two times start)
    fade_steps: int  # steps of each fade-in phase
    stable_steps: int  # steps of each stabilization phase

    def __post_init__(self):
        ratio = self.final // self.start
        if self.start < 1 or self.final % self.start or ratio & (ratio - 1):
            raise InputError(f"progressive growing doubles the side from {self.start} to {self.final}: "
                             "the final side must be start x a power of two")
        if self.fade_steps < 1 or self.stable_steps < 1:
            raise InputError("fade_steps and stable_steps must be >= 1")

    @property
    def levels(self) -> int:
        """How many resolutions (4 -> 8 -> 16 -> 32: 4)."""
        return int(math.log2(self.final // self.start)) + 1

    def at(self, step: int) -> tuple[int, float]:
        """(level, alpha) at ``step``: level 0 is ``start``; alpha is the weight of level's new layers.

        alpha < 1 only while level's layers are faded in; the old path gets 1 - alpha.
        """
        if step < self.stable_steps:
            return 0, 1.0
        cycle = self.fade_steps + self.stable_steps
        grown, into = divmod(step - self.stable_steps, cycle)
        level = grown + 1
        if level >= self.levels:
            return self.levels - 1, 1.0
        return level, min(1.0, into / self.fade_steps)

    def resolution(self, step: int) -> int:
        return self.start * 2 ** self.at(step)[0]

    def length(self) -> int:
        """Steps until the last stabilization phase ends (the paper's full schedule)."""
        return self.levels * self.stable_steps + (self.levels - 1) * self.fade_steps


class _Scaled:
    """The weight scaling shared by the equalized conv and linear layers."""

    def _setup(self, gain: float, equalized: bool) -> None:
        fan_in = self.weight[0].numel()  # in_channels x kernel area, or in_features
        c = gain / math.sqrt(fan_in)
        self.equalized = equalized
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0)
            if not equalized:
                self.weight.mul_(c)  # ablation: He's constant folded into the initial weights
            if self.bias is not None:
                self.bias.zero_()
        # The run-time multiplier: a constant, not a parameter or buffer (it follows from the shape).
        self.scale = c if equalized else 1.0

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.scale


class ScaledConv2d(nn.Conv2d, _Scaled):
    """A conv layer whose N(0, 1) weight is scaled by gain / sqrt(fan_in) at run time (equalized lr)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, gain: float = math.sqrt(2), equalized: bool = True):
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        self._setup(gain, equalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


class ScaledLinear(nn.Linear, _Scaled):
    """A dense layer whose N(0, 1) weight is scaled by gain / sqrt(fan_in) at run time (equalized lr)."""

    def __init__(self, n_in: int, n_out: int, gain: float = math.sqrt(2), equalized: bool = True):
        super().__init__(n_in, n_out)
        self._setup(gain, equalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


def pixel_norm(h: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each pixel's feature vector divided by its root mean square over channels (B, C, ...)."""
    return h * torch.rsqrt(h.pow(2).mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(h: torch.Tensor, group_size: int = 4, eps: float = 1e-8) -> torch.Tensor:
    """Append one feature map: the mean over features and pixels of the per-feature standard deviation.

    The batch (B, C, H, W) is split into B / G groups of G examples (examples i, i + B/G, ...; the
    paper's released code uses groups of 4, the paper text the whole minibatch: group_size=0);
    G is the largest divisor of B not above group_size. The standard deviation is the population
    one (divide by G), then averaged over C, H, W to one number per group, broadcast to a
    (B, 1, H, W) map.

    Returns:
        (B, C + 1, H, W).
    """
    b, c, hh, ww = h.shape
    g = b if group_size <= 0 else min(group_size, b)
    while b % g:
        g -= 1
    y = h.float().reshape(g, b // g, c, hh, ww)  # (G, M, C, H, W): group member x group index
    y = (y - y.mean(dim=0)).pow(2).mean(dim=0).add(eps).sqrt()  # (M, C, H, W)
    y = y.mean(dim=(1, 2, 3)).to(h.dtype)  # (M,)
    y = y.repeat(g).view(b, 1, 1, 1).expand(b, 1, hh, ww)  # example i belongs to group i % M
    return torch.cat([h, y], dim=1)
