"""Variational autoencoder.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes" (arXiv:1312.6114);
Rezende, Mohamed & Wierstra 2014, "Stochastic Backpropagation and Approximate
Inference in Deep Generative Models" (arXiv:1401.4082).

Differences from the papers: convolutional encoder and decoder with residual
blocks (the papers use MLPs); the decoder upsamples then convolves; the pixel
likelihood is a discrete distribution (Bernoulli, discretized logistic or
discretized fixed-variance Gaussian) so the bound is in true nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.nn.conv import ConvDecoder, ConvEncoder, Upsample
from genlab.nn.distributions import LIKELIHOODS, PixelDistribution, make_head
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


@MODELS.register("vae")
class VAE(nn.Module):
    family = "latent"
    default_objective = "elbo"
    sampler = "latent"
    evaluators = ("elbo", "iwae", "reconstruction")
    run_defaults = {"optim.lr": 1e-3}

    @dataclass
    class Config:
        latent_dim: int = 32  # 2 gives manifold plots
        channels: tuple[int, ...] = (32, 64)  # conv widths; each stage halves the image
        blocks: int = 1  # residual blocks per stage
        hidden: int = 512  # dense layer between convolutions and latent
        upsample: Upsample = "nearest-conv"  # or "transposed"
        likelihood: str = "auto"  # auto | bernoulli | logistic | gaussian | categorical
        gaussian_sigma: float = 0.1  # fixed std of the Gaussian likelihood, on the [0, 1] pixel scale
        min_logvar: float = -12.0  # floor on the posterior log-variance, for stability

        def validate(self):
            if self.latent_dim < 1:
                raise ValueError("latent_dim must be >= 1")
            if self.likelihood not in ("auto", *LIKELIHOODS):
                raise ValueError(f"likelihood must be one of auto, {', '.join(LIKELIHOODS)}")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        self.head = make_head(cfg.likelihood, data, gaussian_sigma=cfg.gaussian_sigma)
        self.encoder = ConvEncoder(data, cfg.channels, cfg.blocks, cfg.hidden, 2 * cfg.latent_dim)
        self.decoder = ConvDecoder(data, cfg.latent_dim, cfg.channels, cfg.blocks, cfg.hidden,
                                   data.channels * self.head.params_per_subpixel, cfg.upsample)

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z|x) = N(mu, diag(exp(logvar))); each (B, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp_min(self.cfg.min_logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw likelihood parameters (B, C * params, H, W)."""
        return self.decoder(z)

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.build(raw)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict:
        """One reparameterized pass: z = mu + sigma * eps."""
        mu, logvar = self.encode(x)
        eps = torch.randn_like(mu) if noise is None else noise
        z = mu + torch.exp(0.5 * logvar) * eps
        return {"mu": mu, "logvar": logvar, "z": z, "raw": self.decode(z)}
