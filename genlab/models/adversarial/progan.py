"""Progressive growing of GANs.

Karras, Aila, Laine & Lehtinen 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation" (arXiv:1710.10196). Generator and discriminator start at 4x4 and
grow by doubling the side; each new resolution is faded in (its layers weighted by alpha,
the old path's upsampled / downsampled output by 1 - alpha, for real images too) and then
stabilised. The fade-in schedule is ``genlab.nn.progressive.FadeSchedule``, a pure function of
the training step; the model keeps the step it was last trained at as a buffer (saved in
checkpoints), which the ``progressive-gan`` objective sets before every phase, so sampling a
saved run uses the resolution it had reached. Minibatch standard deviation (Sec. 3),
equalized learning rate and pixelwise feature normalisation (Sec. 4) are each a config switch.

Differences from the paper: images whose side is not a power of two are padded (constant,
at the value of black) to the next one reachable from ``start_resolution`` by doubling; 28x28
MNIST is padded by 2 pixels on every side to 32x32 (resolutions 4 -> 8 -> 16 -> 32), and
generated images are cropped back to 28x28 for samples and metrics. Channel widths follow the
released code's rule min(fmap_max, fmap_base / side), with smaller defaults in the CPU presets;
phases are counted in steps (images shown = step x train.batch_size) rather than in images.
While the networks are below the final resolution, generated images are upsampled (nearest)
to it for sampling. Losses (WGAN-GP with the drift term, as in the paper, or non-saturating)
come from the ``gan`` objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.card import ModelCard, SamplerSpec, TINY_GREY
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.adversarial import check_gan_knobs, latent_noise, Prior
from genlab.nn.labels import refuse_label
from genlab.nn.progressive import FadeSchedule, ScaledConv2d, ScaledLinear, minibatch_stddev, pixel_norm
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS

SLOPE = 0.2  # LeakyReLU slope everywhere (paper)


def _act(h: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(h, SLOPE)


def _upsample(h: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return F.interpolate(h, scale_factor=factor, mode="nearest") if factor > 1 else h


class Generator(nn.Module):
    """z (B, latent) -> images (B, C, s, s) at the side s of ``level``, in [-1, 1] (unbounded, linear output)."""

    def __init__(self, channels: list[int], start: int, latent_dim: int, image_channels: int, equalized: bool,
                 norm: bool):
        super().__init__()
        self.norm, self.start = norm, start
        c0 = channels[0]
        # 1x1 -> 4x4 "conv 4x4" as a dense layer; gain sqrt(2)/4 as in the released code.
        self.project = ScaledLinear(latent_dim, c0 * start**2, gain=math.sqrt(2) / 4, equalized=equalized)
        self.first = ScaledConv2d(c0, c0, 3, equalized=equalized)
        self.blocks = nn.ModuleList([nn.Identity()])  # level 0 has no up block
        for c_in, c_out in zip(channels, channels[1:]):
            self.blocks.append(nn.ModuleList([ScaledConv2d(c_in, c_out, 3, equalized=equalized),
                                              ScaledConv2d(c_out, c_out, 3, equalized=equalized)]))
        self.to_rgb = nn.ModuleList([ScaledConv2d(c, image_channels, 1, gain=1.0, equalized=equalized)
                                     for c in channels])

    def _pn(self, h: torch.Tensor) -> torch.Tensor:
        return pixel_norm(h) if self.norm else h

    def forward(self, z: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        h = self.project(self._pn(z)).view(z.shape[0], -1, self.start, self.start)  # (B, C0, 4, 4)
        h = self._pn(_act(h))
        h = self._pn(_act(self.first(h)))
        prev = h
        for lv in range(1, level + 1):
            prev = h
            conv_a, conv_b = self.blocks[lv]
            h = self._pn(_act(conv_a(_upsample(h))))
            h = self._pn(_act(conv_b(h)))
        rgb = self.to_rgb[level](h)
        if level > 0 and alpha < 1:
            # The old path: the previous resolution's image, upsampled (Fig. 2 (b) of the paper).
            rgb = alpha * rgb + (1 - alpha) * _upsample(self.to_rgb[level - 1](prev))
        return rgb


class Discriminator(nn.Module):
    """images (B, C, s, s) in [-1, 1] at the side of ``level`` -> raw scores (B,)."""

    def __init__(self, channels: list[int], start: int, image_channels: int, equalized: bool, mbstd: bool,
                 mbstd_group: int):
        super().__init__()
        self.mbstd, self.mbstd_group = mbstd, mbstd_group
        self.from_rgb = nn.ModuleList([ScaledConv2d(image_channels, c, 1, equalized=equalized) for c in channels])
        self.blocks = nn.ModuleList([nn.Identity()])
        for c_out, c_in in zip(channels, channels[1:]):
            self.blocks.append(nn.ModuleList([ScaledConv2d(c_in, c_in, 3, equalized=equalized),
                                              ScaledConv2d(c_in, c_out, 3, equalized=equalized)]))
        c0 = channels[0]
        self.last_conv = ScaledConv2d(c0 + int(mbstd), c0, 3, equalized=equalized)
        self.last_dense = ScaledLinear(c0 * start**2, c0, equalized=equalized)  # the paper's 4x4 "conv" without padding
        self.head = ScaledLinear(c0, 1, gain=1.0, equalized=equalized)

    def _down(self, h: torch.Tensor, lv: int) -> torch.Tensor:
        conv_a, conv_b = self.blocks[lv]
        return F.avg_pool2d(_act(conv_b(_act(conv_a(h)))), 2)

    def forward(self, x: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        h = _act(self.from_rgb[level](x))
        if level > 0:
            h = self._down(h, level)
            if alpha < 1:
                old = _act(self.from_rgb[level - 1](F.avg_pool2d(x, 2)))
                h = alpha * h + (1 - alpha) * old
            for lv in range(level - 1, 0, -1):
                h = self._down(h, lv)
        if self.mbstd:
            h = minibatch_stddev(h, self.mbstd_group)  # (B, C0 + 1, 4, 4)
        h = _act(self.last_conv(h))
        h = _act(self.last_dense(h.flatten(1)))
        return self.head(h).squeeze(1)  # (B,)


@MODELS.register("progan")
class ProGAN(nn.Module):
    """Progressively grown generator and discriminator; see the module docstring.

    Speaks the ``gan`` objective's protocol (``sample_latent``, ``real_inputs``, ``fake_inputs``,
    ``critic``); the ``progressive-gan`` objective first calls ``set_step``.
    """

    card = ModelCard(
        family="adversarial", default_objective="progressive-gan", samplers=(SamplerSpec("gan"),),
        evaluators=("sample-quality", "memorization"),
        ema_modules=("generator",),  # the paper samples from a moving average of G (decay 0.999)
        # Sec. A.1: Adam lr 0.001, beta1 0, beta2 0.99; WGAN-GP with lambda 10 and drift 0.001; n_critic 1.
        run_defaults={"optim.lr": 1e-3, "optim.beta1": 0.0, "optim.beta2": 0.99,
                      "objective.loss": "wasserstein", "objective.penalty": "wgan-gp",
                      "objective.penalty_weight": 10.0, "objective.drift": 1e-3},
        # One level at 8x8 in the shared tester: there every layer gets a gradient at step 0
        # (growth and fades are tested in tests/test_progan.py).
        tiny=dict(latent_dim=6, fmap_base=32, fmap_max=4, start_resolution=8, fade_steps=1, stable_steps=1),
        tiny_data=TINY_GREY,
        decoder="generator", growing=True,
    )

    @dataclass
    class Config:
        latent_dim: int = bounded(512, ge=1)  # size of z (paper: 512)
        prior: Prior = "normal"  # p(z): normal (paper) or uniform on [-1, 1]
        start_resolution: int = bounded(4, ge=4)  # side of the first stage (paper: 4)
        fade_steps: int = bounded(9375, ge=1)  # steps per fade-in (paper: 600k images = 9375 x 64)
        stable_steps: int = bounded(9375, ge=1)  # steps per stabilization (paper: 600k images)
        fmap_base: int = bounded(8192, ge=1)  # channels at side s: min(fmap_max, fmap_base / s) (released code)
        fmap_max: int = bounded(512, ge=1)
        mbstd: bool = True  # minibatch standard deviation feature in D (Sec. 3)
        mbstd_group: int = bounded(4, ge=0)  # examples per stddev group (0: the whole minibatch)
        equalized_lr: bool = True  # scale weights by He's constant at run time (Sec. 4.1); false: at init
        pixel_norm: bool = True  # pixelwise feature normalisation in G (Sec. 4.2)
        n_critic: int = bounded(1, ge=1)  # D steps per G step (paper: 1)

        def validate(self):
            check_gan_knobs(self)
            if self.start_resolution & (self.start_resolution - 1) or self.start_resolution < 4:
                raise InputError(f"start_resolution must be a power of two >= 4, not {self.start_resolution}")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        self.cfg, self.data = cfg, data
        final = cfg.start_resolution
        while final < max(data.height, data.width):
            final *= 2
        self.final = final
        self.schedule = FadeSchedule(cfg.start_resolution, final, cfg.fade_steps, cfg.stable_steps)
        sides = [cfg.start_resolution * 2**lv for lv in range(self.schedule.levels)]
        channels = [max(1, min(cfg.fmap_max, cfg.fmap_base // s)) for s in sides]
        self.generator = Generator(channels, cfg.start_resolution, cfg.latent_dim, data.channels, cfg.equalized_lr, cfg.pixel_norm)
        self.discriminator = Discriminator(channels, cfg.start_resolution, data.channels, cfg.equalized_lr, cfg.mbstd, cfg.mbstd_group)
        # The step the networks were last trained at (the stage comes from the schedule); int64, not averaged by EMA.
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    def phases(self) -> list[Phase]:
        return [Phase("D", ("discriminator",)), Phase("G", ("generator",), every=self.cfg.n_critic)]

    def set_step(self, step: int) -> None:
        """Put the networks at the stage of training step ``step`` (called by the objective)."""
        self.step.fill_(step)

    def stage(self) -> tuple[int, float]:
        """(level, alpha) of the current step: see FadeSchedule.at."""
        return self.schedule.at(int(self.step))

    def sample_latent(self, n: int, device=None, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        return latent_noise(self.cfg.prior, n, self.cfg.latent_dim, device, generators)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Data (B, C, H, W) in [0, 1] -> (B, C, final, final) in [-1, 1], padded with black (-1)."""
        top, left = (self.final - self.data.height) // 2, (self.final - self.data.width) // 2
        pad = (left, self.final - self.data.width - left, top, self.final - self.data.height - top)
        return F.pad(x * 2 - 1, pad, value=-1.0)

    def real_inputs(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """Real images at the current side, faded between it and half of it like the fakes are."""
        level, alpha = self.stage()
        side = self.schedule.start * 2**level
        x = F.avg_pool2d(self._pad(batch["x"]), self.final // side)  # (B, C, side, side)
        if level > 0 and alpha < 1:
            x = alpha * x + (1 - alpha) * _upsample(F.avg_pool2d(x, 2))
        return (x,)

    def fake_inputs(self, batch: dict, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.generator(z, *self.stage()),)

    def critic(self, inputs: tuple[torch.Tensor, ...], batch: dict) -> torch.Tensor:
        (x,) = inputs
        return self.discriminator(x, *self.stage())

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None, level: int | None = None) -> torch.Tensor:
        """G(z) as images (B, C, H, W) in [0, 1] at the data's size (upsampled to the final side, then cropped).

        Args:
            level: draw at this level with alpha 1 instead of the current stage (for the figure of
                samples at each resolution); None: the stage of the step last trained.
        """
        refuse_label(y, "progan")
        level, alpha = self.stage() if level is None else (level, 1.0)
        g = self.generator(z, level, alpha)
        g = _upsample(g, self.final // g.shape[-1])  # (B, C, final, final)
        top, left = (self.final - self.data.height) // 2, (self.final - self.data.width) // 2
        g = g[:, :, top:top + self.data.height, left:left + self.data.width]
        return ((g + 1) / 2).clamp(0, 1)
