"""Autoregressive models' figures: image completion (`genlab complete`), per-pixel surprise maps, report figures.

The sampler and the per-pixel NLL live in ``genlab/sampling/autoregressive.py`` and ``genlab/eval/surprise.py``;
this module only draws and writes what they return.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch

from genlab.card import conditioning
from genlab.errors import InputError
from genlab.eval.surprise import pixel_nll
from genlab.registry import FIGURE_SETS
from genlab.reports.images import save_figure, save_grid, subplots
from genlab.rng import make_generators, random_subset
from genlab.sampling.autoregressive import complete, sample
from genlab.train.distributed import resolve_device
from genlab.train.run import load_run


def save_completion_figure(images: torch.Tensor, completions: torch.Tensor, rows: int, path: str | Path,
                           title: str | None = None) -> Path:
    """One line per image: original, what the model was shown (lower rows greyed out), completions.

    Args:
        images: (N, C, H, W) originals in [0, 1].
        completions: (N, K, C, H, W) from ``complete``.
        rows: rows that were kept.
    """
    images, completions = images.detach().float().cpu(), completions.detach().float().cpu()
    N, K = completions.shape[:2]
    masked = images.clone()
    masked[:, :, rows:] = 0.5
    fig, axes = subplots(N, K + 2, figsize=(1.3 * (K + 2), 1.3 * N + (0.4 if title else 0)), squeeze=False)
    columns = ["original", f"top {rows} rows"] + [f"sample {k + 1}" for k in range(K)]
    for m in range(N):
        panels = [images[m], masked[m]] + [completions[m, k] for k in range(K)]
        for ax, img, name in zip(axes[m], panels, columns):
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.axhline(rows - 0.5, color="red", linewidth=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if m == 0:
                ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def pick_images(test, n_images: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n_images random images of a split (seeded; the binarized-MNIST test file is sorted by digit)."""
    if not 1 <= n_images <= len(test):
        raise InputError(f"n_images must be in 1..{len(test)}")
    idx = random_subset(len(test), n_images, seed)
    batch = test.batch(idx.to(test.images.device), torch.Generator(device=test.images.device).manual_seed(seed))
    labels = batch.get("y")
    return batch["x"].to(device), None if labels is None else labels.to(device)


def complete_run(run_dir: str | Path, out: str | Path, n_images: int = 4, rows: int | None = None,
                 n_completions: int = 4, seed: int = 0, split: str = "test", device: str = "auto",
                 use_ema: bool = True, data_root: str | None = None) -> Path:
    """`genlab complete`: completions of random test images of a trained run, as one figure.

    Args:
        rows: top rows kept (default: half the image).
        Other arguments as for ``genlab sample``; class-conditional models get each image's own label.
    """
    dev = resolve_device(device)
    run = load_run(run_dir, dev, use_ema=use_ema, data_root=data_root)
    if not conditioning(run.model).partial_image:
        raise InputError(f"{run.cfg.model_name} cannot complete images: completion needs pixelcnn, "
                         "gated-pixelcnn, pixel-transformer or diffusion")
    rows = run.spec.height // 2 if rows is None else rows
    images, labels = pick_images(run.dataset(split), n_images, seed, dev)
    label = labels if conditioning(run.model).class_conditional else None
    completions = complete(run.model, images, rows, n_completions, seed, label=label)
    title = f"{run.cfg.model_name} on {run.cfg.data.name}/{split}, step {run.step}: top {rows} rows kept"
    return save_completion_figure(images, completions, rows, out, title)


@FIGURE_SETS.register("autoregressive")
def report_figures(run, out_dir: Path, device) -> list[tuple[str, str]]:
    """`genlab report` figures of an autoregressive run: samples, completions, per-pixel surprise."""
    model, figs = run.model, []
    out_dir = Path(out_dir)
    conditional = conditioning(model).class_conditional
    label = 0 if conditional else None
    samples = sample(model, 16, make_generators(0, 16, device), device, label=label)
    save_grid(samples, out_dir / "samples.png", nrow=8)
    figs.append(("Samples (seed 0" + (", class 0)" if label is not None else ")"), "samples.png"))
    test = run.dataset("test")
    images, labels = pick_images(test, 4, 0, device)
    cond = labels if conditional else None
    rows = run.spec.height // 2
    save_completion_figure(images, complete(model, images, rows, 4, 0, label=cond), rows, out_dir / "completions.png")
    figs.append((f"Completions of random test images from their top {rows} rows", "completions.png"))
    nll = pixel_nll(model, images[:1], None if cond is None else cond[:1])
    save_surprise_figure(images[0], nll[0], out_dir / "surprise.png")
    figs.append(("Per-pixel negative log-likelihood of a test image (sums to its NLL)", "surprise.png"))
    return figs


def save_surprise_figure(image: torch.Tensor, nll_map: torch.Tensor, path: str | Path,
                         title: str | None = None, map_label: str = "-log p per pixel") -> Path:
    """Image beside its per-pixel NLL heat map (nats), with what the map is and its total in the caption."""
    image, nll_map = image.detach().float().cpu(), nll_map.detach().float().cpu()
    fig, (a, b) = subplots(1, 2, figsize=(6, 3))
    if image.shape[0] == 1:
        a.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        a.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    a.set_title("image", fontsize=9)
    im = b.imshow(nll_map.numpy(), cmap="magma", interpolation="nearest")
    b.set_title(textwrap.fill(f"{map_label} (total {nll_map.sum().item():.1f} nats)", 52), fontsize=8)
    fig.colorbar(im, ax=b, fraction=0.046, pad=0.04, label="nats")
    for ax in (a, b):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(textwrap.fill(title, 100), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
