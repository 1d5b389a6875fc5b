"""Sampling from autoregressive models, one sub-pixel (or pixel) at a time, and image completion.

The sampler walks the pixels in raster order. At each step it asks the model for
the raw outputs of the current pixel given the canvas so far, and draws that
pixel's next channel (or all its channels, for a per-pixel head such as the
logistic mixture) with each sample's own generator. Two ways to get the raw
outputs:

* naive: run the whole network on the canvas and read one pixel (H * W * steps
  full forward passes);
* cached: the model's ``sampling_cache`` recomputes only what the new pixel can
  change (key/value cache of the transformer, row cache of the gated PixelCNN).

Both give the same numbers up to floating-point summation order, so for the same
generators they draw the same images (tests check this in float64).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.card import conditioning
from genlab.config import bounded
from genlab.errors import InputError
from genlab.registry import FIGURE_SETS, register_sampler
from genlab.sampling.generators import make_generators
from genlab.reports.images import save_figure  # noqa: E402


class _Naive:
    """Full recomputation at every step."""

    def __init__(self, model, y):
        self.model, self.y = model, y

    def step(self, canvas, i, j, c):
        raw = self.model(canvas, self.y)  # (B, R, H, W)
        return raw[:, self.model.head.step_raw(c), i, j]


def _labels(model, label, n: int, device):
    classes = conditioning(model).num_classes
    if label is None:
        if classes:
            raise InputError(f"{type(model).__name__} is class-conditional: give a label (--label K)")
        return None
    if not classes:
        raise InputError(f"{type(model).__name__} is unconditional: drop the label")
    y = torch.as_tensor(label, device=device).long()
    y = y.expand(n) if y.dim() == 0 else y
    if y.shape != (n,):
        raise InputError(f"label must be an int or a tensor of {n} labels, got shape {tuple(y.shape)}")
    if int(y.min()) < 0 or int(y.max()) >= classes:
        raise InputError(f"labels must be in 0..{classes - 1}")
    return y


@dataclass
class AutoregressiveSamplerOptions:
    temperature: float = bounded(1.0, gt=0)  # divides every conditional's logits (mixtures: also scales the logistics)
    cache: bool = True  # the model's incremental cache; false recomputes the whole image per step (slow)


@register_sampler("autoregressive", AutoregressiveSamplerOptions)
@torch.no_grad()
def sample(model, n: int, generators: list[torch.Generator], device, label=None, temperature: float = 1.0,
           cache: bool = True, prefix: torch.Tensor | None = None, prefix_rows: int = 0, until_row: int | None = None) -> torch.Tensor:
    """Draw n images from an autoregressive model.

    Args:
        model: an autoregressive model (``head``, ``data``, ``sampling_cache``).
        n: number of images; sample i uses only ``generators[i]``.
        generators: one torch.Generator per sample (``make_generators``).
        device: where to build the canvas (the model's device).
        label: class (int) or (n,) classes, for class-conditional models only.
        temperature: < 1 sharpens each conditional, > 1 flattens it; 1 is the model itself.
        cache: use the model's incremental sampling cache when it has one;
            False forces full recomputation at every step (slow; for comparison).
        prefix: (n, C, H, W) images in [0, 1] whose top ``prefix_rows`` rows are kept.
        prefix_rows: rows given by ``prefix``; sampling starts at that row.
        until_row: stop before this row (None: the whole image); later rows stay 0.
            Rows drawn are identical to those of a full draw (for timing, partial completion).
    Returns:
        (n, C, H, W) images in [0, 1] (exactly 0/1 for binary data, k/255 for 8-bit).
    """
    if len(generators) != n:
        raise InputError(f"need one generator per sample: got {len(generators)} for n={n}")
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    spec, head = model.data, model.head
    C, H, W = spec.channels, spec.height, spec.width
    until_row = H if until_row is None else until_row
    if not 0 <= prefix_rows <= until_row <= H:
        raise InputError(f"need 0 <= prefix_rows <= until_row <= {H}, got {prefix_rows} and {until_row}")
    dtype = next(model.parameters()).dtype
    canvas = torch.zeros(n, C, H, W, device=device, dtype=dtype)
    if prefix_rows:
        if prefix is None or tuple(prefix.shape) != (n, C, H, W):
            raise InputError(f"prefix_rows={prefix_rows} needs prefix images of shape {(n, C, H, W)}")
        canvas[:, :, :prefix_rows] = prefix[:, :, :prefix_rows].to(device=device, dtype=dtype)
    y = _labels(model, label, n, device)
    was_training = model.training
    model.eval()
    try:
        stepper = model.sampling_cache(n, y) if cache else _Naive(model, y)
        for i in range(prefix_rows, until_row):
            for j in range(W):
                for c, channels in head.steps():
                    raw = stepper.step(canvas, i, j, c)  # (n, R_step)
                    canvas[:, channels, i, j] = head.sample_step(raw, generators, temperature).to(dtype)
    finally:
        model.train(was_training)
    return canvas


@torch.no_grad()
def complete(model, images: torch.Tensor, rows: int, n_completions: int = 4, seed: int = 0, label=None,
             cache: bool = True) -> torch.Tensor:
    """Keep the top ``rows`` rows of each image and sample the rest, several times.

    Args:
        images: (N, C, H, W) in [0, 1] on the model's device.
        rows: number of top rows kept.
        n_completions: completions per image; completion k of image m uses generator
            m * n_completions + k of the stream seeded ``seed``.
        label: class(es) for conditional models: an int, or (N,) per image.
    Returns:
        (N, n_completions, C, H, W) completions in [0, 1].
    """
    N = images.shape[0]
    device = images.device
    prefix = images.repeat_interleave(n_completions, dim=0)
    if label is not None and torch.as_tensor(label).dim() == 1:
        label = torch.as_tensor(label, device=device).repeat_interleave(n_completions)
    gens = make_generators(seed, N * n_completions, device)
    out = sample(model, N * n_completions, gens, device, label=label, cache=cache, prefix=prefix, prefix_rows=rows)
    return out.view(N, n_completions, *images.shape[1:])


def save_completion_figure(images: torch.Tensor, completions: torch.Tensor, rows: int, path: str | Path,
                           title: str | None = None) -> Path:
    """One line per image: original, what the model was shown (lower rows greyed out), completions.

    Args:
        images: (N, C, H, W) originals in [0, 1].
        completions: (N, K, C, H, W) from ``complete``.
        rows: rows that were kept.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, completions = images.detach().float().cpu(), completions.detach().float().cpu()
    N, K = completions.shape[:2]
    masked = images.clone()
    masked[:, :, rows:] = 0.5
    fig, axes = plt.subplots(N, K + 2, figsize=(1.3 * (K + 2), 1.3 * N + (0.4 if title else 0)), squeeze=False)
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


def _pick(test, n_images: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n_images random images of a split (seeded; the binarized-MNIST test file is sorted by digit)."""
    if not 1 <= n_images <= len(test):
        raise InputError(f"n_images must be in 1..{len(test)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(test), generator=g)[:n_images]
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
    from genlab.train.distributed import resolve_device
    from genlab.train.run import load_run

    dev = resolve_device(device)
    run = load_run(run_dir, dev, use_ema=use_ema, data_root=data_root)
    if not conditioning(run.model).partial_image:
        raise InputError(f"{run.cfg.model_name} is not autoregressive: completion needs pixelcnn, "
                         "gated-pixelcnn or pixel-transformer")
    rows = run.spec.height // 2 if rows is None else rows
    images, labels = _pick(run.dataset(split), n_images, seed, dev)
    label = labels if conditioning(run.model).class_conditional else None
    completions = complete(run.model, images, rows, n_completions, seed, label=label)
    title = f"{run.cfg.model_name} on {run.cfg.data.name}/{split}, step {run.step}: top {rows} rows kept"
    return save_completion_figure(images, completions, rows, out, title)


@FIGURE_SETS.register("autoregressive")
def report_figures(run, out_dir: Path, device) -> list[tuple[str, str]]:
    """`genlab report` figures of an autoregressive run: samples, completions, per-pixel surprise."""
    from genlab.eval.surprise import pixel_nll, save_surprise_figure
    from genlab.reports.images import save_grid

    model, figs = run.model, []
    out_dir = Path(out_dir)
    conditional = conditioning(model).class_conditional
    label = 0 if conditional else None
    samples = sample(model, 16, make_generators(0, 16, device), device, label=label)
    save_grid(samples, out_dir / "samples.png", nrow=8)
    figs.append(("Samples (seed 0" + (", class 0)" if label is not None else ")"), "samples.png"))
    test = run.dataset("test")
    images, labels = _pick(test, 4, 0, device)
    cond = labels if conditional else None
    rows = run.spec.height // 2
    save_completion_figure(images, complete(model, images, rows, 4, 0, label=cond), rows, out_dir / "completions.png")
    figs.append((f"Completions of random test images from their top {rows} rows", "completions.png"))
    nll = pixel_nll(model, images[:1], None if cond is None else cond[:1])
    save_surprise_figure(images[0], nll[0], out_dir / "surprise.png")
    figs.append(("Per-pixel negative log-likelihood of a test image (sums to its NLL)", "surprise.png"))
    return figs
