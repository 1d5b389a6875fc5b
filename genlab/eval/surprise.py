"""Per-pixel surprise: where in an image an autoregressive model finds it unlikely.

For an autoregressive model -log p(x) = sum_ij -log p(x_ij | x_<ij) exactly, so
the map of per-pixel conditional NLLs (summed over colour channels) adds up to
the image's NLL. It shows which strokes or regions a model did not expect, and
is the per-pixel statistic used by likelihood-based outlier detection.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.card import conditioning
from genlab.errors import InputError
from genlab.objectives.autoregressive import log_prob_per_subpixel
from genlab.reports.images import save_figure  # noqa: E402


@torch.no_grad()
def pixel_nll(model, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel NLL in nats, summed over channels.

    Args:
        images: (N, C, H, W) or (C, H, W) in [0, 1] on the model's device.
        labels: (N,) classes for class-conditional models.
    Returns:
        (N, H, W), or (H, W) for a single image; the sum over pixels is -log p(image).
    """
    single = images.dim() == 3
    x = images.unsqueeze(0) if single else images
    conditional = conditioning(model).class_conditional
    if conditional and labels is None:
        raise InputError("this model is class-conditional: pass labels")
    y = labels if conditional else None
    was_training = model.training
    model.eval()
    try:
        nll = -log_prob_per_subpixel(model, x, y).sum(1)  # (N, H, W)
    finally:
        model.train(was_training)
    return nll[0] if single else nll


def save_surprise_figure(image: torch.Tensor, nll_map: torch.Tensor, path: str | Path,
                         title: str | None = None, map_label: str = "-log p per pixel") -> Path:
    """Image beside its per-pixel NLL heat map (nats), with what the map is and its total in the caption."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image, nll_map = image.detach().float().cpu(), nll_map.detach().float().cpu()
    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
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
