"""The U-Net of diffusion models (Ho et al. 2020, Appendix B; Nichol & Dhariwal 2021).

A noise-level-conditioned encoder-decoder: a sinusoidal embedding of the time input
(a timestep, possibly fractional, or EDM's c_noise) through a two-layer MLP, optionally
plus a class embedding, is added inside every residual block; self-attention runs at the
low resolutions named in ``attention_resolutions``; skip connections join the halves.
The network knows nothing of the noise process: it maps (x, time, label) to raw outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import InputError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoids of a (B,) float time input -> (B, dim); fractional times are fine."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _norm(channels: int) -> nn.GroupNorm:
    # Groups of >= 4 channels where possible: 32 groups (the papers') would normalize single channels
    # at the small widths of CPU models.
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv -> + embedding -> GroupNorm -> SiLU -> dropout -> conv, plus the skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, c_out))
        self.out_layers = nn.Sequential(_norm(c_out), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class Attention(nn.Module):
    """Multi-head self-attention over the H * W positions, residual."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise InputError(f"attention width {channels} is not divisible by heads={heads}")
        self.heads = heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        # (B, 3, heads, H*W, C/heads), contiguous: strided q/k/v send scaled_dot_product_attention to its generic
        # path on CPU, 3.6x slower per call than the fused kernel (measured at batch 64, 4 heads, 7x7, one thread).
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).contiguous()
        q, k, v = qkv.unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(B, C, H, W))


class _Level(nn.Module):
    """Residual blocks at one resolution, each optionally followed by attention."""

    def __init__(self, widths: list[tuple[int, int]], emb_dim: int, dropout: float, attend: bool, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(a, b, emb_dim, dropout) for a, b in widths)
        self.attn = nn.ModuleList(Attention(b, heads) if attend else nn.Identity() for _, b in widths)


class UNet(nn.Module):
    """(B, in_channels, H, W), time (B,), labels (B,) or None -> (B, out_channels, H, W).

    Args:
        channels: width of the first level; level i has channels * mult[i].
        mult: width multipliers, one per resolution (each level after the first halves H and W).
        blocks: residual blocks per level on the way down (one more on the way up, as in DDPM).
        attention_resolutions: feature-map sizes (the smaller of H, W) that get self-attention.
        num_classes: > 0 adds a class embedding with num_classes + 1 rows; row ``num_classes`` is the
            null token ("no label") that classifier-free guidance trains and samples with.
    """

    def __init__(self, in_channels: int, out_channels: int, size: int, channels: int = 64,
                 mult: tuple[int, ...] = (1, 2, 2), blocks: int = 2, attention_resolutions: tuple[int, ...] = (7,),
                 dropout: float = 0.1, heads: int = 4, num_classes: int = 0):
        super().__init__()
        if size % (2 ** (len(mult) - 1)):
            raise InputError(f"images of size {size} cannot be halved {len(mult) - 1} times: use fewer model.mult levels")
        self.channels, self.num_classes = channels, num_classes
        emb_dim = 4 * channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, c, res = [channels], channels, size
        for i, m in enumerate(mult):
            widths = []
            for _ in range(blocks):
                widths.append((c, channels * m))
                c = channels * m
                skips.append(c)
            self.down.append(_Level(widths, emb_dim, dropout, res in attention_resolutions, heads))
            if i < len(mult) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                res //= 2
        self.mid = _Level([(c, c), (c, c)], emb_dim, dropout, False, heads)
        self.mid_attn = Attention(c, heads)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, m in reversed(list(enumerate(mult))):
            widths = []
            for _ in range(blocks + 1):
                widths.append((c + skips.pop(), channels * m))
                c = channels * m
            self.up.append(_Level(widths, emb_dim, dropout, res in attention_resolutions, heads))
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
                res *= 2
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, time: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(time, self.channels))  # (B, 4c)
        if self.label_emb is not None:
            if y is None:
                raise InputError("this network is class-conditional: pass labels (the null token is num_classes)")
            emb = emb + self.label_emb(y)
        h = self.stem(x)
        hs = [h]
        for i, level in enumerate(self.down):
            for block, attn in zip(level.blocks, level.attn):
                h = attn(block(h, emb))
                hs.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid.blocks[0](h, emb)
        h = self.mid.blocks[1](self.mid_attn(h), emb)
        for i, level in enumerate(self.up):
            for block, attn in zip(level.blocks, level.attn):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(h)
