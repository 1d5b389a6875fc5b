"""Vector quantization with an exponential-moving-average codebook (VQ-VAE).

van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning"
(arXiv:1711.00937), Section 3.1 and Appendix A.1 (the EMA codebook update).

An encoder output z_e (one D-vector per grid position) is replaced by its nearest
codebook vector e_k. The gradient skips the non-differentiable lookup: the decoder
reads z_e + sg(e_k - z_e), whose value is e_k and whose gradient w.r.t. z_e is the
identity (the straight-through estimator). The codebook is not learned by gradient
but by the EMA of Appendix A.1, kept as pure functions of a ``CodebookState`` below
(the process apart from the network, so the objective, a test and a user share one
implementation):

    N_k <- decay * N_k + (1 - decay) * n_k           n_k: vectors assigned to code k in the batch
    m_k <- decay * m_k + (1 - decay) * sum_{i: k} z_i
    e_k <- m_k / N~_k,  N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j   (Laplace smoothing)

A code whose N_k falls below a threshold is dead (nothing picks it); it is moved onto
a random encoder output of the batch, a common remedy (e.g. Dhariwal et al. 2020,
Jukebox, arXiv:2005.00341, "random restarts") that the paper does not use.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn


class CodebookState(NamedTuple):
    codebook: torch.Tensor  # (K, D) the code vectors e_k
    count: torch.Tensor  # (K,) EMA of the number of vectors assigned to each code, N_k
    total: torch.Tensor  # (K, D) EMA of the sum of the vectors assigned to each code, m_k


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (squared Euclidean distance) of every row: (N, D), (K, D) -> (N,) int64."""
    dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)[None]  # (N, K)
    return dist.argmin(1)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """The value of z_q with the gradient of z_e: z_e + sg(z_q - z_e)."""
    return z_e + (z_q - z_e).detach()


def ema_update(state: CodebookState, z: torch.Tensor, codes: torch.Tensor, decay: float,
               eps: float = 1e-5) -> CodebookState:
    """One EMA step of the codebook (Appendix A.1) from the batch's vectors z (N, D) and their codes (N,)."""
    K = state.codebook.shape[0]
    onehot = torch.nn.functional.one_hot(codes, K).to(z.dtype)  # (N, K)
    count = decay * state.count + (1 - decay) * onehot.sum(0)
    total = decay * state.total + (1 - decay) * onehot.T @ z
    n = count.sum()
    smoothed = (count + eps) / (n + K * eps) * n  # keeps an unused code's division finite
    return CodebookState(total / smoothed[:, None], count, total)


def reset_dead_codes(state: CodebookState, z: torch.Tensor, threshold: float,
                     generator: torch.Generator | None = None) -> tuple[CodebookState, int]:
    """Move every code with N_k < threshold onto a random row of z (N, D); returns (state, number moved).

    A moved code restarts as if one vector had been assigned to it (N_k = 1, m_k = e_k).
    """
    dead = state.count < threshold
    n_dead = int(dead.sum())
    if n_dead == 0:
        return state, 0
    pick = torch.randint(0, z.shape[0], (n_dead,), generator=generator, device=z.device)
    codebook, count, total = (t.clone() for t in state)
    codebook[dead] = z[pick].to(codebook.dtype)
    count[dead] = 1.0
    total[dead] = codebook[dead]
    return CodebookState(codebook, count, total), n_dead


def codebook_usage(codes: torch.Tensor, K: int) -> tuple[float, float]:
    """(fraction of the K codes used, perplexity exp(H(p)) of the code frequencies p) over ``codes``.

    The perplexity is K when every code is used equally often and 1 when one code takes everything.
    """
    p = torch.bincount(codes.flatten(), minlength=K).double() / codes.numel()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return float((p > 0).sum().item() / K), math.exp(entropy)


class VectorQuantizer(nn.Module):
    """A codebook of K vectors of size D, stored as buffers (no gradient: EMA updates only).

    ``quantize`` is pure; ``commit`` applies one EMA step and the dead-code reset to the buffers
    (called by the objective on training steps, never by ``forward``).
    """

    def __init__(self, codes: int, dim: int):
        super().__init__()
        # Started as if each code had had one vector assigned at its own position (N_k = 1, m_k = e_k),
        # so the first EMA steps neither divide by zero nor need a bias correction.
        codebook = torch.randn(codes, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("count", torch.ones(codes))
        self.register_buffer("total", codebook.clone())

    @property
    def size(self) -> int:
        return self.codebook.shape[0]

    def state(self) -> CodebookState:
        return CodebookState(self.codebook, self.count, self.total)

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_e (B, D, h, w) -> (codes (B, h, w) int64, code vectors (B, D, h, w), no straight-through)."""
        B, D, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)
        codes = nearest_codes(flat.detach(), self.codebook)
        return codes.view(B, h, w), self.lookup(codes.view(B, h, w))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h, w) -> code vectors (B, D, h, w)."""
        return self.codebook[codes].permute(0, 3, 1, 2)

    @torch.no_grad()
    def commit(self, z_e: torch.Tensor, codes: torch.Tensor, decay: float, eps: float,
               dead_threshold: float) -> int:
        """One EMA update from a batch (z_e (B, D, h, w), its codes (B, h, w)); returns the codes reset."""
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, z_e.shape[1]).to(self.codebook.dtype)
        state = ema_update(self.state(), flat, codes.flatten(), decay, eps)
        state, n_reset = reset_dead_codes(state, flat, dead_threshold)
        for buffer, value in zip((self.codebook, self.count, self.total), state):
            buffer.copy_(value)
        return n_reset
