"""Sampling from autoregressive models, one sub-pixel (or pixel) at a time, and image completion.

(The completion figure, `genlab complete` and the report figures are in ``genlab/reports/autoregressive.py``.)

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

import torch

from genlab.card import conditioning
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.labels import class_labels
from genlab.nn.modes import eval_mode
from genlab.registry import register_sampler
from genlab.rng import make_generators
from genlab.sampling.api import sampler_of


class _Naive:
    """Full recomputation at every step."""

    def __init__(self, model, y):
        self.model, self.y = model, y

    def step(self, canvas, i, j, c):
        raw = self.model(canvas, self.y)  # (B, R, H, W)
        return raw[:, self.model.head.step_raw(c), i, j]


def _labels(model, label, n: int, device):
    return class_labels(label, n, conditioning(model).num_classes, device, who=type(model).__name__, required=True)


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
    with eval_mode(model):
        stepper = model.sampling_cache(n, y) if cache else _Naive(model, y)
        fill_pixels(stepper, head, canvas, generators, temperature, range(prefix_rows, until_row))
    return canvas


def fill_pixels(stepper, head, canvas: torch.Tensor, generators: list[torch.Generator], temperature: float,
                rows: range) -> None:
    """Draw the sub-pixels of ``rows`` of ``canvas`` (n, C, H, W) in place, in raster then channel order.

    ``stepper.step(canvas, i, j, c)`` gives the raw outputs (n, R_step) of step c at pixel (i, j);
    row n of the canvas draws only from ``generators[n]``.
    """
    for i in rows:
        for j in range(canvas.shape[3]):
            for c, channels in head.steps():
                raw = stepper.step(canvas, i, j, c)  # (n, R_step)
                canvas[:, channels, i, j] = head.sample_step(raw, generators, temperature).to(canvas.dtype)


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
    # The model's own default sampler: any model whose card declares partial_image completes this way.
    out = sampler_of(model)(model, N * n_completions, gens, device, label=label, cache=cache, prefix=prefix,
                            prefix_rows=rows)
    return out.view(N, n_completions, *images.shape[1:])
