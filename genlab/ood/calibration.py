"""How far a classifier's confidence can be trusted: calibration and selective classification.

* Expected calibration error (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017, arXiv:1706.04599, Eq. 3):
  the confidences max_y p(y | x) are cut into M equal-width bins of [0, 1] (a confidence c goes to bin
  ceil(c M) - 1, so 1.0 is in the last bin and 0 in the first), and ECE = sum_m |B_m| / n |acc(B_m) - conf(B_m)|.
  The reliability diagram plots acc(B_m) against conf(B_m).
* Risk-coverage curve (Geifman & El-Yaniv 2017, arXiv:1705.08500; AURC: Geifman, Uziel & El-Yaniv 2019,
  arXiv:1805.08206): accept the k most confident images, k = 1..n; coverage k / n, selective risk = errors
  among them / k. AURC is the mean of the risk over the n coverages (0 for a perfect ranking of a perfect
  classifier; the error rate for a random ranking). Images of equal confidence are accepted together in
  random order, so the risk at k counts the expected errors of the tied group pro rata.
"""

from __future__ import annotations

import numpy as np

from genlab.errors import InputError


def _check(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct, dtype=bool).reshape(-1)
    if c.size == 0 or c.size != ok.size:
        raise InputError(f"need as many confidences as correctness flags, at least one ({c.size} vs {ok.size})")
    return c, ok


def reliability_bins(confidence, correct, bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width bin of [0, 1]: "count", "accuracy", "confidence" (mean; nan for an empty bin), "edges"."""
    c, ok = _check(confidence, correct)
    if c.min() < 0 or c.max() > 1:
        raise InputError("confidences must lie in [0, 1]")
    index = np.clip(np.ceil(c * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(index, weights=ok, minlength=bins) / count
        conf = np.bincount(index, weights=c, minlength=bins) / count
    return {"count": count, "accuracy": acc, "confidence": conf, "edges": np.linspace(0.0, 1.0, bins + 1)}


def expected_calibration_error(confidence, correct, bins: int = 15) -> float:
    """ECE over ``bins`` equal-width bins (15 as in Guo et al. 2017), as a fraction (not percent)."""
    r = reliability_bins(confidence, correct, bins)
    used = r["count"] > 0
    return float(np.sum(r["count"][used] / r["count"].sum() * np.abs(r["accuracy"][used] - r["confidence"][used])))


def risk_coverage(score, correct) -> tuple[np.ndarray, np.ndarray]:
    """Coverage k/n and selective risk at k = 1..n, accepting the k images of highest ``score`` (a confidence,
    or any number ordered like one). Returns (coverage (n,), risk (n,))."""
    s, ok = _check(score, correct)
    order = np.argsort(-s, kind="mergesort")
    s, err = s[order], (~ok[order]).astype(np.float64)
    n = s.size
    # Each tie group [start, end): errors before it, plus its error rate times how many of it are taken.
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], n]
    cum = np.r_[0.0, np.cumsum(err)]
    errors = np.empty(n)
    for a, b in zip(starts, ends):
        errors[a:b] = cum[a] + (np.arange(a, b) - a + 1) * (cum[b] - cum[a]) / (b - a)
    k = np.arange(1, n + 1)
    return k / n, errors / k


def aurc(score, correct) -> float:
    """Area under the risk-coverage curve: the mean selective risk over coverages 1/n .. n/n."""
    return float(risk_coverage(score, correct)[1].mean())
