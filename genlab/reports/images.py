"""Image grids and strips written with Pillow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab.errors import InputError


def grid_array(images: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int | None = None) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (rows*H', cols*W', 3) uint8 grid, upscaled for small images."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    if c == 1:
        images = images.expand(n, 3, h, w)
    if scale is None:
        scale = max(1, 64 // max(h, w))  # 8x8 digits -> x8, 28x28 -> x2
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    hh, ww = h * scale + pad, w * scale + pad
    canvas = np.full((ncol * hh + pad, nrow * ww + pad, 3), 255, dtype=np.uint8)
    arr = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        tile = arr[i].repeat(scale, axis=0).repeat(scale, axis=1)
        canvas[pad + r * hh:pad + r * hh + h * scale, pad + col * ww:pad + col * ww + w * scale] = tile
    return canvas


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int | None = None) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"):
        raise InputError(f"{path}: give an image file name ending in .png (or .jpg)")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid_array(images, nrow, scale=scale)).save(path)
    return path


def save_figure(fig, path: str | Path, dpi: int = 110, **savefig_options) -> Path:
    """Write a matplotlib figure (creating its folder) and free it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **savefig_options)
    plt.close(fig)
    return path


def save_panels(fig, axes, used: int, path: str | Path) -> Path:
    """Save a grid of panels: blank the unused ones, put the first panel's legend once below all of them."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07 if handles else 0, 1, 1))  # leave the legend its strip
    return save_figure(fig, path)
