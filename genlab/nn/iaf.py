"""Inverse autoregressive flow on a posterior sample.

Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016, "Improved Variational
Inference with Inverse Autoregressive Flow" (arXiv:1606.04934). Each step is a
MADE network (Germain et al. 2015, arXiv:1502.03509) that reads z and a context
vector h from the encoder and gives, for every dimension i, a shift m_i and a gate
s_i that depend on z_1..z_{i-1} only; the step is the numerically stable update
of the paper's Eq. (14): sigma = sigmoid(s), z' = sigma * z + (1 - sigma) * m.
Its Jacobian is triangular with diagonal sigma, so log|det| = sum log sigma.
Steps alternate the order of the dimensions (reversed every other step), as in
the paper, so that every dimension can depend on every other after two steps.

Differences from the paper: the MADE networks are dense (the paper's are
convolutional on its spatial latents); a spatial latent is flattened first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


def made_masks(dim: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of a one-hidden-layer MADE in the natural order 0..dim-1.

    Hidden unit k gets degree d_k in 1..dim-1 (cycled) and sees inputs of index < d_k;
    output i sees hidden units with d_k <= i, so output i depends on inputs 0..i-1 only.
    Returns (input -> hidden mask (hidden, dim), hidden -> output mask (dim, hidden)).
    """
    degrees = torch.arange(hidden) % max(dim - 1, 1) + 1  # (hidden,) in 1..dim-1
    inputs = torch.arange(dim)
    first = (inputs[None, :] < degrees[:, None]).float()  # (hidden, dim)
    second = (degrees[None, :] <= inputs[:, None]).float()  # (dim, hidden)
    if dim == 1:  # a single dimension depends on nothing but the context
        second.zero_()
    return first, second


class IAFStep(nn.Module):
    """One autoregressive step z -> sigma * z + (1 - sigma) * m, with (m, s) = MADE(z, h)."""

    def __init__(self, dim: int, hidden: int, context: int, reverse: bool):
        super().__init__()
        first, second = made_masks(dim, hidden)
        self.reverse = reverse
        self.inp = MaskedLinear(dim, hidden, first)
        self.ctx = nn.Linear(context, hidden) if context else None
        self.shift = MaskedLinear(hidden, dim, second)
        self.gate = MaskedLinear(hidden, dim, second)
        # A positive gate bias starts each step near the identity (sigma near 1), as the paper advises.
        nn.init.constant_(self.gate.bias, 2.0)
        nn.init.zeros_(self.gate.weight)

    def forward(self, z: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, D), h (B, context) -> (z' (B, D), log|det dz'/dz| (B,))."""
        u = z.flip(1) if self.reverse else z
        a = self.inp(u)
        if self.ctx is not None:
            a = a + self.ctx(h)
        a = F.elu(a)
        m, s = self.shift(a), self.gate(a)
        sigma = torch.sigmoid(s)
        u = sigma * u + (1 - sigma) * m
        logdet = F.logsigmoid(s).sum(1)
        return (u.flip(1) if self.reverse else u), logdet


class IAF(nn.Module):
    """A chain of ``steps`` IAF steps; (z0, h) -> (z_T, sum of log-determinants)."""

    def __init__(self, dim: int, steps: int, hidden: int, context: int):
        super().__init__()
        self.steps = nn.ModuleList(IAFStep(dim, hidden, context, reverse=bool(i % 2)) for i in range(steps))

    def forward(self, z: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        shape = z.shape
        z = z.flatten(1)
        logdet = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        for step in self.steps:
            z, ld = step(z, h)
            logdet = logdet + ld
        return z.view(shape), logdet
