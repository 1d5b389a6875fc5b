"""The largest singular value of a weight by power iteration, for spectral regularization.

Miyato, Kataoka, Koyama & Yoshida 2018, "Spectral Normalization for Generative Adversarial
Networks" (arXiv:1802.05957), Algorithm 1: a weight W of any shape is read as the matrix
(out, everything else); with a vector u kept from the previous step, one iteration

    v <- W^T u / ||W^T u||,   u <- W v / ||W v||,   sigma(W) ~= u^T W v

tracks the top singular value as W changes slowly during training (one iteration per step
suffices then; more are needed from a cold start). sigma is differentiable in W with gradient
u v^T (u, v held fixed), which is what a penalty lambda * sum_layers sigma(W) back-propagates:
the spectral regularization of NVAE (Vahdat & Kautz 2020, arXiv:2007.03898, Section 3.2), which
bounds the Lipschitz constant of the layers instead of renormalizing the weights in ``forward``.
These are pure functions of the weight and u; the caller keeps u (``objectives/regularizers.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A weight (out, in, *kernel) as the matrix (out, in * prod(kernel)) whose spectral norm is regularized."""
    return weight.reshape(weight.shape[0], -1)


def initial_vector(weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random unit u (out,) to start the power iteration of ``weight``."""
    u = torch.randn(weight.shape[0], generator=generator, dtype=torch.float32).to(weight.device, weight.dtype)
    return F.normalize(u, dim=0)


def power_iteration(weight: torch.Tensor, u: torch.Tensor, iterations: int = 1,
                    eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma, new u): the estimate u^T W v of W's largest singular value after ``iterations`` steps from u.

    sigma carries the gradient u v^T with respect to ``weight``; u and v themselves are no part of the graph.
    """
    w = as_matrix(weight)
    with torch.no_grad():
        for _ in range(iterations):
            v = F.normalize(w.T @ u, dim=0, eps=eps)
            u = F.normalize(w @ v, dim=0, eps=eps)
    return u @ (w @ v), u


def conv_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of every convolution inside ``module`` that takes gradients, by their parameter name."""
    return {f"{name}.weight" if name else "weight": m.weight for name, m in module.named_modules()
            if isinstance(m, CONVS) and m.weight.requires_grad}
