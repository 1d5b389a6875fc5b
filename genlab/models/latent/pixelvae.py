"""PixelVAE: a VAE whose decoder is a small PixelCNN.

Gulrajani, Kumar, Ahmed, Taiga, Visin, Vazquez & Courville 2017, "PixelVAE: A Latent
Variable Model for Natural Images" (arXiv:1611.05013), Section 3 and the MNIST model of
Section 4.1.

The encoder gives a Gaussian posterior q(z|x) over a vector z; the decoder upsamples z
to a feature map of the image's size (dense layer, then nearest-neighbour upsampling
and convolutions, as the VAE's decoder) and a gated PixelCNN with a small receptive
field models p(x | z) = prod_i p(x_i | x_<i, z), the map entering every gated layer
through 1x1 convolutions (location-dependent conditioning of the gated PixelCNN paper,
Eq. 5). The latent is left the global structure, the PixelCNN the local detail; a
larger receptive field (``pixel_layers``, ``first_kernel``) lets the PixelCNN model more
and the latent carry less (a lower rate).

The bound is the usual ELBO with an exact chain-rule distortion:
-log p(x) <= -E_q[log p(x|z)] + KL(q(z|x) || N(0, I)); the ``elbo`` objective and the
``elbo`` / ``iwae`` evaluators serve it unchanged through ``decode(z, x)``.

Differences from the paper: the gated PixelCNN layers of van den Oord et al. 2016
(the paper's MNIST model uses plain masked convolutions with residual connections);
one latent level (the paper's hierarchical ImageNet model is not reproduced); widths
sized for CPU training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from genlab.card import ModelCard, SamplerSpec
from genlab.config import bounded
from genlab.errors import InputError
from genlab.models.autoregressive.heads import AutoregressiveHead, Likelihood
from genlab.nn.conv import ConvDecoder, ConvEncoder
from genlab.nn.distributions import PixelDistribution
from genlab.nn.gated import GatedCache, GatedStack
from genlab.nn.labels import refuse_label
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


@MODELS.register("pixelvae")
class PixelVAE(nn.Module):
    card = ModelCard(
        family="latent", default_objective="elbo", samplers=(SamplerSpec("pixelvae"),),
        evaluators=("elbo", "iwae"),
        likelihood="bound",  # ELBO and IWAE bounds on -log p(x), with an exact autoregressive log p(x|z)
        encoder="posterior",  # encode(x) -> (mean, logvar)
        decoder="autoregressive",  # decode(z, x) -> raw outputs teacher-forced on x
        run_defaults={"optim.lr": 1e-3},
        tiny=dict(latent_dim=3, channels=(8, 16), hidden=32, cond_channels=4, pixel_channels=6, pixel_layers=2,
                  first_kernel=3, head_channels=8),
    )

    @dataclass
    class Config:
        latent_dim: int = bounded(32, ge=1)  # size of z
        channels: tuple[int, ...] = bounded((32, 64), ge=1)  # encoder / upsampler conv widths; each stage halves
        blocks: int = bounded(1, ge=0)  # residual blocks per stage
        hidden: int = bounded(512, ge=1)  # dense layer between convolutions and latent
        cond_channels: int = bounded(16, ge=1)  # channels of the upsampled latent map fed to every gated layer
        pixel_channels: int = bounded(32, ge=1)  # feature maps of the PixelCNN's stacks
        pixel_layers: int = bounded(3, ge=1)  # gated layers: with first_kernel they set the receptive field
        first_kernel: int = bounded(5, ge=1, odd=True)  # window width of the first gated layer (odd)
        kernel: int = bounded(3, ge=1, odd=True)  # window width of the later gated layers (odd)
        head_channels: int = bounded(64, ge=1)  # ReLU + 1x1 output layer width
        likelihood: Likelihood = "auto"  # auto: bernoulli for binary data, categorical for 8-bit
        mixture_components: int = bounded(10, ge=1)  # logistic-mixture only
        min_logvar: float = bounded(-12.0)  # floor on the posterior log-variance, for stability
        # Run folders written when an always-0 iaf_steps knob stood here still load (config.py).
        RETIRED: ClassVar[dict] = {"iaf_steps": 0}

        def validate(self):
            if not self.channels:
                raise InputError("channels needs at least one width")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        self.cfg, self.data = cfg, data
        self.head = AutoregressiveHead.create(cfg.likelihood, data, cfg.mixture_components)
        self.encoder = ConvEncoder(data, cfg.channels, cfg.blocks, cfg.hidden, 2 * cfg.latent_dim)
        self.upsample = ConvDecoder(data, cfg.latent_dim, cfg.channels, cfg.blocks, cfg.hidden, cfg.cond_channels)
        self.pixelcnn = GatedStack(data.channels, cfg.pixel_channels, cfg.pixel_layers, cfg.first_kernel, cfg.kernel,
                                   cfg.head_channels, self.head.raw_channels, self.head.raw_groups(),
                                   self.head.colour_groups, cond_channels=cfg.cond_channels)

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def posterior_params(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's output (B, 2 * latent_dim): everything q(z|x) needs."""
        refuse_label(y, "pixelvae")
        return self.encoder(x)

    flow_posterior = False  # a Gaussian posterior: analytic KL (the VAE evaluators read this)

    def reparameterize(self, params: torch.Tensor, eps: torch.Tensor) -> dict:
        """"mu", "logvar" (B, latent_dim) of q(z|x) and the sample "z" = mu + sigma * eps."""
        mu, logvar = params.chunk(2, dim=1)
        logvar = logvar.clamp_min(self.cfg.min_logvar)
        return {"mu": mu, "logvar": logvar, "z": mu + torch.exp(0.5 * logvar) * eps}

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z|x) = N(mu, diag(exp(logvar))); each (B, latent_dim)."""
        out = self.reparameterize(self.posterior_params(x, y), 0.0)
        return out["mu"], out["logvar"]

    def condition(self, z: torch.Tensor) -> torch.Tensor:
        """The upsampled latent: (B, latent_dim) -> (B, cond_channels, H, W)."""
        return self.upsample(z)

    def decode(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs (B, R, H, W) of p(x_i | x_<i, z), teacher-forced on x (B, C, H, W)."""
        return self.pixelcnn(x, cond=self.condition(z))

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.distribution(raw)

    def sampling_cache(self, z: torch.Tensor) -> GatedCache:
        """Incremental pixel-by-pixel evaluation of the decoder for latents z (B, latent_dim)."""
        return self.pixelcnn.cache(z.shape[0], self.data.height, self.data.width, self.head.step_raw,
                                   cond=self.condition(z))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, y: torch.Tensor | None = None) -> dict:
        """One reparameterized pass: z = mu + sigma * eps, then the teacher-forced decoder."""
        params = self.posterior_params(x, y)
        out = self.reparameterize(params, torch.randn_like(params[:, :self.cfg.latent_dim]) if noise is None else noise)
        out["raw"] = self.decode(out["z"], x)
        return out
