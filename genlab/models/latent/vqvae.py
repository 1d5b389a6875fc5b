"""VQ-VAE, first stage: an autoencoder whose code is a grid of discrete tokens.

van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning"
(arXiv:1711.00937), Sections 3.1-3.2 and Appendix A.1.

The encoder maps x (B, C, H, W) to z_e (B, D, H/2^s, W/2^s); each position is replaced
by its nearest vector of a K-vector codebook (``genlab/nn/vq.py``); the decoder maps
the code vectors back to the parameters of a pixel distribution. Gradients pass the
quantizer straight through; the codebook follows an exponential moving average of
the encoder outputs assigned to it (Appendix A.1), applied by the ``vq`` objective on
training steps; dead codes are moved onto encoder outputs. The objective is
-log p(x | z_q) + beta * ||z_e - sg(z_q)||^2 (the codebook term of Eq. 3 is replaced by
the EMA).

The model gives no likelihood by itself: with a uniform prior over the K^(h w) token
grids, -log p(x) <= -log p(x | z_q(x)) + h w log K would be a (loose) bound; the
second stage, an autoregressive prior over the token grid, is not implemented yet.

Differences from the paper: sized for 28x28 images and CPU training (the paper's
image model uses two stride-2 convolutions, 256 channels, two residual blocks and K =
512, D = 64 on 128x128 images); the decoder's output is one of genlab's discrete pixel
likelihoods (for binary or 8-bit data) instead of a mean-squared error; dead-code
resets are an addition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.card import ModelCard
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.conv import ResBlock, check_divisible
from genlab.nn.distributions import LIKELIHOODS, PixelDistribution, make_head
from genlab.nn.labels import refuse_label
from genlab.nn.spec import DataSpec, Phase
from genlab.nn.vq import VectorQuantizer, straight_through
from genlab.registry import MODELS


@MODELS.register("vqvae")
class VQVAE(nn.Module):
    card = ModelCard(
        family="latent", default_objective="vq",
        samplers=(),  # the prior over tokens is a second stage (not yet implemented)
        evaluators=("reconstruction", "codebook"),
        likelihood="none",  # no prior over the tokens in this stage
        encoder="code",  # encode(x) -> the code vectors (B, D, h, w); tokens(x) -> (B, h, w) indices
        decoder="distribution",  # decode(code vectors) -> raw outputs; distribution(raw).mean() is the image
        run_defaults={"optim.lr": 2e-4},  # the paper's Adam learning rate
        tiny=dict(channels=(8,), blocks=1, code_dim=4, codebook_size=16),
    )

    @dataclass
    class Config:
        channels: tuple[int, ...] = bounded((32, 64), ge=1)  # conv widths; each stride-2 stage halves the image
        blocks: int = bounded(2, ge=0)  # residual blocks after the encoder's and before the decoder's convs (paper 2)
        code_dim: int = bounded(16, ge=1)  # D, size of each code vector (paper 64)
        codebook_size: int = bounded(512, ge=2)  # K, number of code vectors (paper 512)
        ema_decay: float = bounded(0.99, ge=0.0, lt=1.0)  # decay of the codebook EMA (paper 0.99)
        ema_eps: float = bounded(1e-5, gt=0.0)  # Laplace smoothing of the EMA counts
        dead_code_threshold: float = bounded(1.0, ge=0.0)  # EMA count (vectors/batch) below which a code is reset
        likelihood: str = "auto"  # auto | bernoulli | logistic | gaussian | categorical (decoder's pixel model)
        gaussian_sigma: float = bounded(0.1, gt=0.0)  # fixed std of the Gaussian likelihood on the [0, 1] scale

        def validate(self):
            if not self.channels:
                raise InputError("channels needs at least one width")
            if self.likelihood not in ("auto", *LIKELIHOODS):
                raise InputError(f"likelihood must be one of auto, {', '.join(LIKELIHOODS)}")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        self.cfg, self.data = cfg, data
        self.grid = check_divisible(data, len(cfg.channels))  # (h, w) of the token grid
        self.head = make_head(cfg.likelihood, data, gaussian_sigma=cfg.gaussian_sigma)
        enc: list[nn.Module] = []
        c_in = data.channels
        for c in cfg.channels:
            enc.extend([nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.SiLU()])
            c_in = c
        enc.extend(ResBlock(c_in) for _ in range(cfg.blocks))
        enc.extend([nn.SiLU(), nn.Conv2d(c_in, cfg.code_dim, 1)])
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim)
        widths = tuple(reversed(cfg.channels))
        dec: list[nn.Module] = [nn.Conv2d(cfg.code_dim, widths[0], 3, padding=1)]
        dec.extend(ResBlock(widths[0]) for _ in range(cfg.blocks))
        for i, c in enumerate(widths):
            c_out = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            dec.extend([nn.SiLU(), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c_out, 3, padding=1)])
        dec.extend([nn.SiLU(), nn.Conv2d(widths[-1], data.channels * self.head.params_per_subpixel, 3, padding=1)])
        self.decoder = nn.Sequential(*dec)

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The token grid of each image: (B, C, H, W) -> (B, h, w) int64 in 0..K-1."""
        return self.quantizer.quantize(self.encoder(x * 2 - 1))[0]

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The quantized code vectors (B, D, h, w) of each image (what the decoder reads)."""
        refuse_label(y, "vqvae")
        return self.quantizer.quantize(self.encoder(x * 2 - 1))[1]

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Code vectors (B, D, h, w) -> raw likelihood parameters (B, C * params, H, W)."""
        refuse_label(y, "vqvae")
        return self.decoder(z)

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (B, h, w) -> raw likelihood parameters."""
        return self.decode(self.quantizer.lookup(tokens))

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.build(raw)

    def forward(self, x: torch.Tensor) -> dict:
        """z_e (encoder output), codes (B, h, w), z_q (code vectors, no gradient), raw (decoded straight-through)."""
        z_e = self.encoder(x * 2 - 1)  # (B, D, h, w)
        codes, z_q = self.quantizer.quantize(z_e)
        return {"z_e": z_e, "codes": codes, "z_q": z_q, "raw": self.decode(straight_through(z_e, z_q))}
