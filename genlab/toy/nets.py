"""Small networks for toy GANs, speaking the adversarial model protocol of the image GANs.

``ToyGAN`` provides ``phases``, ``sample_latent``, ``real_inputs``,
``fake_inputs`` and ``critic`` exactly like ``dcgan``, so the one ``gan``
objective (genlab/objectives/adversarial.py) is what the toy experiments test.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genlab.nn.adversarial import Prior, latent_noise
from genlab.nn.spec import Phase
from genlab.toy.mixtures import GaussianMixture, gaussian


def mlp(inputs: int, hidden: int, outputs: int, depth: int = 2, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` with activation ``act``."""
    layers: list[nn.Module] = []
    width = inputs
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), act()]
        width = hidden
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


class AffineGenerator(nn.Module):
    """G(z) = mean + std * z with z ~ N(0, I_d): p_g = N(mean, std^2 I_d), a density known exactly."""

    def __init__(self, dim: int, mean: float | list[float] = 0.0, std: float = 1.0):
        super().__init__()
        self.mean = nn.Parameter(torch.as_tensor(mean, dtype=torch.float32).expand(dim).clone())
        self.log_std = nn.Parameter(torch.tensor(math.log(std)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mean + self.log_std.exp() * z

    def density(self) -> GaussianMixture:
        """The generator's distribution p_g, at the current parameters."""
        return gaussian(self.mean.detach().double(), float(self.log_std.detach().exp()))


class Critic(nn.Module):
    """An MLP x (B, d) -> raw score (B,)."""

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.net = mlp(dim, hidden, 1, depth, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class ToyGAN(nn.Module):
    """A generator and a discriminator on R^d, trained by the ``gan`` objective.

    Args:
        generator: z (B, latent_dim) -> x (B, d).
        discriminator: x (B, d) -> scores (B,).
        latent_dim: size of z.
        prior: p(z), "normal" or "uniform" on [-1, 1].
        n_critic: discriminator steps per generator step.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, latent_dim: int,
                 prior: Prior = "normal", n_critic: int = 1):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim, self.prior, self.n_critic = latent_dim, prior, n_critic

    def phases(self) -> list[Phase]:
        return [Phase("D", ("discriminator",)), Phase("G", ("generator",), every=self.n_critic)]

    def sample_latent(self, n: int, device=None, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        return latent_noise(self.prior, n, self.latent_dim, device, generators)

    def generate(self, z: torch.Tensor, y=None) -> torch.Tensor:
        return self.generator(z)

    def real_inputs(self, batch: dict) -> tuple[torch.Tensor, ...]:
        return (batch["x"],)

    def fake_inputs(self, batch: dict, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.generator(z),)

    def critic(self, inputs: tuple[torch.Tensor, ...], batch: dict) -> torch.Tensor:
        return self.discriminator(inputs[0])


def mlp_gan(dim: int = 2, latent_dim: int = 2, hidden: int = 128, depth: int = 3, n_critic: int = 1) -> ToyGAN:
    """The usual 2-D toy GAN: a ReLU MLP generator and discriminator, ``depth`` hidden layers each."""
    return ToyGAN(mlp(latent_dim, hidden, dim, depth), Critic(dim, hidden, depth), latent_dim, n_critic=n_critic)
