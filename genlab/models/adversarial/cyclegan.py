"""CycleGAN: unpaired image-to-image translation with cycle consistency.

Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks" (arXiv:1703.10593). Two generators
G: A -> B and F: B -> A (ResNet blocks with instance norm, the network of
Johnson et al. 2016, arXiv:1603.08155) and two PatchGAN discriminators D_A, D_B
(Isola et al. 2017, arXiv:1611.07004) are trained with the least-squares
adversarial loss, the cycle loss ||F(G(a)) - a||_1 + ||G(F(b)) - b||_1 weighted by
lambda_cyc = 10 and the identity loss; each discriminator sees fakes through a
history of 50 generated images (the ``cyclegan`` objective, genlab/objectives/translation.py).

Differences from the paper, all for 28x28 (MNIST-sized) images rather than 256x256:
* the generator downsamples ``n_down`` = 2 times (28 -> 7) and has ``n_blocks`` = 6
  residual blocks at ``width`` = 32 channels (paper: 2 downsamplings, 9 blocks, 64 channels);
* the PatchGAN has ``d_layers`` = 1 stride-2 layer (16x16 receptive field on 28x28, a
  quarter of the image's area) where the paper's 70x70 PatchGAN has 3;
* images are in [0, 1] with a sigmoid output (the paper's [-1, 1] with tanh is the same map
  up to the affine change of units);
* the ``D`` phase translates its batch again with the generators just updated by ``G``
  (the paper's code reuses the images of the ``G`` update; genlab's loop runs phases in order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genlab.card import ConditioningSpec, ModelCard, SamplerSpec, TINY_GREY
from genlab.config import bounded
from genlab.errors import InputError
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS

Direction = Literal["a2b", "b2a"]


def _conv_norm_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    """x + [pad, conv3, IN, ReLU, pad, conv3, IN](x), reflection padding as in Johnson et al."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), *_conv_norm_relu(nn.Conv2d(channels, channels, 3), channels),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Image (B, C_in, H, W) in [0, 1] -> (B, C_out, H, W) in [0, 1]: c7s1, n_down x d, blocks, n_down x u, c7s1."""

    def __init__(self, channels: int, width: int, n_down: int, n_blocks: int, out_channels: int | None = None):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), *_conv_norm_relu(nn.Conv2d(channels, width, 7), width)]
        ch = width
        for _ in range(n_down):
            layers += _conv_norm_relu(nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), 2 * ch)
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(n_blocks)]
        for _ in range(n_down):
            up = nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1)
            layers += _conv_norm_relu(up, ch // 2)
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels or channels, 7), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """Image (B, C, H, W) -> raw scores of overlapping patches (B, 1, h, w), one per receptive field."""

    def __init__(self, channels: int, width: int, n_layers: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        ch = width
        for i in range(1, n_layers + 1):  # the last of these has stride 1, as in the paper's C512 layer
            out = width * 2 ** min(i, 3)
            layers += [nn.Conv2d(ch, out, 4, stride=2 if i < n_layers else 1, padding=1),
                       nn.InstanceNorm2d(out), nn.LeakyReLU(0.2, True)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@MODELS.register("cyclegan")
class CycleGAN(nn.Module):
    """Translators ``gen_ab`` (G), ``gen_ba`` (F) and critics ``disc_a``, ``disc_b``; see the module docstring."""

    card = ModelCard(
        family="adversarial", default_objective="cyclegan", samplers=(SamplerSpec("translate"),),
        evaluators=("translation",),
        conditioning=ConditioningSpec(source_image=True),  # a sample is the translation of a given image
        domains=2,
        # Zhu et al. 2017: Adam, lr 2e-4, beta1 0.5; constant for the first half, then linearly to zero.
        run_defaults={"optim.lr": 2e-4, "optim.beta1": 0.5, "optim.schedule": "linear", "optim.decay_start": 0.5},
        tiny=dict(width=4, n_down=1, n_blocks=1, d_width=4), tiny_data=TINY_GREY,
    )

    @dataclass
    class Config:
        width: int = bounded(32, ge=1)  # generator channels at full resolution (paper: 64)
        n_down: int = bounded(2, ge=0, le=4)  # stride-2 downsamplings in each generator (paper: 2)
        n_blocks: int = bounded(6, ge=0)  # residual blocks at the lowest resolution (paper: 9 at 256x256)
        d_width: int = bounded(32, ge=1)  # discriminator channels of the first layer (paper: 64)
        d_layers: int = bounded(1, ge=1, le=5)  # PatchGAN depth (paper's 70x70: 3); sets the patch size

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        self.cfg, self.data = cfg, data
        if data.height % 2 ** cfg.n_down or data.width % 2 ** cfg.n_down:
            raise InputError(f"{data.height}x{data.width} images cannot be halved n_down={cfg.n_down} times: "
                             "lower model.n_down")
        # The domains may differ in channels (grey <-> colour): only the first and last layers see them.
        c_a, c_b = data.domain("a").channels, data.domain("b").channels
        self.gen_ab = ResnetGenerator(c_a, cfg.width, cfg.n_down, cfg.n_blocks, out_channels=c_b)
        self.gen_ba = ResnetGenerator(c_b, cfg.width, cfg.n_down, cfg.n_blocks, out_channels=c_a)
        self.disc_a = PatchDiscriminator(c_a, cfg.d_width, cfg.d_layers)
        self.disc_b = PatchDiscriminator(c_b, cfg.d_width, cfg.d_layers)
        for m in self.modules():  # the paper's code: weights ~ N(0, 0.02), biases 0
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def phases(self) -> list[Phase]:
        # Both translators in one update, then both critics (the paper's optimizer_G and optimizer_D).
        return [Phase("G", ("gen_ab", "gen_ba")), Phase("D", ("disc_a", "disc_b"))]

    def translate(self, x: torch.Tensor, direction: Direction = "a2b") -> torch.Tensor:
        """G(x) (a2b) or F(x) (b2a): images (B, C_src, H, W) in [0, 1] -> (B, C_tgt, H, W) in [0, 1]."""
        if direction == "a2b":
            return self.gen_ab(x)
        if direction == "b2a":
            return self.gen_ba(x)
        raise InputError(f"direction must be a2b or b2a, not {direction!r}")

    def critic_of(self, domain: Literal["a", "b"]) -> nn.Module:
        """D_A or D_B: raw patch scores (B, 1, h, w)."""
        return self.disc_a if domain == "a" else self.disc_b
