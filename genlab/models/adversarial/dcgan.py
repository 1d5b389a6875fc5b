"""Deep convolutional GAN.

Radford, Metz & Chintala 2016, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks" (arXiv:1511.06434), trained as
the two-player game of Goodfellow et al. 2014, "Generative Adversarial Nets"
(arXiv:1406.2661).

Differences from the paper: the networks are sized by the data (the paper has
64x64 images: 4 stages from 4x4; here 28x28 has 2 stages from 7x7, 32x32 has
3 from 4x4, 8x8 has 1 from 4x4) with ``width`` channels at the largest
resolution (the paper's generator has 128); the generator may upsample by
nearest-neighbour + 3x3 convolution instead of transposed convolution; the
discriminator may use layer norm or spectral norm instead of batch norm, which
is needed with gradient penalties. The loss (minimax, non-saturating, LSGAN,
hinge, Wasserstein) and penalties are chosen in the ``gan`` objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.card import ModelCard, SamplerSpec, TINY_GREY
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.adversarial import (check_gan_knobs, ConvDiscriminator, ConvGenerator, DNorm, GNorm, Prior, Upsample,
                                              latent_noise)
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


@MODELS.register("dcgan")
class DCGAN(nn.Module):
    """Generator G(z) and discriminator D(x); see the module docstring.

    The ``gan`` objective talks to every adversarial model through four methods:
    ``sample_latent``, ``real_inputs``, ``fake_inputs`` and ``critic``.
    """

    card = ModelCard(
        family="adversarial", default_objective="gan", samplers=(SamplerSpec("gan"),),
        evaluators=("sample-quality", "memorization"),  # FID/KID/precision-recall; nearest-train copies
        ema_modules=("generator",),  # train.ema_decay averages the generator only (D is never sampled from)
        # Radford et al. 2016: Adam, lr 0.0002, beta1 0.5 (and minibatch 128, the trainer default).
        run_defaults={"optim.lr": 2e-4, "optim.beta1": 0.5},
        tiny=dict(latent_dim=6, width=4), tiny_data=TINY_GREY,
        decoder="generator",  # generate(z, y) -> images
    )

    @dataclass
    class Config:
        latent_dim: int = bounded(100, ge=1)  # size of z (paper: 100)
        prior: Prior = "uniform"  # p(z): uniform on [-1, 1] (paper) or normal
        width: int = bounded(64, ge=1)  # channels at full resolution; doubled at each smaller one
        upsample: Upsample = "transposed"  # paper: transposed ("fractionally-strided") convolution
        g_norm: GNorm = "batch"  # generator normalisation (paper: batch norm)
        d_norm: DNorm = "batch"  # discriminator: batch (paper) | layer | spectral | none; not batch with penalties
        n_critic: int = bounded(1, ge=1)  # discriminator steps per generator step (WGAN-GP: 5)
        # D's lr = optim.lr x this; > 1 is the two time-scale rule (Heusel et al. 2017)
        d_lr_scale: float = bounded(1.0, gt=0.0)
        init_std: float = bounded(0.02, gt=0.0)  # weights ~ N(0, init_std) (paper)

        def validate(self):
            check_gan_knobs(self)

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        self.cfg, self.data = cfg, data
        self.generator = ConvGenerator(data, cfg.latent_dim, cfg.width, cfg.upsample, cfg.g_norm, std=cfg.init_std)
        self.discriminator = ConvDiscriminator(data, cfg.width, cfg.d_norm, std=cfg.init_std)

    def phases(self) -> list[Phase]:
        # D first, then G on every n_critic-th step: n_critic D updates per G update.
        return [Phase("D", ("discriminator",), lr_scale=self.cfg.d_lr_scale),
                Phase("G", ("generator",), every=self.cfg.n_critic)]

    def sample_latent(self, n: int, device=None, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """(n, latent_dim) draws from p(z); per-sample generators for sampling, the global one in training."""
        return latent_noise(self.cfg.prior, n, self.cfg.latent_dim, device, generators)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z): images (B, C, H, W) in [0, 1]."""
        if y is not None:
            raise InputError("dcgan is unconditional: it takes no labels (use cgan for class-conditional samples)")
        return self.generator(z)

    def real_inputs(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """What the discriminator sees of a data example: the image."""
        return (batch["x"],)

    def fake_inputs(self, batch: dict, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What the discriminator sees of a generated example: G(z)."""
        return (self.generator(z),)

    def critic(self, inputs: tuple[torch.Tensor, ...], batch: dict) -> torch.Tensor:
        """Raw discriminator scores (B,) of real_inputs or fake_inputs."""
        (x,) = inputs
        return self.discriminator(x)
