"""Pieces shared by the self-supervised encoders: one small conv backbone, heads, a momentum (EMA) teacher
update, per-sample seeded augmentations and the pretext transforms (rotations, jigsaw tiles, masked regions).

Everything random here draws from one generator per image (``genlab.rng``), so an image's views depend
only on its generator, never on the batch it sits in. The pretext transforms are pure functions that
return their labels next to the transformed images, so a test can check the labels directly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import bounded
from genlab.errors import InputError
from genlab.rng import make_generators, rand_per_sample, randn_per_sample


def _conv_bn(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Backbone(nn.Module):
    """The shared small encoder: five 3x3 conv + batch-norm + ReLU layers (two of stride 2), then a global
    average pool. (B, C, H, W) images in [0, 1] -> (B, 4 * width) features; any image size works (tiles too)."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        w = width
        self.net = nn.Sequential(*_conv_bn(channels, w, 1), *_conv_bn(w, 2 * w, 2), *_conv_bn(2 * w, 2 * w, 1),
                                 *_conv_bn(2 * w, 4 * w, 2), *_conv_bn(4 * w, 4 * w, 1))
        self.out_dim = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1).mean((2, 3))  # (B, 4w)


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    """Linear -> BN -> ReLU blocks and a last Linear (the projection heads of SimCLR and MoCo v2)."""
    mods, d = [], in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        d = hidden
    return nn.Sequential(*mods, nn.Linear(d, out_dim))


class PrototypeHead(nn.Module):
    """DINO's head (Caron et al. 2021, Sec. 3.1): an MLP to a bottleneck, l2-normalised, then a linear layer
    onto K prototypes whose weight rows are normalised too (the paper's weight norm with its g fixed to 1)."""

    def __init__(self, in_dim: int, hidden: int, bottleneck: int, prototypes: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Parameter(torch.randn(prototypes, bottleneck) / math.sqrt(bottleneck))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(h), dim=1) @ F.normalize(self.prototypes, dim=1).T  # (B, K) cosines


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that no optimizer steps (a momentum teacher starts as the student)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def momentum_twin(backbone: nn.Module, head: nn.Module) -> nn.ModuleDict:
    """A momentum encoder ("backbone", "head") starting as a copy of the trained one (MoCo's key encoder,
    DINO's teacher); its parameters take no gradient and are moved only by ``momentum_update``."""
    return nn.ModuleDict({"backbone": frozen_copy(backbone), "head": frozen_copy(head)})


@torch.no_grad()
def twin_forward(twin: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) views -> the momentum encoder's (B, D) outputs, without a graph."""
    return twin["head"](twin["backbone"](x))


@torch.no_grad()
def momentum_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- m * teacher + (1 - m) * student for every parameter (MoCo's key encoder, DINO's teacher).

    Buffers (batch-norm running statistics) are not averaged: the teacher keeps its own, from its own
    forward passes, as in both papers' code.
    """
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.lerp_(s.detach(), 1.0 - momentum)


def step_generators(n: int, device="cpu") -> list[torch.Generator]:
    """One generator per image of a training batch, seeded from the global generator (which genlab's loop
    reseeds from (seed, step)), so that a resumed run draws the same views."""
    base = int(torch.randint(0, 2**62, ()).item())
    return make_generators(base, n, device)


@dataclass
class ViewsConfig:
    """The augmentations of the contrastive and distillation objectives (in torch; per-image seeded)."""

    crop_min: float = bounded(0.3, gt=0.0, le=1.0)  # random resized crop: smallest area kept (SimCLR 0.08 on ImageNet)
    local_crop_max: float = bounded(0.4, gt=0.0, le=1.0)  # DINO's local crops: largest area kept
    rotate_degrees: float = bounded(15.0, ge=0.0, le=180.0)  # small affine: rotation up to +- this
    contrast: float = bounded(0.4, ge=0.0, lt=1.0)  # contrast and brightness jitter: factor in 1 +- this
    noise_std: float = bounded(0.05, ge=0.0)  # additive Gaussian pixel noise, [0, 1] scale


def random_view(x: torch.Tensor, generators: list[torch.Generator], cfg: ViewsConfig,
                area: tuple[float, float] | None = None) -> torch.Tensor:
    """One augmented view per image: a random resized crop with aspect ratio in [3/4, 4/3] and a small
    rotation (one affine resampling), contrast / brightness jitter and Gaussian noise, clamped to [0, 1].

    Args:
        x: (B, C, H, W) in [0, 1]; generators: one per image (each call advances them).
        area: (smallest, largest) area fraction of the crop; default (cfg.crop_min, 1).
    """
    B = x.shape[0]
    lo, hi = area if area is not None else (cfg.crop_min, 1.0)
    u = rand_per_sample(generators, (7,), x.device)  # (B, 7): every draw of an image from its own generator
    scale = (lo + (hi - lo) * u[:, 0]).sqrt()
    log_ratio = (u[:, 1] * 2 - 1) * math.log(4 / 3)
    sx = (scale * (log_ratio / 2).exp()).clamp(max=1.0)
    sy = (scale * (-log_ratio / 2).exp()).clamp(max=1.0)
    tx, ty = (u[:, 2] * 2 - 1) * (1 - sx), (u[:, 3] * 2 - 1) * (1 - sy)
    angle = (u[:, 4] * 2 - 1) * math.radians(cfg.rotate_degrees)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([sx * cos, -sy * sin, tx], 1), torch.stack([sx * sin, sy * cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    shape = (B,) + (1,) * (x.dim() - 1)
    contrast = 1 + (u[:, 5] * 2 - 1).reshape(shape) * cfg.contrast
    brightness = (u[:, 6] * 2 - 1).reshape(shape) * cfg.contrast * 0.25
    mean = out.mean((1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + brightness
    if cfg.noise_std > 0:
        out = out + cfg.noise_std * randn_per_sample(generators, tuple(x.shape[1:]), x.device)
    return out.clamp(0, 1)


# ---- pretext tasks: transformed images with their labels ----

def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gidaris et al. 2018: every image turned by 0, 90, 180 and 270 degrees (counter-clockwise).

    Returns:
        ((4B, C, H, W) images, rotation k in [0, 4) first, then image), (4B,) labels k: row k * B + i is
        image i turned k quarter turns (``torch.rot90(x[i], k, (1, 2))``).
    """
    if x.shape[-1] != x.shape[-2]:
        raise InputError("rotation prediction needs square images (a quarter turn changes their shape)")
    B = x.shape[0]
    turned = torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)])
    return turned, torch.arange(4, device=x.device).repeat_interleave(B)


