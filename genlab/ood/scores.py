"""Outlier scores built on a model's per-image NLL, each from its paper; higher = more outlying.

Every score is in bits per dimension (D = sub-pixels per image) and is computed
from per-image quantities of one set of images (``SetTerms``) and, for some,
from statistics of in-distribution training images (``Reference``):

======================  ==========================================================
``bpd``                 -log2 p(x) / D: the raw likelihood (exact, a bound or a proxy,
                        as the model's family gives it).
``complexity-png``      bpd - L(x)/D with L the PNG code length (Serra et al. 2020).
``complexity-zlib``     the same with zlib of the raw sub-pixels.
``likelihood-ratio``    bpd_model - bpd_background = -LLR / (D ln 2) (Ren et al. 2019).
``typicality``          |bpd - H_hat|, H_hat the mean bpd of training images
                        (Nalisnick et al. 2019, arXiv:1906.02994, with batch size M = 1).
======================  ==========================================================

``batch_typicality`` gives the same test on batches of M images, as the paper
uses it (metrics then count batches, not images).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from genlab.errors import InputError
from genlab.ood.metrics import detection_metrics
from genlab.registry import Registry


@dataclass
class SetTerms:
    """Per-image quantities of one set of images, each float64 (N,) in bits/dim."""

    bpd: np.ndarray  # -log2 p(x) / D under the model
    code_bpd: dict[str, np.ndarray] = field(default_factory=dict)  # compressor -> L(x) / D
    background_bpd: np.ndarray | None = None  # -log2 p_background(x) / D


@dataclass
class Reference:
    """Statistics of in-distribution images other than the test set: a seeded subset of the training split,
    as Nalisnick et al. 2019 estimate the entropy H_hat from training data."""

    mean_bpd: float  # H_hat: the model's mean NLL on them, bits/dim
    n: int
    protocol: str


@dataclass(frozen=True)
class Score:
    name: str
    fn: Callable[[SetTerms, Reference | None], np.ndarray]
    needs: tuple[str, ...]  # "background" and/or "reference"
    label: str  # one line for tables and figure captions
    paper: str


OOD_SCORES: Registry[Score] = Registry("OOD score")


def register_score(name: str, needs: tuple[str, ...], label: str, paper: str):
    def decorator(fn):
        OOD_SCORES.register(name)(Score(name, fn, needs, label, paper))
        return fn

    return decorator


@register_score("bpd", (), "NLL in bits/dim (raw likelihood)",
                "Nalisnick et al. 2019, arXiv:1810.09136 (its failure mode)")
def nll_score(t: SetTerms, ref: Reference | None) -> np.ndarray:
    """The raw likelihood: -log2 p(x) / D. Nalisnick et al. 2019 ("Do Deep Generative Models Know What They
    Don't Know?", arXiv:1810.09136) show it ranks simple OOD images (MNIST under a Fashion-MNIST model) as
    *more* likely than the model's own test set."""
    return t.bpd


def _complexity(t: SetTerms, compressor: str) -> np.ndarray:
    return t.bpd - t.code_bpd[compressor]


@register_score("complexity-png", (), "bpd - L_png(x)/D (input complexity, PNG)",
                "Serra et al. 2020, arXiv:1909.11480")
def complexity_png(t: SetTerms, ref: Reference | None) -> np.ndarray:
    """S(x) = -log2 p(x)/D - L(x)/D, L the PNG code length in bits (Serra et al. 2020, "Input Complexity and
    Out-of-Distribution Detection with Likelihood-based Generative Models", arXiv:1909.11480, Eq. 2): a
    log-likelihood ratio between the model and a universal compressor, which removes the bias of the likelihood
    towards simple images."""
    return _complexity(t, "png")


@register_score("complexity-zlib", (), "bpd - L_zlib(x)/D (input complexity, zlib)",
                "Serra et al. 2020, arXiv:1909.11480")
def complexity_zlib(t: SetTerms, ref: Reference | None) -> np.ndarray:
    """S(x) as ``complexity-png`` with L the zlib (level 9) code length of the raw sub-pixels (Serra et al.
    2020, arXiv:1909.11480)."""
    return _complexity(t, "zlib")


@register_score("likelihood-ratio", ("background",), "bpd - bpd_background (likelihood ratio)",
                "Ren et al. 2019, arXiv:1906.02845")
def likelihood_ratio(t: SetTerms, ref: Reference | None) -> np.ndarray:
    """-LLR(x) / (D ln 2) with LLR = log p_model(x) - log p_background(x) (Ren et al. 2019, "Likelihood Ratios
    for Out-of-Distribution Detection", arXiv:1906.02845, Eq. 5): the background model, trained on mutated
    inputs, explains the population-level statistics, so the ratio keeps the semantic part of the likelihood."""
    return t.bpd - t.background_bpd


@register_score("typicality", ("reference",), "|bpd - H_hat| (typicality, M=1)",
                "Nalisnick et al. 2019, arXiv:1906.02994")
def typicality(t: SetTerms, ref: Reference | None) -> np.ndarray:
    """|-log2 p(x)/D - H_hat|, H_hat the mean of -log2 p(x)/D over training images (Nalisnick, Matsukawa,
    Teh & Lakshminarayanan 2019, "Detecting Out-of-Distribution Inputs to Deep Generative Models Using Typicality",
    arXiv:1906.02994, Eq. 4 with a batch of M = 1): an image is atypical when its likelihood is too low *or too
    high* compared with the typical set."""
    return np.abs(t.bpd - ref.mean_bpd)


def available_scores(has_background: bool, has_reference: bool) -> list[str]:
    """Names of the scores whose inputs exist, in registry order."""
    have = {"background": has_background, "reference": has_reference}
    return [name for name, s in OOD_SCORES.items() if all(have[n] for n in s.needs)]


def compute_scores(terms: SetTerms, ref: Reference | None, names: list[str]) -> dict[str, np.ndarray]:
    """name -> float64 (N,) outlier scores of one set."""
    return {name: np.asarray(OOD_SCORES.get(name).fn(terms, ref), dtype=np.float64) for name in names}


def batch_typicality(in_bpd: np.ndarray, ood_bpd: np.ndarray, mean_bpd: float, m: int, seed: int) -> dict:
    """The typicality test on batches of M images (Nalisnick et al. 2019, arXiv:1906.02994, Sec. 3).

    Each set is shuffled (seeded) and cut into disjoint batches of ``m`` images; a
    batch's statistic is |mean bpd of the batch - H_hat|, and the detection metrics
    compare the batches of the two sets (so n_in and n_ood count batches).

    Returns:
        detection_metrics of the batch statistics, plus "m"; {} when a set has fewer than m images.
    """
    if m < 1:
        raise InputError("the typicality batch size M must be >= 1")
    rng = np.random.default_rng(seed)

    def stats(bpd):
        k = bpd.size // m
        shuffled = rng.permutation(bpd)[: k * m].reshape(k, m)
        return np.abs(shuffled.mean(1) - mean_bpd)

    a, b = stats(np.asarray(in_bpd, dtype=np.float64)), stats(np.asarray(ood_bpd, dtype=np.float64))
    if a.size == 0 or b.size == 0:
        return {}
    return {**detection_metrics(a, b), "m": m}
