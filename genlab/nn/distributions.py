"""Pixel likelihoods: distributions over discrete images built from raw network outputs.

Every distribution here is *discrete*: ``log_prob`` is a true log-probability
mass of the observed pixel levels, so nats per image and bits per dimension are
comparable across models. All methods work on the model-input scale: x in [0, 1]
with shape (B, C, H, W), exactly 0/1 for binary data and k/255 for 8-bit data.

``sample`` takes one torch.Generator per batch row so that sample i depends only
on its own generator (see ``genlab.rng``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from genlab.errors import InputError
from genlab.nn.spec import DataSpec
from genlab.rng import categorical_per_sample, rand_per_sample

LEVELS = 256  # 8-bit sub-pixels


class PixelDistribution:
    """Interface: per-sub-pixel log-mass, per-sample sampling, mean image."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) nats
        raise NotImplementedError

    def sample(self, generators: list[torch.Generator]) -> torch.Tensor:  # (B, C, H, W) in [0, 1]
        raise NotImplementedError

    def mean(self) -> torch.Tensor:
        raise NotImplementedError


class Bernoulli(PixelDistribution):
    def __init__(self, logits: torch.Tensor):
        self.logits = logits  # (B, C, H, W)

    def log_prob(self, x):
        return -F.binary_cross_entropy_with_logits(self.logits, x, reduction="none")

    def sample(self, generators):
        u = rand_per_sample(generators, self.logits.shape[1:], self.logits.device, self.logits.dtype)
        return (u < torch.sigmoid(self.logits)).to(self.logits.dtype)

    def mean(self):
        return torch.sigmoid(self.logits)


class Categorical(PixelDistribution):
    """256-way softmax per sub-pixel (van den Oord et al. 2016)."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits  # (B, C, 256, H, W)

    def log_prob(self, x):
        k = to_levels(x).unsqueeze(2)  # (B, C, 1, H, W)
        return F.log_softmax(self.logits, dim=2).gather(2, k).squeeze(2)

    def sample(self, generators):
        probs = F.softmax(self.logits.float(), dim=2).movedim(2, -1)  # (B, C, H, W, 256)
        return categorical_per_sample(generators, probs).to(self.logits.dtype) / (LEVELS - 1)

    def mean(self):
        probs = F.softmax(self.logits, dim=2)
        levels = torch.arange(LEVELS, device=probs.device, dtype=probs.dtype).view(1, 1, -1, 1, 1)
        return (probs * levels).sum(2) / (LEVELS - 1)


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] model input -> integer levels 0..255."""
    return (x * (LEVELS - 1)).round().long().clamp_(0, LEVELS - 1)


HALF_BIN = 1.0 / (LEVELS - 1)  # half the bin width on the [-1, 1] scale


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-d)) for d > 0, accurate for small and large d (Maechler 2012)."""
    return torch.where(d < math.log(2), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def discretized_logistic_log_mass(y: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(bin of y) for a logistic(loc, exp(log_scale)) on [-1, 1] cut into 256 bins.

    Args:
        y: bin centres 2k/255 - 1 (broadcastable with loc).
        loc, log_scale: logistic location and log scale on the [-1, 1] scale.
    Returns:
        log-mass in nats, same shape as the broadcast inputs.
    """
    inv_s = torch.exp(-log_scale)
    a = (y - loc - HALF_BIN) * inv_s  # standardized lower edge
    b = (y - loc + HALF_BIN) * inv_s  # standardized upper edge
    width = (2 * HALF_BIN * inv_s).clamp_min(1e-30)  # b - a, always > 0
    interior = F.logsigmoid(b) - F.softplus(a) + log1mexp(width)
    first = F.logsigmoid(b)  # level 0 takes (-inf, upper edge)
    last = F.logsigmoid(-a)  # level 255 takes (lower edge, +inf)
    return torch.where(y < -1 + HALF_BIN, first, torch.where(y > 1 - HALF_BIN, last, interior))


