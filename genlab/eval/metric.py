"""The record every metric is written as, so that eval.json says what each number is."""

from __future__ import annotations

from typing import Literal

Kind = Literal["exact", "bound", "estimate"]


def metric(value: float, unit: str, kind: Kind, protocol: str, **extra) -> dict:
    """A named metric's record in eval.json.

    Args:
        value: the number.
        unit: e.g. "nats", "bits/dim", "nats/image", "mse", "".
        kind: "exact" (computed exactly), "bound" (an upper bound on NLL / lower bound
            on log-likelihood: labelled so), or "estimate" (a Monte Carlo or sample-based value).
        protocol: how it was computed: split, number of examples, samples per example,
            feature network, seed... enough to reproduce it.
        extra: anything else worth keeping (standard error, k, ...).
    """
    return {"value": float(value), "unit": unit, "kind": kind, "protocol": protocol, **extra}


def averaged(acc, unit: str, kind: Kind, protocol: str, scale: float = 1.0, **extra) -> dict:
    """The record of a mean over examples, with its count and standard error.

    Args:
        acc: a ``genlab.stats.RunningMean`` holding the per-example values.
        scale: unit conversion applied to the mean and the standard error alike (e.g.
            1 / (D ln 2) from nats per image to bits per dimension).
    """
    stderr = acc.stderr
    return metric(acc.mean * scale, unit, kind, protocol, n=acc.n,
                  stderr=None if stderr is None else stderr * scale, **extra)
