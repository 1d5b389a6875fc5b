"""Per-pixel surprise: where in an image an autoregressive model finds it unlikely.

For an autoregressive model -log p(x) = sum_ij -log p(x_ij | x_<ij) exactly, so
the map of per-pixel conditional NLLs (summed over colour channels) adds up to
the image's NLL. It shows which strokes or regions a model did not expect, and
is the per-pixel statistic used by likelihood-based outlier detection.
(Its figure, ``save_surprise_figure``, is in ``genlab/reports/autoregressive.py``.)
"""

from __future__ import annotations

import torch

from genlab.card import conditioning
from genlab.nn.labels import batch_labels
from genlab.nn.modes import eval_mode
from genlab.objectives.autoregressive import log_prob_per_subpixel


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
    y = batch_labels(labels, len(x), "this model") if conditional else None
    with eval_mode(model):
        nll = -log_prob_per_subpixel(model, x, y).sum(1)  # (N, H, W)
    return nll[0] if single else nll
