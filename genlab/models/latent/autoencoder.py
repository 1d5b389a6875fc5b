"""Deterministic autoencoder with a bottleneck.

Hinton & Salakhutdinov 2006, "Reducing the Dimensionality of Data with Neural
Networks" (Science 313:504). Here convolutional, trained by the negative
log-likelihood of the input under the decoder's pixel distribution (for the
Gaussian likelihood this is the squared error). It has no prior, so it
reconstructs and interpolates but does not sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.card import ModelCard, SamplerSpec
from genlab.nn.conv import CodecConfig, build_codec
from genlab.nn.distributions import PixelDistribution
from genlab.nn.labels import refuse_label
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


@MODELS.register("autoencoder")
class Autoencoder(nn.Module):
    card = ModelCard(
        family="latent", default_objective="reconstruction",
        samplers=(),  # no prior over codes
        evaluators=("reconstruction",),
        likelihood="none",  # its reconstruction NLL is a proxy, not a likelihood of x
        encoder="code",
        run_defaults={"optim.lr": 1e-3},
        tiny=dict(latent_dim=4, channels=(8,), hidden=16),
        decoder="distribution",  # decode(z) -> raw outputs; distribution(raw).mean() is the image
    )

    @dataclass
    class Config(CodecConfig):
        pass

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        self.head, self.encoder, self.decoder = build_codec(cfg, data, code_dim=cfg.latent_dim)

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        refuse_label(y, "autoencoder")
        return self.encoder(x)  # (B, latent_dim)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        refuse_label(y, "autoencoder")
        return self.decoder(z)

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.build(raw)

    def forward(self, x: torch.Tensor) -> dict:
        z = self.encode(x)
        return {"z": z, "raw": self.decode(z)}