def permutation_set(n: int, tiles: int, seed: int = 0, pool: int = 2000) -> torch.Tensor:
    """A small set of ``n`` tile permutations far apart in Hamming distance (Noroozi & Favaro 2016, Sec. 3.3:
    greedily add the candidate whose smallest distance to the chosen ones is largest); the candidates are
    ``pool`` seeded random permutations instead of all tiles! of them. Row 0 is the identity.

    Returns:
        (n, tiles) int64; row p lists, for each position, which tile goes there.
    """
    g = torch.Generator().manual_seed(seed)
    candidates = torch.stack([torch.randperm(tiles, generator=g) for _ in range(pool)])
    chosen = [torch.arange(tiles)]
    dist = (candidates != chosen[0]).sum(1)  # (pool,) smallest distance to the chosen set
    while len(chosen) < n:
        best = int(dist.argmax())
        if dist[best] == 0:
            raise InputError(f"cannot find {n} distinct permutations of {tiles} tiles")
        chosen.append(candidates[best])
        dist = torch.minimum(dist, (candidates != candidates[best]).sum(1))
    return torch.stack(chosen)


def tiles_of(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, grid * grid, C, t, t): the image's centre crop cut into a grid of t x t tiles,
    in raster order (t = min(H, W) // grid)."""
    B, C, H, W = x.shape
    t = min(H, W) // grid
    if t < 1:
        raise InputError(f"images of {H}x{W} are too small for a {grid}x{grid} jigsaw")
    top, left = (H - grid * t) // 2, (W - grid * t) // 2
    crop = x[:, :, top:top + grid * t, left:left + grid * t]
    return crop.reshape(B, C, grid, t, grid, t).permute(0, 2, 4, 1, 3, 5).reshape(B, grid * grid, C, t, t)


def shuffle_tiles(tiles: torch.Tensor, perms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Position j of image i gets tile perms[labels[i], j]: (B, T, C, t, t) -> (B, T, C, t, t)."""
    order = perms[labels]  # (B, T)
    index = order.reshape(*order.shape, 1, 1, 1).expand_as(tiles)
    return tiles.gather(1, index)


def random_square_masks(shape: tuple[int, ...], size: int, generators: list[torch.Generator],
                        device="cpu") -> torch.Tensor:
    """Context-encoder holes (Pathak et al. 2016, "random block"): one size x size square per image at a
    uniformly drawn position. Returns (B, 1, H, W) floats: 1 inside the hole, 0 elsewhere."""
    B, _, H, W = shape
    if not 1 <= size <= min(H, W):
        raise InputError(f"the masked square ({size}) must fit in the {H}x{W} image")
    u = rand_per_sample(generators, (2,), device)
    top = (u[:, 0] * (H - size + 1)).long().clamp(max=H - size)
    left = (u[:, 1] * (W - size + 1)).long().clamp(max=W - size)
    rows = torch.arange(H, device=device)
    cols = torch.arange(W, device=device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)  # (B, W)
    return (in_rows[:, :, None] & in_cols[:, None, :]).float().unsqueeze(1)
