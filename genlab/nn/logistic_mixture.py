"""Discretized logistic mixture likelihood of PixelCNN++.

Salimans, Karpathy, Chen & Kingma 2017, "PixelCNN++: Improving the PixelCNN with
Discretized Logistic Mixture Likelihood and Other Modifications" (arXiv:1701.05517),
Section 2.1-2.2.

Each pixel has one mixture over its C channels jointly: a component k is chosen
with probability pi_k, then channel c is a logistic with location
mu_{c,k} + sum_{c' < c} tanh(a_{c,c',k}) * x_{c'} and scale s_{c,k}, integrated over
the 256 bins of [-1, 1] (first and last bins extended to -inf / +inf). For RGB that
is the paper's mu_G + alpha R and mu_B + beta R + gamma G; for C channels every
channel depends linearly on all earlier ones.

Differences from the paper's code:

* masses are computed in closed form in log space,
  log(sigmoid(b) - sigmoid(a)) = logsigmoid(b) - softplus(a) + log(1 - exp(a - b)),
  which is stable in both tails, instead of falling back to a density x bin-width
  approximation for small masses: the probabilities of the 256 bins sum to one;
* ``log_prob`` returns (B, C, H, W) chain-rule terms, channel c holding
  log p(x_c | x_<c) under the mixture (the joint is their sum), so it has the same
  per-sub-pixel interface as the other pixel distributions;
* the previous channel values that shift later means are the discretized sampled
  levels, so sampling draws exactly from the distribution ``log_prob`` scores.

Raw layout per pixel (B, R, H, W), with M components and C channels,
R = M * (1 + 2C + C(C-1)/2):  [logits (M) | locations (C, M) | log-scales (C, M) |
coefficients (C(C-1)/2, M) in the order (1,0), (2,0), (2,1), ...].
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from genlab.errors import InputError
from genlab.nn.distributions import (HALF_BIN, PixelDistribution, discretized_logistic_log_mass,
                                     to_levels)
from genlab.rng import categorical_per_sample, rand_per_sample



def mixture_raw_channels(channels: int, components: int) -> int:
    """Raw network outputs per pixel for a C-channel mixture of ``components`` logistics."""
    return components * (1 + 2 * channels + channels * (channels - 1) // 2)


class DiscretizedLogisticMixture(PixelDistribution):
    """A mixture of discretized logistics per pixel, channels autoregressive within the pixel.

    Args:
        logits: (B, M, H, W) unnormalized mixture weights.
        loc: (B, C, M, H, W) locations on [-1, 1] before the channel shifts.
        log_scale: (B, C, M, H, W), clamped below at ``min_log_scale``.
        coeffs: (B, C(C-1)/2, M, H, W) pre-tanh coefficients of earlier channels.
    """

    def __init__(self, logits, loc, log_scale, coeffs, min_log_scale: float = -7.0):
        self.logits = logits
        self.loc = loc
        self.log_scale = log_scale.clamp_min(min_log_scale)
        self.coeffs = torch.tanh(coeffs)
        self.channels = loc.shape[1]

    @classmethod
    def from_raw(cls, raw: torch.Tensor, channels: int, components: int,
                 min_log_scale: float = -7.0) -> "DiscretizedLogisticMixture":
        """Split raw outputs (B, R, H, W) laid out as in the module docstring."""
        C, M = channels, components
        expected = mixture_raw_channels(C, M)
        if raw.shape[1] != expected:
            raise InputError(f"a {C}-channel mixture of {M} logistics needs {expected} raw channels, "
                             f"got {raw.shape[1]}")
        n_coef = C * (C - 1) // 2
        logits, loc, log_scale, coeffs = raw.split([M, C * M, C * M, n_coef * M], dim=1)
        return cls(logits, loc.unflatten(1, (C, M)), log_scale.unflatten(1, (C, M)),
                   coeffs.unflatten(1, (n_coef, M)), min_log_scale)

    def _coeff(self, c: int, prev: int) -> torch.Tensor:
        """tanh coefficient of channel ``prev`` in the location of channel ``c`` (prev < c): (B, M, H, W)."""
        return self.coeffs[:, c * (c - 1) // 2 + prev]

    def _shifted_loc(self, c: int, y: torch.Tensor) -> torch.Tensor:
        """Location of channel c given earlier channel values y (B, C, H, W) on [-1, 1]: (B, M, H, W)."""
        loc = self.loc[:, c]
        for prev in range(c):
            loc = loc + self._coeff(c, prev) * y[:, prev : prev + 1]
        return loc

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W): channel c holds log p(x_c | x_<c) in nats; the sum over C is log p(pixel)."""
        y = to_levels(x).to(self.loc.dtype) * (2 * HALF_BIN) - 1  # exact bin centres
        log_mass = torch.stack([
            discretized_logistic_log_mass(y[:, c : c + 1], self._shifted_loc(c, y), self.log_scale[:, c])
            for c in range(self.channels)
        ], dim=1)  # (B, C, M, H, W)
        log_pi = F.log_softmax(self.logits, dim=1).unsqueeze(1)  # (B, 1, M, H, W)
        joint = torch.logsumexp(log_pi + log_mass.cumsum(dim=1), dim=2)  # (B, C, H, W): log p(x_0..x_c)
        return torch.cat([joint[:, :1], joint[:, 1:] - joint[:, :-1]], dim=1)

    def sample(self, generators: list[torch.Generator]) -> torch.Tensor:
        """Per pixel: a component from pi, then channels in order; row i uses only generators[i]."""
        B, M, H, W = self.logits.shape
        probs = F.softmax(self.logits.float(), dim=1).movedim(1, -1)  # (B, H, W, M)
        k = categorical_per_sample(generators, probs).unsqueeze(1)  # (B, 1, H, W)
        u = rand_per_sample(generators, (self.channels, H, W), self.loc.device, self.loc.dtype)
        u = u.clamp(1e-7, 1 - 1e-7)
        logistic = torch.log(u) - torch.log1p(-u)  # (B, C, H, W) standard logistic noise
        y = torch.zeros(B, self.channels, H, W, device=self.loc.device, dtype=self.loc.dtype)
        for c in range(self.channels):
            loc = self._shifted_loc(c, y).gather(1, k)  # (B, 1, H, W)
            scale = self.log_scale[:, c].gather(1, k).exp()
            cont = (loc + scale * logistic[:, c : c + 1]).clamp(-1, 1)
            # Rounding the clamped continuous draw to its bin is an exact draw of the bin.
            y[:, c : c + 1] = torch.round((cont + 1) / (2 * HALF_BIN)) * (2 * HALF_BIN) - 1
        return (y + 1) / 2

    def mean(self) -> torch.Tensor:
        """Approximate mean image in [0, 1].

        Per component, E[clamp(Y, -1, 1)] of the continuous logistic in closed form
        (within half a bin of the discretized mean); later channels use the earlier
        channels' component means in their location shift, which is exact when the
        shifted logistic stays away from the edges.
        """
        pi = F.softmax(self.logits, dim=1)  # (B, M, H, W)
        means = []  # per channel, (B, M, H, W) component means on [-1, 1]
        for c in range(self.channels):
            loc = self.loc[:, c]
            for prev in range(c):
                loc = loc + self._coeff(c, prev) * means[prev]
            s = self.log_scale[:, c].exp()
            # E[clamp(Y, lo, hi)] = lo + integral_lo^hi (1 - F(t)) dt, F logistic.
            means.append(-1 + s * (F.softplus((loc + 1) / s) - F.softplus((loc - 1) / s)))
        y = torch.stack([(pi * m).sum(1) for m in means], dim=1)
        return (y + 1) / 2
