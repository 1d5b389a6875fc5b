"""Class-conditional GAN with a projection discriminator.

Mirza & Osindero 2014, "Conditional Generative Adversarial Nets"
(arXiv:1411.1784) for the conditional game; Miyato & Koyama 2018, "cGANs with
Projection Discriminator" (arXiv:1802.05637) for the discriminator
D(x, y) = psi(phi(x)) + <embed(y), phi(x)>; the generator is conditioned by
class-conditional batch norm (de Vries et al. 2017, arXiv:1707.00683), as in
Miyato & Koyama. Networks are the data-sized DCGAN ones (Radford et al. 2016,
arXiv:1511.06434).

Why projection rather than an auxiliary classifier (AC-GAN, Odena et al. 2017,
arXiv:1610.09585): the projection discriminator still returns one score per
example, so every loss and penalty of the ``gan`` objective applies unchanged,
and it is the optimal form of D when p(y|x) is log-linear in phi(x) (Miyato &
Koyama). AC-GAN adds a classification loss that rewards the generator
for easily classified samples, which is known to reduce diversity within a
class (as Miyato & Koyama discuss).

Differences from Miyato & Koyama: DCGAN-sized networks instead of ResNets; the
projection uses the flattened convolutional features instead of their global
sum; one discriminator step per generator step by default (``n_critic``; the paper
updates D several times per G update).
Generated examples are conditioned on the labels of the real batch, so the
class frequencies of the fakes follow the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.card import ConditioningSpec, ModelCard, SamplerSpec, TINY_GREY
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.adversarial import check_gan_knobs, ConvDiscriminator, ConvGenerator, DNorm, Prior, Upsample, latent_noise
from genlab.nn.labels import check_label_range
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


@MODELS.register("cgan")
class CGAN(nn.Module):
    card = ModelCard(
        family="adversarial", default_objective="gan", samplers=(SamplerSpec("gan"),),
        evaluators=("sample-quality", "memorization"),  # FID/KID/precision-recall + label accuracy; copies
        # `genlab sample --label K` draws class K; without a label each sample draws a uniform class
        conditioning=ConditioningSpec(class_label="yes", label_optional=True),
        ema_modules=("generator",),  # train.ema_decay averages the generator only
        # Hinge loss as in Miyato & Koyama; DCGAN's Adam settings.
        run_defaults={"optim.lr": 2e-4, "optim.beta1": 0.5, "objective.loss": "hinge"},
        tiny=dict(latent_dim=6, width=4), tiny_data=TINY_GREY,
        decoder="generator",  # generate(z, y) -> images
    )

    @dataclass
    class Config:
        latent_dim: int = bounded(128, ge=1)  # size of z (Miyato & Koyama: 128)
        prior: Prior = "normal"  # p(z)
        width: int = bounded(64, ge=1)  # channels at full resolution; doubled at each smaller one
        upsample: Upsample = "transposed"  # or nearest-conv
        d_norm: DNorm = "spectral"  # spectral norm (Miyato & Koyama) | batch | layer | none
        n_critic: int = bounded(1, ge=1)  # discriminator steps per generator step
        # D's lr = optim.lr x this; > 1 is the two time-scale rule (Heusel et al. 2017)
        d_lr_scale: float = bounded(1.0, gt=0.0)
        init_std: float = bounded(0.02, gt=0.0)  # weights ~ N(0, init_std)

        def validate(self):
            check_gan_knobs(self)

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        if data.num_classes < 2:
            raise InputError("cgan needs a labelled dataset (DataSpec.num_classes >= 2), e.g. --data mnist; "
                             "use dcgan for unlabelled data")
        self.cfg, self.data = cfg, data
        self.num_classes = data.num_classes
        self.generator = ConvGenerator(data, cfg.latent_dim, cfg.width, cfg.upsample,
                                       norm="batch",  # with labels: class-conditional batch norm
                                       num_classes=data.num_classes, std=cfg.init_std)
        self.discriminator = ConvDiscriminator(data, cfg.width, cfg.d_norm, num_classes=data.num_classes,
                                               std=cfg.init_std)

    def phases(self) -> list[Phase]:
        return [Phase("D", ("discriminator",), lr_scale=self.cfg.d_lr_scale),
                Phase("G", ("generator",), every=self.cfg.n_critic)]

    def sample_latent(self, n: int, device=None, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        return latent_noise(self.cfg.prior, n, self.cfg.latent_dim, device, generators)

    def _labels(self, batch: dict) -> torch.Tensor:
        y = batch.get("y")
        if y is None:
            raise InputError("cgan batches need labels under 'y'; the dataset has none")
        return y

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z, y): images (B, C, H, W) in [0, 1] of classes y (B,)."""
        if y is None:
            raise InputError("cgan is class-conditional: give a label per sample")
        return self.generator(z, check_label_range(y, self.num_classes))

    def real_inputs(self, batch: dict) -> tuple[torch.Tensor, ...]:
        return (batch["x"],)

    def fake_inputs(self, batch: dict, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.generator(z, self._labels(batch)),)

    def critic(self, inputs: tuple[torch.Tensor, ...], batch: dict) -> torch.Tensor:
        (x,) = inputs
        return self.discriminator(x, self._labels(batch))