class _DiscretizedContinuous(PixelDistribution):
    """A continuous location-scale density on [-1, 1] integrated over 256 equal bins.

    The first and last bins extend to -inf and +inf, so the masses sum to one
    (Salimans et al. 2017, PixelCNN++, arXiv:1701.05517, Section 2.1).
    Subclasses give the standardized CDF, its log, and the log-density.
    """

    half_bin = 1.0 / (LEVELS - 1)

    def __init__(self, loc: torch.Tensor, log_scale: torch.Tensor):
        self.loc = loc  # on the [-1, 1] scale
        self.log_scale = log_scale

    def _log_cdf(self, t):  # log F(t)
        raise NotImplementedError

    def _log_sf(self, t):  # log (1 - F(t))
        raise NotImplementedError

    def _log_pdf(self, t):
        raise NotImplementedError

    def _cdf(self, t):
        raise NotImplementedError

    def _icdf(self, u):
        raise NotImplementedError

    def log_prob(self, x):
        y = x * 2 - 1
        inv_s = torch.exp(-self.log_scale)
        centered = y - self.loc
        upper = (centered + self.half_bin) * inv_s
        lower = (centered - self.half_bin) * inv_s
        mass = (self._cdf(upper) - self._cdf(lower)).clamp_min(1e-12)
        # When a bin's mass underflows, its log is approximated by density x bin width.
        mid = torch.where(
            mass > 1e-5,
            torch.log(mass),
            self._log_pdf(centered * inv_s) - self.log_scale + math.log(2 * self.half_bin),
        )
        first = self._log_cdf(upper)  # level 0: everything below its upper edge
        last = self._log_sf(lower)  # level 255: everything above its lower edge
        return torch.where(y < -0.999, first, torch.where(y > 0.999, last, mid))

    def sample(self, generators):
        u = rand_per_sample(generators, self.loc.shape[1:], self.loc.device, self.loc.dtype)
        u = u.clamp(1e-6, 1 - 1e-6)
        y = self.loc + torch.exp(self.log_scale) * self._icdf(u)
        return ((y.clamp(-1, 1) + 1) / 2 * (LEVELS - 1)).round() / (LEVELS - 1)

    def mean(self):
        # The mode of the bin mass is near the location; clamping gives the expected image closely enough.
        return (self.loc.clamp(-1, 1) + 1) / 2


class DiscretizedLogistic(_DiscretizedContinuous):
    def log_prob(self, x):
        # Exact in log space, also for bins far in the tails.
        return discretized_logistic_log_mass(x * 2 - 1, self.loc, self.log_scale)

    def _cdf(self, t):
        return torch.sigmoid(t)

    def _log_cdf(self, t):
        return F.logsigmoid(t)

    def _log_sf(self, t):
        return F.logsigmoid(-t)

    def _log_pdf(self, t):
        return t - 2 * F.softplus(t)

    def _icdf(self, u):
        return torch.log(u) - torch.log1p(-u)


class DiscretizedGaussian(_DiscretizedContinuous):
    """A fixed-variance Gaussian integrated over the bins: the L2 loss as a true discrete likelihood.

    For small sigma the NLL is ||x - mu||^2 / (2 sigma^2) + const, the familiar
    squared-error reconstruction loss, but normalized so that bits/dim is honest.
    """

    def _cdf(self, t):
        return torch.special.ndtr(t)

    def _log_cdf(self, t):
        return torch.special.log_ndtr(t)

    def _log_sf(self, t):
        return torch.special.log_ndtr(-t)

    def _log_pdf(self, t):
        return -0.5 * t * t - 0.5 * math.log(2 * math.pi)

    def _icdf(self, u):
        return torch.special.ndtri(u)


@dataclass(frozen=True)
class PixelHead:
    """How many raw output channels a likelihood needs per sub-pixel, and how to read them."""

    name: str
    params_per_subpixel: int
    build: Callable[[torch.Tensor], PixelDistribution]  # raw (B, C * params, H, W) -> distribution


LIKELIHOODS = ("bernoulli", "categorical", "logistic", "gaussian")


def make_head(name: str, data: DataSpec, gaussian_sigma: float = 0.1, min_log_scale: float = -7.0) -> PixelHead:
    """The likelihood head ``name`` for ``data``; "auto" picks Bernoulli for binary data, logistic for 8-bit.

    Raw outputs are laid out as (B, C * params_per_subpixel, H, W), parameter-major:
    raw[:, p * C + c] is parameter p of channel c.
    """
    if name == "auto":
        name = "bernoulli" if data.bits == 1 else "logistic"
    if name not in LIKELIHOODS:
        raise InputError(f"unknown likelihood {name!r}; choose one of auto, {', '.join(LIKELIHOODS)}")
    if name == "bernoulli" and data.bits != 1:
        raise InputError("the Bernoulli likelihood needs binary data: use a binarized dataset or likelihood=logistic")
    if name != "bernoulli" and data.bits == 1:
        raise InputError(f"the {name} likelihood is for 8-bit data; binary data takes likelihood=bernoulli")
    C = data.channels
    if name == "bernoulli":
        return PixelHead(name, 1, Bernoulli)
    if name == "categorical":
        return PixelHead(name, LEVELS, lambda raw: Categorical(raw.unflatten(1, (LEVELS, C)).transpose(1, 2)))
    if name == "logistic":
        def logistic(raw):
            loc, log_scale = raw.unflatten(1, (2, C)).unbind(1)
            return DiscretizedLogistic(loc, log_scale.clamp_min(min_log_scale))

        return PixelHead(name, 2, logistic)
    log_sigma = math.log(2 * gaussian_sigma)  # sigma on [0, 1] scale -> on [-1, 1] scale

    def gaussian(raw):
        return DiscretizedGaussian(raw, torch.full_like(raw, log_sigma))

    return PixelHead(name, 1, gaussian)
