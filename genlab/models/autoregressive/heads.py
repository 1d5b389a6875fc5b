"""Output heads shared by the autoregressive models: how raw outputs become pixel distributions.

An autoregressive image model returns raw outputs (B, R, H, W) whose values at
pixel (i, j) depend only on the sub-pixels before it. Two kinds of head:

* per sub-pixel (Bernoulli, 256-way categorical): raw channels are laid out
  channel-major, raw[:, c * K : (c + 1) * K] for colour channel c, and the network
  orders the colours inside a pixel (R's outputs see nothing of the pixel, G's see
  R, B's see R and G). Sampling a pixel takes one network step per channel.
* per pixel (the discretized logistic mixture of PixelCNN++): all C channels
  come from one output vector that sees nothing of its pixel; the mixture orders
  the colours itself, so the network needs no colour masks and sampling takes
  one step per pixel.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Literal

import torch

from genlab.errors import InputError
from genlab.nn.distributions import Bernoulli, Categorical, PixelDistribution
from genlab.nn.logistic_mixture import DiscretizedLogisticMixture, mixture_raw_channels
from genlab.nn.masked import channel_groups
from genlab.nn.spec import DataSpec

Likelihood = Literal["auto", "bernoulli", "categorical", "logistic-mixture"]
LIKELIHOODS = ("auto", "bernoulli", "categorical", "logistic-mixture")


def resolve_likelihood(name: str, data: DataSpec) -> str:
    """'auto' -> Bernoulli for binary data, 2**bits-way categorical otherwise; checks the pairing.

    Images are 1- or 8-bit; wider specs (up to 16 bits) are the token grids of a VQ-VAE prior, which
    take the categorical head only."""
    if name not in LIKELIHOODS:
        raise InputError(f"unknown model.likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
    if name == "auto":
        return "bernoulli" if data.bits == 1 else "categorical"
    if name == "bernoulli" and data.bits != 1:
        raise InputError("model.likelihood=bernoulli needs binary data; 8-bit data takes categorical or "
                         "logistic-mixture")
    if name != "bernoulli" and data.bits == 1:
        raise InputError(f"model.likelihood={name} is for 8-bit data; binary data takes model.likelihood=bernoulli")
    if name == "logistic-mixture" and data.bits != 8:
        raise InputError(f"model.likelihood=logistic-mixture is for 8-bit images, not {data.bits}-bit tokens: "
                         "use model.likelihood=categorical")
    return name


@dataclass(frozen=True)
class AutoregressiveHead:
    """The likelihood of an autoregressive model and the layout of its raw outputs."""

    likelihood: str  # resolved: bernoulli | categorical | logistic-mixture
    data: DataSpec
    components: int = 10  # logistic-mixture only
    min_log_scale: float = -7.0  # logistic-mixture only (PixelCNN++ clamps at -7)

    @classmethod
    def create(cls, likelihood: str, data: DataSpec, components: int = 10) -> "AutoregressiveHead":
        if components < 1:
            raise InputError("mixture_components must be >= 1")
        return cls(resolve_likelihood(likelihood, data), data, components)

    @property
    def joint(self) -> bool:
        """True when one raw vector gives the whole pixel (the mixture)."""
        return self.likelihood == "logistic-mixture"

    @property
    def colour_groups(self) -> int:
        """Colour groups the network's masks must order: C for per-sub-pixel heads, else 1."""
        return 1 if self.joint else self.data.channels

    @property
    def params_per_subpixel(self) -> int:
        return {"bernoulli": 1, "categorical": self.data.levels}.get(self.likelihood, 0)

    @property
    def raw_channels(self) -> int:
        if self.joint:
            return mixture_raw_channels(self.data.channels, self.components)
        return self.data.channels * self.params_per_subpixel

    def image_groups(self) -> torch.Tensor:
        """Colour group of every image channel, for the network's first (type-A) masked layer."""
        if self.joint:
            return torch.zeros(self.data.channels, dtype=torch.long)
        return torch.arange(self.data.channels)

    def raw_groups(self) -> torch.Tensor:
        """Colour group of every raw output channel, for the network's last masked layer."""
        if self.joint:
            return torch.zeros(self.raw_channels, dtype=torch.long)
        return channel_groups(self.raw_channels, self.data.channels)

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        """raw (B, R, H, W) -> distribution over (B, C, H, W) images."""
        if raw.shape[1] != self.raw_channels:
            raise InputError(f"{self.likelihood} head expects {self.raw_channels} raw channels, got {raw.shape[1]}")
        if self.likelihood == "bernoulli":
            return Bernoulli(raw)
        if self.likelihood == "categorical":
            return Categorical(raw.unflatten(1, (self.data.channels, self.data.levels)))
        return DiscretizedLogisticMixture.from_raw(raw, self.data.channels, self.components, self.min_log_scale)

    # ---- one sampling step -------------------------------------------------------------

    def steps(self) -> list[tuple[int, slice]]:
        """The steps of one pixel: (step index c, image channels it draws)."""
        if self.joint:
            return [(0, slice(0, self.data.channels))]
        return [(c, slice(c, c + 1)) for c in range(self.data.channels)]

    def step_raw(self, c: int) -> slice:
        """Raw channels that step c reads."""
        if self.joint:
            return slice(0, self.raw_channels)
        k = self.params_per_subpixel
        return slice(c * k, (c + 1) * k)

    def sample_step(self, raw_step: torch.Tensor, generators: list[torch.Generator],
                    temperature: float = 1.0) -> torch.Tensor:
        """Draw the channels of step c at one pixel; raw_step (B, R_step) -> (B, channels of the step).

        ``temperature`` T divides the logits (Bernoulli, softmax, mixture weights) and multiplies
        the logistics' scales; T = 1 leaves the raw outputs untouched (the same draws as before).
        """
        raw = raw_step[:, :, None, None]  # (B, R_step, 1, 1)
        if self.likelihood == "bernoulli":
            dist = Bernoulli(raw if temperature == 1 else raw / temperature)
        elif self.likelihood == "categorical":
            logits = raw.unsqueeze(1)  # (B, 1, L, 1, 1)
            dist = Categorical(logits if temperature == 1 else logits / temperature)
        else:
            if temperature != 1:
                C, M = self.data.channels, self.components
                logits, loc, log_scale, coeffs = raw.split([M, C * M, C * M, raw.shape[1] - M - 2 * C * M], dim=1)
                raw = torch.cat([logits / temperature, loc, log_scale + math.log(temperature), coeffs], dim=1)
            dist = DiscretizedLogisticMixture.from_raw(raw, self.data.channels, self.components, self.min_log_scale)
        return dist.sample(generators)[:, :, 0, 0]
