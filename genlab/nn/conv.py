"""Convolutional encoders and decoders shared by the latent-variable models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.distributions import LIKELIHOODS, make_head
from genlab.nn.spec import DataSpec

Upsample = Literal["nearest-conv", "transposed"]


@dataclass
class CodecConfig:
    """The knobs shared by the convolutional autoencoder and VAE."""

    latent_dim: int = bounded(32, ge=1)  # 2 gives manifold plots
    channels: tuple[int, ...] = bounded((32, 64), ge=1)  # conv widths; each stage halves the image
    blocks: int = bounded(1, ge=0)  # residual blocks per stage
    hidden: int = bounded(512, ge=1)  # dense layer between convolutions and latent
    upsample: Upsample = "nearest-conv"  # or "transposed"
    likelihood: str = "auto"  # auto | bernoulli | logistic | gaussian | categorical
    gaussian_sigma: float = bounded(0.1, gt=0.0)  # fixed std of the Gaussian likelihood, on the [0, 1] pixel scale

    def validate(self):
        if not self.channels:
            raise InputError("channels needs at least one width")
        if self.likelihood not in ("auto", *LIKELIHOODS):
            raise InputError(f"likelihood must be one of auto, {', '.join(LIKELIHOODS)}")


def build_codec(cfg: CodecConfig, data: DataSpec, code_dim: int, label_dim: int = 0):
    """(likelihood head, encoder to ``code_dim`` numbers, decoder from ``cfg.latent_dim``).

    ``label_dim`` > 0: both also read a (B, label_dim) label code (a conditional VAE's one-hot class),
    the encoder beside its flattened features, the decoder beside the latent."""
    head = make_head(cfg.likelihood, data, gaussian_sigma=cfg.gaussian_sigma)
    encoder = ConvEncoder(data, cfg.channels, cfg.blocks, cfg.hidden, code_dim, label_dim)
    decoder = ConvDecoder(data, cfg.latent_dim + label_dim, cfg.channels, cfg.blocks, cfg.hidden,
                          data.channels * head.params_per_subpixel, cfg.upsample)
    return head, encoder, decoder


class ResBlock(nn.Module):
    """act -> conv3x3 -> act -> conv3x3, added to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


def check_divisible(data: DataSpec, stages: int) -> tuple[int, int]:
    """Spatial size after ``stages`` halvings; an error if the image does not divide evenly."""
    factor = 2**stages
    if data.height % factor or data.width % factor:
        raise InputError(
            f"images of {data.height}x{data.width} cannot be halved {stages} times; "
            f"set model.channels to {stages - 1} entries or fewer"
        )
    return data.height // factor, data.width // factor


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> (B, out_dim): strided 4x4 convolutions, residual blocks, two dense layers.

    With ``label_dim`` > 0 the first dense layer also reads a (B, label_dim) label code."""

    def __init__(self, data: DataSpec, channels: tuple[int, ...], blocks: int, hidden: int, out_dim: int,
                 label_dim: int = 0):
        super().__init__()
        h, w = check_divisible(data, len(channels))
        layers: list[nn.Module] = []
        c_in = data.channels
        for c in channels:
            layers.append(nn.Conv2d(c_in, c, 4, stride=2, padding=1))
            layers.extend(ResBlock(c) for _ in range(blocks))
            c_in = c
        self.conv = nn.Sequential(*layers, nn.SiLU())
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w + label_dim, hidden), nn.SiLU(),
                                   nn.Linear(hidden, out_dim))

    def forward(self, x, label_code: torch.Tensor | None = None):
        features = self.conv(x * 2 - 1).flatten(1)  # centre inputs on [-1, 1]
        if label_code is not None:
            features = torch.cat([features, label_code.to(features.dtype)], dim=1)
        return self.dense(features)


class ConvDecoder(nn.Module):
    """z (B, latent) -> raw (B, out_channels, H, W).

    Upsampling is nearest-neighbour then a 3x3 convolution by default, which
    avoids the checkerboard artefacts of transposed convolutions (Odena et al.
    2016, "Deconvolution and Checkerboard Artifacts", distill.pub); the
    transposed convolution is kept as an option for comparison.
    """

    def __init__(self, data: DataSpec, latent: int, channels: tuple[int, ...], blocks: int, hidden: int,
                 out_channels: int, upsample: Upsample = "nearest-conv"):
        super().__init__()
        h, w = check_divisible(data, len(channels))
        widths = tuple(reversed(channels))  # deepest first
        self.start_shape = (widths[0], h, w)
        self.dense = nn.Sequential(nn.Linear(latent, hidden), nn.SiLU(), nn.Linear(hidden, widths[0] * h * w))
        layers: list[nn.Module] = []
        for i, c in enumerate(widths):
            layers.extend(ResBlock(c) for _ in range(blocks))
            c_out = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            layers.append(nn.SiLU())
            if upsample == "transposed":
                layers.append(nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1))
            else:
                layers.extend([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c_out, 3, padding=1)])
        layers.extend([nn.SiLU(), nn.Conv2d(widths[-1], out_channels, 3, padding=1)])
        self.conv = nn.Sequential(*layers)

    def forward(self, z):
        return self.conv(self.dense(z).view(-1, *self.start_shape))
