"""Threshold-free detection metrics of an outlier score: AUROC, AUPR and FPR at 95% TPR.

Convention everywhere in ``genlab.ood``: a score is *higher for more outlying*
inputs. The in-distribution set is the test split of the run's own dataset; the
out-of-distribution (OOD) set is the other one.

* AUROC: the probability that a random OOD image scores above a random
  in-distribution image, ties counting one half (the Mann-Whitney U statistic
  divided by n_ood * n_in). 0.5 is chance; below 0.5 the score ranks the wrong
  way round, as raw likelihood does in Nalisnick et al. 2019 (arXiv:1810.09136).
* AUPR: average precision, OOD as the positive class ("AUPR-out"); ``aupr_in``
  is the same with the in-distribution set positive and the score negated.
  Computed as sklearn's ``average_precision_score``: sum over distinct thresholds
  of (R_k - R_{k-1}) * P_k, no interpolation. Its chance level is the share of
  positives, so it depends on the set sizes (reported beside it).
* FPR95: Hendrycks & Gimpel 2017 (arXiv:1610.02136) and Liang et al. 2018
  (arXiv:1706.02690): the threshold keeps 95% of the in-distribution images
  (TPR = 0.95 with in-distribution positive, declared "in" when score <= t, t
  the smallest such value), and FPR95 is the share of OOD images that also pass
  it. Lower is better.
"""

from __future__ import annotations

import math

import numpy as np

from genlab.errors import InputError


def _as_scores(values, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise InputError(f"the {name} scores are empty: each set needs at least one image")
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise InputError(f"{bad} of the {a.size} {name} scores are not finite; check the model and the images")
    return a


def auroc(in_scores, ood_scores) -> float:
    """P(score of an OOD image > score of an in-distribution image) + 0.5 P(equal).

    Args:
        in_scores: (n_in,) scores of in-distribution images (higher = more outlying).
        ood_scores: (n_ood,) scores of OOD images.
    Returns:
        The area under the ROC curve in [0, 1].
    """
    s_in, s_out = _as_scores(in_scores, "in-distribution"), _as_scores(ood_scores, "OOD")
    from scipy.stats import rankdata  # imported here: scipy.stats takes about a second to import

    ranks = rankdata(np.concatenate([s_out, s_in]), method="average")  # ties share their mean rank
    n_out, n_in = s_out.size, s_in.size
    u = ranks[:n_out].sum() - n_out * (n_out + 1) / 2
    return float(u / (n_out * n_in))


def average_precision(pos_scores, neg_scores) -> float:
    """Average precision of a score that should be higher for the positives.

    Thresholds are the distinct score values, highest first; at each, precision
    P_k = TP / (TP + FP) and recall R_k = TP / n_pos over everything scoring >= it,
    and AP = sum_k (R_k - R_{k-1}) P_k with R_0 = 0.
    """
    pos, neg = _as_scores(pos_scores, "positive"), _as_scores(neg_scores, "negative")
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_pos = scores[order], is_pos[order]
    # Index of the last element of each run of equal scores: one threshold per distinct value.
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = np.cumsum(is_pos)[last]
    seen = last + 1.0
    precision, recall = tp / seen, tp / pos.size
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def aupr(in_scores, ood_scores) -> float:
    """Area under the precision-recall curve with OOD positive ("AUPR-out"), as average precision."""
    return average_precision(ood_scores, in_scores)


def aupr_in(in_scores, ood_scores) -> float:
    """Average precision with the in-distribution set positive and the score negated ("AUPR-in")."""
    return average_precision(-np.asarray(in_scores, dtype=np.float64), -np.asarray(ood_scores, dtype=np.float64))


def fpr_at_tpr(in_scores, ood_scores, tpr: float = 0.95) -> float:
    """Share of OOD images accepted by the threshold that accepts ``tpr`` of the in-distribution images.

    The threshold t is the smallest in-distribution score with #{in <= t} >= tpr * n_in;
    an OOD image is accepted (a false positive) when its score is <= t, ties included.
    """
    if not 0.0 < tpr <= 1.0:
        raise InputError(f"tpr={tpr} must be in (0, 1]")
    s_in, s_out = _as_scores(in_scores, "in-distribution"), _as_scores(ood_scores, "OOD")
    k = max(1, math.ceil(tpr * s_in.size - 1e-9))  # accept at least k in-distribution images
    t = np.sort(s_in)[k - 1]
    return float(np.mean(s_out <= t))


def threshold_at_tpr(in_scores, tpr: float = 0.95) -> float:
    """The threshold of ``fpr_at_tpr``: scores above it are declared outliers."""
    s_in = _as_scores(in_scores, "in-distribution")
    k = max(1, math.ceil(tpr * s_in.size - 1e-9))
    return float(np.sort(s_in)[k - 1])


def detection_metrics(in_scores, ood_scores) -> dict[str, float]:
    """AUROC, AUPR (OOD positive), AUPR-in and FPR at 95% TPR of one score on one pair of sets.

    Returns:
        {"auroc", "aupr", "aupr_in", "fpr95", "n_in", "n_ood", "aupr_chance"}; aupr_chance
        is n_ood / (n_in + n_ood), the AUPR of a score that carries no information.
    """
    n_in, n_ood = np.asarray(in_scores).size, np.asarray(ood_scores).size
    return {"auroc": auroc(in_scores, ood_scores), "aupr": aupr(in_scores, ood_scores),
            "aupr_in": aupr_in(in_scores, ood_scores), "fpr95": fpr_at_tpr(in_scores, ood_scores, 0.95),
            "n_in": int(n_in), "n_ood": int(n_ood), "aupr_chance": n_ood / (n_in + n_ood)}
