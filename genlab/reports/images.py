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


def save_strip(rows: torch.Tensor, path: str | Path) -> Path:
    """(R, S, C, H, W) images in [0, 1] -> one PNG with a row per path."""
    return save_grid(rows.flatten(0, 1), path, nrow=rows.shape[1])


def save_gif(rows: torch.Tensor, path: str | Path, frame_ms: int = 80, bounce: bool = True) -> Path:
    """(R, S, C, H, W) paths -> animated GIF whose frame t shows step t of every path side by side.

    With ``bounce`` the animation plays forward then backward, so it loops without a jump.
    """
    r, s = rows.shape[:2]
    order = list(range(s)) + (list(range(s - 2, 0, -1)) if bounce else [])
    frames = [Image.fromarray(grid_array(rows[:, t], nrow=r)) for t in order]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return path


def subplots(nrows: int = 1, ncols: int = 1, figsize=None, layout=None, **subplot_options):
    """``plt.subplots`` without pyplot: a matplotlib Figure and its axes.

    No backend is chosen (the user's stays as it was) and no figure is kept open; ``save_figure`` writes it.
    """
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import and only figures need it

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **subplot_options)


def save_figure(fig, path: str | Path, dpi: int = 110, **savefig_options) -> Path:
    """Write a matplotlib figure (creating its folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **savefig_options)
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
