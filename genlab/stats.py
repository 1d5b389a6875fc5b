"""The one standard-error formula of genlab, at the bottom of the import layers.

Every averaged number genlab reports (a test NLL, an IWAE bound, an ELBO term) comes
with the standard error of its mean over the averaged values:

    stderr = s / sqrt(n),   s^2 = sum_i (x_i - mean)^2 / (n - 1)

i.e. the sample standard deviation with Bessel's correction over the square root of
the count. Evaluators that see their values batch by batch use ``RunningMean``, which
merges batches exactly (Chan, Golub & LeVeque 1979) instead of subtracting two large
sums of squares, so the result is the same as ``standard_error`` on all values at once.

A spread that a metric's reference code defines otherwise is reported as ``std``,
never as a standard error: the standard deviation over KID subsets and over
Inception-Score splits divides by n, as numpy's default in the authors' code does.
"""

from __future__ import annotations

import math

import torch


def standard_error(values) -> float | None:
    """Standard error of the mean of ``values`` (any shape, flattened): s / sqrt(n) with
    s the sample standard deviation (n - 1). None for fewer than two values, which
    carry no estimate of their spread."""
    v = torch.as_tensor(values).detach().to("cpu", torch.float64).flatten()
    if len(v) < 2:
        return None
    return float(v.std(correction=1)) / math.sqrt(len(v))


class RunningMean:
    """Mean and standard error of values given in batches.

    >>> acc = RunningMean(); acc.add(torch.tensor([1.0, 2.0])); acc.add(torch.tensor([3.0]))
    >>> acc.mean, acc.stderr  # same as standard_error([1, 2, 3]) = 1 / sqrt(3)
    """

    def __init__(self):
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the current mean

    def add(self, values: torch.Tensor) -> None:
        v = values.detach().to("cpu", torch.float64).flatten()
        if len(v) == 0:
            return
        n_b, mean_b = len(v), float(v.mean())
        m2_b = float((v - mean_b).pow(2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self._m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    @property
    def stderr(self) -> float | None:
        """s / sqrt(n) as in ``standard_error``; None before two values were added."""
        if self.n < 2:
            return None
        return math.sqrt(self._m2 / (self.n - 1)) / math.sqrt(self.n)

    def state(self) -> list[float]:
        """[n, mean, sum of squared deviations]: enough to continue exactly (an interrupted evaluation)."""
        return [self.n, self.mean, self._m2]

    @classmethod
    def from_state(cls, state: list[float]) -> "RunningMean":
        acc = cls()
        acc.n, acc.mean, acc._m2 = int(state[0]), float(state[1]), float(state[2])
        return acc


def bits_per_dim(nats, dims: int):
    """Nats per image -> bits per dimension: ``nats / (dims ln 2)``, ``dims`` = C * H * W sub-pixels.

    Takes a float, a tensor or an array (same type back); ``bits_per_dim(1.0, dims)`` is the factor that
    turns a mean in nats/image into bits/dim.
    """
    return nats / (dims * math.log(2))
