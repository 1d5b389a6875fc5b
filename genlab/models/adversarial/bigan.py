"""Bidirectional GAN / adversarially learned inference.

Donahue, Kraehenbuehl & Darrell 2017, "Adversarial Feature Learning"
(BiGAN, arXiv:1605.09782); Dumoulin et al. 2017, "Adversarially Learned
Inference" (ALI, arXiv:1606.00704). An encoder E(x) and a generator G(z) are
trained against one discriminator D(x, z) that tells data pairs (x, E(x)) from
generated pairs (G(z), z); at the optimum E and G invert each other (Donahue
et al., Theorem 2).

The encoder is deterministic (BiGAN) or a reparameterised Gaussian q(z|x)
(ALI). Differences from the papers: DCGAN-sized convolutional networks
(Radford et al. 2016, arXiv:1511.06434) for every data size, and a standard
normal prior by default where BiGAN used U[-1, 1]^50 on MNIST. With the
uniform prior (``prior=uniform``) the deterministic encoder ends in tanh so
E(x) lies in the prior's support (D could otherwise tell pairs apart by
range), and tanh is what fails: in our MNIST run (bigan-mnist preset with
prior=uniform, README results) the discriminator separated the pairs within
300 steps and the encoder settled in tanh's flat tails, one code for every
image (``code_std`` 0.00014 at step 1,000 against the prior's 0.577), where
its gradient is gone. With the normal prior the code is the linear layer's
output and the same run stays balanced.

Evaluation: ``bigan-probe`` (genlab/eval/adversarial.py) reports the
reconstruction error of G(E(x)) and the accuracy of a linear classifier on
E(x), the feature-learning test of Donahue et al.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genlab.card import FeatureSpec, ModelCard, SamplerSpec, TINY_GREY
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.adversarial import (check_gan_knobs, ConvFeatures, ConvGenerator, DNorm, GNorm, Prior, Upsample,
                                              init_layer, latent_noise)
from genlab.nn.labels import refuse_label
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


class JointDiscriminator(nn.Module):
    """(x (B, C, H, W) in [0, 1], z (B, latent)) -> raw scores (B,).

    Separate x and z pathways, then a joint MLP on their concatenated features,
    the structure of ALI's discriminator (Dumoulin et al. 2017), with dropout in
    every layer.
    """

    def __init__(self, data: DataSpec, latent_dim: int, width: int, hidden: int, norm: DNorm,
                 dropout: float, std: float):
        super().__init__()
        sn = norm == "spectral"
        self.x_path = ConvFeatures(data, width, norm, dropout=dropout, std=std)
        self.z_path = nn.Sequential(
            init_layer(nn.Linear(latent_dim, hidden), std, sn), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            init_layer(nn.Linear(hidden, hidden), std, sn), nn.LeakyReLU(0.2), nn.Dropout(dropout),
        )
        self.joint = nn.Sequential(
            init_layer(nn.Linear(self.x_path.out_dim + hidden, hidden), std, sn), nn.LeakyReLU(0.2),
            nn.Dropout(dropout), init_layer(nn.Linear(hidden, 1), std, sn),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.x_path(x), self.z_path(z)], dim=1)).squeeze(1)


@MODELS.register("bigan")
class BiGAN(nn.Module):
    card = ModelCard(
        family="adversarial", default_objective="gan", samplers=(SamplerSpec("gan"),),
        evaluators=("bigan-probe", "sample-quality", "memorization"),
        encoder="code",  # encode(x) -> z (the mean of a Gaussian encoder)
        features=FeatureSpec("code"),  # `genlab probe` reads E(x)
        ema_modules=("generator", "encoder"),  # train.ema_decay averages what is used after training
        # Donahue et al. 2017: Adam, lr 2e-4, beta1 0.5 (as DCGAN).
        run_defaults={"optim.lr": 2e-4, "optim.beta1": 0.5},
        tiny=dict(latent_dim=6, width=4, d_hidden=16), tiny_data=TINY_GREY,
        decoder="generator",  # generate(z, y) -> images
    )

    @dataclass
    class Config:
        latent_dim: int = bounded(50, ge=1)  # size of z (BiGAN on MNIST: 50)
        prior: Prior = "normal"  # ALI's N(0, I); BiGAN's U[-1, 1] (tanh encoder) saturates, see the docstring
        encoder: Literal["deterministic", "gaussian"] = "deterministic"  # BiGAN | ALI's q(z|x)
        width: int = bounded(64, ge=1)  # conv channels at full resolution (generator, encoder, discriminator)
        upsample: Upsample = "transposed"  # or nearest-conv
        g_norm: GNorm = "batch"  # generator and encoder normalisation
        d_norm: DNorm = "batch"  # discriminator: batch | layer | spectral | none; not batch with penalties
        d_hidden: int = bounded(512, ge=1)  # width of the discriminator's z pathway and joint MLP
        d_dropout: float = bounded(0.2, ge=0.0, lt=1.0)  # dropout in every discriminator layer
        min_logvar: float = bounded(-10.0)  # floor on the Gaussian encoder's log-variance
        n_critic: int = bounded(1, ge=1)  # discriminator steps per encoder/generator step
        # D's lr = optim.lr x this; > 1 is the two time-scale rule (Heusel et al. 2017)
        d_lr_scale: float = bounded(1.0, gt=0.0)
        init_std: float = bounded(0.02, gt=0.0)  # weights ~ N(0, init_std)

        def validate(self):
            if self.encoder == "gaussian" and self.prior != "normal":
                raise InputError("encoder=gaussian (ALI) matches a normal prior: set prior=normal")
            check_gan_knobs(self)

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        self.cfg, self.data = cfg, data
        self.generator = ConvGenerator(data, cfg.latent_dim, cfg.width, cfg.upsample, cfg.g_norm, std=cfg.init_std)
        enc_norm = "batch" if cfg.g_norm == "batch" else "none"
        features = ConvFeatures(data, cfg.width, enc_norm, std=cfg.init_std)
        out = cfg.latent_dim * (2 if cfg.encoder == "gaussian" else 1)
        self.encoder = nn.Sequential(features, init_layer(nn.Linear(features.out_dim, out), cfg.init_std))
        self.discriminator = JointDiscriminator(data, cfg.latent_dim, cfg.width, cfg.d_hidden, cfg.d_norm,
                                                cfg.d_dropout, cfg.init_std)

    def phases(self) -> list[Phase]:
        # The encoder plays on the generator's side: both are updated in phase G.
        return [Phase("D", ("discriminator",), lr_scale=self.cfg.d_lr_scale),
                Phase("G", ("generator", "encoder"), every=self.cfg.n_critic)]

    def sample_latent(self, n: int, device=None, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        return latent_noise(self.cfg.prior, n, self.cfg.latent_dim, device, generators)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z): images (B, C, H, W) in [0, 1]."""
        refuse_label(y, "bigan")
        return self.generator(z)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None, sample: bool = False) -> torch.Tensor:
        """E(x): (B, latent_dim). The Gaussian encoder gives its mean, or a reparameterised draw."""
        refuse_label(y, "bigan")
        h = self.encoder(x)
        if self.cfg.encoder == "gaussian":
            mu, logvar = h.chunk(2, dim=1)
            if not sample:
                return mu
            std = torch.exp(0.5 * logvar.clamp_min(self.cfg.min_logvar))
            return mu + std * torch.randn_like(mu)
        return torch.tanh(h) if self.cfg.prior == "uniform" else h

    def real_inputs(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """A data pair (x, E(x)); ALI's encoder draws z ~ q(z|x)."""
        x = batch["x"]
        return (x, self.encode(x, sample=True))

    def fake_inputs(self, batch: dict, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A generated pair (G(z), z)."""
        return (self.generator(z), z)

    def critic(self, inputs: tuple[torch.Tensor, ...], batch: dict) -> torch.Tensor:
        x, z = inputs
        return self.discriminator(x, z)
