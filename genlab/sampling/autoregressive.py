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

from pathlib import Path

import torch

from genlab.registry import SAMPLERS
from genlab.sampling.generators import make_generators


class _Naive:
    """Full recomputation at every step."""

    def __init__(self, model, y):
        self.model, self.y = model, y

    def step(self, canvas, i, j, c):
        raw = self.model(canvas, self.y)  # (B, R, H, W)
        return raw[:, self.model.head.step_raw(c), i, j]


def _labels(model, label, n: int, device):
    if label is None:
        if getattr(model, "conditional", False):
            raise ValueError(f"{type(model).__name__} is class-conditional: give a label (--label K)")
        return None
    if not getattr(model, "conditional", False):
        raise ValueError(f"{type(model).__name__} is unconditional: drop the label")
    y = torch.as_tensor(label, device=device).long()
    y = y.expand(n) if y.dim() == 0 else y
    if y.shape != (n,):
        raise ValueError(f"label must be an int or a tensor of {n} labels, got shape {tuple(y.shape)}")
    classes = model.data.num_classes
    if int(y.min()) < 0 or int(y.max()) >= classes:
        raise ValueError(f"labels must be in 0..{classes - 1}")
    return y


@SAMPLERS.register("autoregressive")
@torch.no_grad()
def sample(model, n: int, generators: list[torch.Generator], device, label=None, cache: bool = True,
           prefix: torch.Tensor | None = None, prefix_rows: int = 0) -> torch.Tensor:
    """Draw n images from an autoregressive model.

    Args:
        model: an autoregressive model (``head``, ``data``, optional ``sampling_cache``).
        n: number of images; sample i uses only ``generators[i]``.
        generators: one torch.Generator per sample (``make_generators``).
        device: where to build the canvas (the model's device).
        label: class (int) or (n,) classes, for class-conditional models only.
        cache: use the model's incremental sampling cache when it has one;
            False forces full recomputation at every step (slow; for comparison).
        prefix: (n, C, H, W) images in [0, 1] whose top ``prefix_rows`` rows are kept.
        prefix_rows: rows given by ``prefix``; sampling starts at that row.
    Returns:
        (n, C, H, W) images in [0, 1] (exactly 0/1 for binary data, k/255 for 8-bit).
    """
    if len(generators) != n:
        raise ValueError(f"need one generator per sample: got {len(generators)} for n={n}")
    spec, head = model.data, model.head
    C, H, W = spec.channels, spec.height, spec.width
    if not 0 <= prefix_rows <= H:
        raise ValueError(f"prefix_rows must be in 0..{H}, got {prefix_rows}")
    dtype = next(model.parameters()).dtype
    canvas = torch.zeros(n, C, H, W, device=device, dtype=dtype)
    if prefix_rows:
        if prefix is None or tuple(prefix.shape) != (n, C, H, W):
            raise ValueError(f"prefix_rows={prefix_rows} needs prefix images of shape {(n, C, H, W)}")
        canvas[:, :, :prefix_rows] = prefix[:, :, :prefix_rows].to(device=device, dtype=dtype)
    y = _labels(model, label, n, device)
    was_training = model.training
    model.eval()
    try:
        stepper = model.sampling_cache(n, y) if cache and hasattr(model, "sampling_cache") else _Naive(model, y)
        for i in range(prefix_rows, H):
            for j in range(W):
                for c, channels in head.steps():
                    raw = stepper.step(canvas, i, j, c)  # (n, R_step)
                    canvas[:, channels, i, j] = head.sample_step(raw, generators).to(dtype)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
