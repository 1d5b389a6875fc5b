"""Diffusion model: one U-Net, with DDPM, improved-DDPM and EDM parameterizations as configuration.

Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239): linear
schedule, eps prediction, L_simple, fixed variance.
Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (arXiv:2102.09672):
cosine schedule, learned variance Sigma = exp(v log beta_t + (1 - v) log beta~_t), L_hybrid.
Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models" (arXiv:2206.00364): preconditioning c_skip, c_out, c_in, c_noise with sigma_data
(``parameterization=edm``).
Ho & Salimans 2022, "Classifier-Free Diffusion Guidance" (arXiv:2207.12598): with
``conditional=true`` the label embedding has a null token (row num_classes) that the objective
substitutes with probability p_uncond, so one network is both the conditional and the
unconditional model.

Differences from the papers: widths sized for CPU (the papers use 128 channels and 35-100 M
weights); GroupNorm of 8 groups instead of 32; the EDM network reads c_noise through the same
sinusoidal embedding as the discrete one. The noise process is not here: it is
``genlab/nn/diffusion.py``, shared by the objective, the samplers and the likelihood bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genlab.card import ConditioningSpec, FeatureSpec, ModelCard, SamplerSpec
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.diffusion import Schedule, ScheduleKind, Target, Variance, edm_scalings, sigma_to_t, x0_from_abar
from genlab.nn.spec import DataSpec, Phase
from genlab.nn.unet import UNet
from genlab.registry import MODELS


@MODELS.register("diffusion")
class Diffusion(nn.Module):
    card = ModelCard(
        family="diffusion", default_objective="diffusion",
        # DDIM first: `genlab sample` and the sample-quality evaluator then take 50 steps, not T.
        samplers=(SamplerSpec("ddim"), SamplerSpec("ddpm"), SamplerSpec("euler"), SamplerSpec("heun"),
                  SamplerSpec("dpmpp-2m")),
        evaluators=("diffusion-bound", "diffusion-vdm", "diffusion-ode", "sample-quality"),
        likelihood="bound",  # the discrete-time variational bound
        # model.conditional=true; ddim and ddpm complete given top rows (by replacement)
        conditioning=ConditioningSpec(class_label="config", partial_image=True),
        # `genlab probe`: the U-Net's middle block while denoising at a fixed small noise level (no label)
        features=FeatureSpec("denoiser-hidden", "net.mid.blocks.1", sigma=0.1),
        run_defaults={"optim.lr": 2e-4, "optim.grad_clip": 1.0, "optim.warmup_steps": 100},
        tiny=dict(channels=8, mult=(1, 2), blocks=1, attention_resolutions=(4,), heads=2, timesteps=20,
                  conditional=True),
    )

    @dataclass
    class Config:
        channels: int = bounded(64, ge=1)  # width of the first U-Net level (papers: 128)
        mult: tuple[int, ...] = bounded((1, 2, 2), ge=1)  # width multiplier per resolution; each level halves H, W
        blocks: int = bounded(2, ge=1)  # residual blocks per level (papers: 2-3)
        attention_resolutions: tuple[int, ...] = bounded((7,), ge=1)  # feature-map sizes with self-attention
        heads: int = bounded(4, ge=1)  # attention heads
        dropout: float = bounded(0.1, ge=0.0, lt=1.0)  # in every residual block (DDPM: 0.1 on CIFAR-10)
        parameterization: Literal["ddpm", "edm"] = "ddpm"  # discrete timesteps, or EDM's preconditioned denoiser
        schedule: ScheduleKind = "linear"  # linear (DDPM) or cosine (iDDPM); edm: the schedule of its discrete samplers
        timesteps: int = bounded(1000, ge=2)  # T
        target: Target = "eps"  # what the network predicts (ddpm): eps, x0, or v
        variance: Variance = "small"  # reverse variance (ddpm): beta~_t, beta_t, or learned (iDDPM; needs L_hybrid)
        sigma_data: float = bounded(0.5, gt=0.0)  # EDM: standard deviation of the data on [-1, 1]
        conditional: bool = False  # class embedding + null token (classifier-free guidance)

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        if cfg.conditional and data.num_classes < 1:
            raise InputError("model.conditional=true needs a labelled dataset (this one has no classes)")
        if cfg.parameterization == "edm" and cfg.variance == "learned":
            raise InputError("model.variance=learned is a ddpm parameterization: use model.variance=small with edm")
        learned = cfg.variance == "learned"
        self.net = UNet(data.channels, data.channels * (2 if learned else 1), min(data.height, data.width),
                        cfg.channels, tuple(cfg.mult), cfg.blocks, tuple(cfg.attention_resolutions), cfg.dropout,
                        cfg.heads, data.num_classes if cfg.conditional else 0)
        # float64 constants, not weights: a buffer outside the checkpoint, so that it moves with the model
        # (.to / .cuda) and a training step indexes it where its timesteps live (`schedule` below).
        self.register_buffer("betas", Schedule.create(cfg.schedule, cfg.timesteps).betas, persistent=False)
        self._schedule: tuple[torch.Tensor, Schedule] | None = None

    @property
    def schedule(self) -> Schedule:
        """The noise schedule on the model's device, built once per placement of the ``betas`` buffer.
        (Held on the CPU, each step copied the constants to the GPU, and that copy made the host wait for
        the device: the one wait per step the lent H200 counted in the DDPM step.)"""
        if self._schedule is None or self._schedule[0] is not self.betas:
            betas = self.betas
            if betas.dtype != torch.float64:  # a cast of the whole model must not round the constants
                betas = Schedule.create(self.cfg.schedule, self.cfg.timesteps).betas.to(betas.device)
            self._schedule = (self.betas, Schedule(betas))
        return self._schedule[1]

    @property
    def null_label(self) -> int:
        """The label index meaning "no label" (the unconditional branch of guidance)."""
        return self.data.num_classes

    def label_sensitive(self) -> bool:
        """Whether the label can change the output: some class embeds unlike the null token."""
        emb = self.net.label_emb
        return emb is not None and not bool((emb.weight[:-1] == emb.weight[-1]).all())

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def forward(self, x: torch.Tensor, time: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Raw network outputs (B, C or 2C, H, W) for inputs on [-1, 1] scale and (B,) time inputs."""
        return self.net(x, time, y if self.cfg.conditional else None)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor | None = None,
                time: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The x_0 estimate D(x; sigma) of a noisy x = x_0 + sigma * eps (variance-exploding scale).

        Args:
            x: (B, C, H, W); sigma: (B,) noise levels.
            time: (B,) the network's timesteps when the caller knows them exactly (discrete samplers);
                None reads them off the schedule (fractional, linear in log sigma).
        Returns:
            (x0 estimate, the learned-variance channels in [-1, 1] or None).
        """
        shape = (-1,) + (1,) * (x.dim() - 1)
        if self.cfg.parameterization == "edm":
            c_skip, c_out, c_in, c_noise = edm_scalings(sigma.reshape(shape), self.cfg.sigma_data)
            raw = self(c_in * x, c_noise.flatten(), y)
            return c_skip * x + c_out * raw, None
        abar = 1 / (1 + sigma.reshape(shape) ** 2)
        time = sigma_to_t(self.schedule, sigma) if time is None else time
        raw = self(x * abar.sqrt(), time, y)
        out, frac = raw.chunk(2, dim=1) if self.cfg.variance == "learned" else (raw, None)
        return x0_from_abar(abar, x * abar.sqrt(), out, self.cfg.target), frac
