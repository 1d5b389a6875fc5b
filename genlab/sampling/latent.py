"""Samplers and latent-space walks for latent-variable models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from genlab.card import conditioning
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.labels import class_labels
from genlab.nn.modes import eval_mode
from genlab.registry import register_sampler
from genlab.rng import randn_per_sample
from genlab.sampling.autoregressive import fill_pixels


@dataclass
class LatentSamplerOptions:
    output: Literal["mean", "sample"] = "mean"  # the decoder's mean image, or a draw of its pixels
    temperature: float = bounded(1.0, gt=0)  # z ~ N(0, temperature^2 I): < 1 trades diversity for typical images


@register_sampler("latent", LatentSamplerOptions)
@torch.no_grad()
def sample_latent(model, n: int, generators: list[torch.Generator], device, label=None,
                  output: Literal["mean", "sample"] = "mean", temperature: float = 1.0, **_) -> torch.Tensor:
    """z ~ N(0, temperature^2 I) -> decoder -> mean image (default) or a pixel sample.

    A conditional VAE decodes p(x | z, y) with the given label(s) (required); an unconditional
    model refuses a label. Sample i uses only generators[i]: first its latent, then (for
    output="sample") its pixels.
    """
    y = class_labels(label, n, conditioning(model).num_classes, device, who=type(model).__name__, required=True)
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    z = randn_per_sample(generators, (model.cfg.latent_dim,), device) * temperature
    dist = model.distribution(model.decode(z, y=y))
    return dist.sample(generators) if output == "sample" else dist.mean()


@dataclass
class PixelVAESamplerOptions:
    pixel_samples_per_latent: int = bounded(1, ge=1)  # consecutive samples sharing one z: same global shape, own pixels
    temperature: float = bounded(1.0, gt=0)  # z ~ N(0, temperature^2 I)
    pixel_temperature: float = bounded(1.0, gt=0)  # divides the logits of every pixel conditional


@register_sampler("pixelvae", PixelVAESamplerOptions)
@torch.no_grad()
def sample_pixelvae(model, n: int, generators: list[torch.Generator], device, label=None,
                    pixel_samples_per_latent: int = 1, temperature: float = 1.0, pixel_temperature: float = 1.0,
                    **_) -> torch.Tensor:
    """z ~ N(0, temperature^2 I), then x pixel by pixel from the PixelCNN decoder p(x | z).

    Sample i draws its latent, then its pixels, from generators[i] alone. With
    ``pixel_samples_per_latent`` m > 1, samples m*g .. m*g + m - 1 of this call share the
    latent of sample m*g (their own latents are drawn and discarded, so the stream of
    every generator is the same for every m); keep the batch size a multiple of m so that
    groups are not split across calls.
    """
    class_labels(label, n, 0, device, who=type(model).__name__)  # raises for a label: p(x) alone
    if pixel_samples_per_latent < 1 or temperature <= 0 or pixel_temperature <= 0:
        raise InputError("need pixel_samples_per_latent >= 1, temperature > 0 and pixel_temperature > 0")
    z = randn_per_sample(generators, (model.cfg.latent_dim,), device) * temperature
    z = z[torch.arange(n, device=z.device) // pixel_samples_per_latent * pixel_samples_per_latent]
    spec = model.data
    canvas = torch.zeros(n, spec.channels, spec.height, spec.width, device=device,
                         dtype=next(model.parameters()).dtype)
    with eval_mode(model):
        fill_pixels(model.sampling_cache(z.to(canvas.dtype)), model.head, canvas, generators, pixel_temperature,
                    range(spec.height))
    return canvas


@dataclass
class VQPriorSamplerOptions:
    output: Literal["mean", "sample"] = "mean"  # the decoder's mean image, or a draw of its pixels
    temperature: float = bounded(1.0, gt=0)  # divides the prior's logits at every token: < 1 for typical grids


@register_sampler("vq-prior", VQPriorSamplerOptions)
@torch.no_grad()
def sample_vq_prior(model, n: int, generators: list[torch.Generator], device, label=None,
                    output: Literal["mean", "sample"] = "mean", temperature: float = 1.0, **_) -> torch.Tensor:
    """A VQ-VAE's samples: a token grid from the autoregressive prior (cached, one token per step), then
    the first stage's decoder -> mean image (default) or a pixel sample.

    Sample i uses only generators[i]: first its tokens in raster order, then (output="sample") its pixels.
    """
    class_labels(label, n, 0, device, who=type(model).__name__)  # raises for a label: p(x) alone
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    h, w = model.grid
    canvas = torch.zeros(n, 1, h, w, device=device, dtype=next(model.parameters()).dtype)
    with eval_mode(model):
        fill_pixels(model.token_cache(n), model.prior.head, canvas, generators, temperature, range(h))
        dist = model.distribution(model.decode_tokens(model.image_tokens(canvas)))
    return dist.sample(generators) if output == "sample" else dist.mean()


@torch.no_grad()
def latent_means(model, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The code of each image: the posterior mean for a VAE (of q(z | x, y) for a conditional one, which
    needs the labels y), the code for an autoencoder."""
    code = model.encode(x, y=y)
    return code[0] if model.card.encoder == "posterior" else code  # posterior: (mean, logvar)


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder mean at the posterior mean (given the labels y for a conditional VAE): the reconstruction."""
    z = latent_means(model, x, y)
    return model.distribution(model.decode(z, y=y)).mean()


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation, which keeps Gaussian latents at a typical norm (White 2016)."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return (1 - t)[:, None] * a + t[:, None] * b
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b


@torch.no_grad()
def interpolate(model, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10,
                mode: Literal["linear", "slerp"] = "linear") -> torch.Tensor:
    """Decoded images along the path between the codes of two images; (steps, C, H, W)."""
    code = latent_means(model, torch.stack([x_a, x_b]))
    z = code.flatten(1)  # a code grid (VQ-VAE's (D, h, w)) is interpolated as one vector
    t = torch.linspace(0, 1, steps, device=z.device)
    path = slerp(z[0], z[1], t) if mode == "slerp" else (1 - t)[:, None] * z[0] + t[:, None] * z[1]
    return model.distribution(model.decode(path.view(steps, *code.shape[1:]))).mean()


MANIFOLD_QUANTILES = (0.05, 0.95)  # the Gaussian quantiles the manifold grid spans on each axis


def manifold_code(u: float, v: float, rows: int, cols: int) -> tuple[float, float]:
    """The code (z1, z2) under a point of a ``manifold_grid(model, rows, cols)`` image, for clicking through it.

    Args:
        u, v: the point's position across the image from its left and top edges, as fractions in [0, 1].
    Returns:
        the code that tile centres hold exactly, interpolated between them (in quantile, so within the grid's
        quantile range a point between two tiles decodes to an image between theirs), clamped to (0.01, 0.99).
    """
    lo, hi = MANIFOLD_QUANTILES

    def quantile(frac: float, n: int) -> float:
        index = frac * n - 0.5  # tile k's centre is at (k + 0.5) / n
        return min(max(lo + (hi - lo) * index / max(n - 1, 1), 0.01), 0.99)

    normal = torch.distributions.Normal(0.0, 1.0)
    z1 = normal.icdf(torch.tensor(quantile(u, cols))).item()
    z2 = normal.icdf(torch.tensor(1.0 - quantile(v, rows))).item()  # row 0 (top) holds the highest z2
    return z1, z2


@torch.no_grad()
def manifold_grid(model, rows: int = 20, cols: int = 20, device="cpu") -> torch.Tensor:
    """For a 2-D latent: decoded means over a grid of Gaussian quantiles (Kingma & Welling 2014, Fig. 4)."""
    if model.cfg.latent_dim != 2:
        raise InputError("the manifold grid needs model.latent_dim=2")
    normal = torch.distributions.Normal(0.0, 1.0)
    ys = normal.icdf(torch.linspace(*MANIFOLD_QUANTILES, rows))
    xs = normal.icdf(torch.linspace(*MANIFOLD_QUANTILES, cols))
    grid = torch.stack(torch.meshgrid(ys.flip(0), xs, indexing="ij"), dim=-1).reshape(-1, 2)
    z = grid[:, [1, 0]].to(device)  # column index -> z1, row index -> z2
    return model.distribution(model.decode(z)).mean()
