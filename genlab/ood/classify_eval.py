"""`genlab classify RUN... --evaluate`: the generative classifier against the discriminative baseline.

Protocol (also written into classify.json):

* The run's test split (restricted to the classes the runs model) is shuffled with the seed and cut into
  two disjoint parts: ``n_fit`` held-out images on which both reject thresholds are fitted at the stated
  false-rejection rate, and ``max_examples`` images on which every number is measured.
* In-distribution numbers: accuracy (argmax p(y | x), with the standard error of the mean), expected
  calibration error (15 equal-width bins) and the reliability diagram, the risk-coverage curve and its
  area (AURC, ranking by max_y p(y | x)), and the share of evaluated images each fitted rule rejects.
* Outlier sets (each converted to the run's format as `genlab ood` converts them; "noise" is i.i.d.
  uniform levels 0..255, then the model's bits): AUROC and FPR at 95 % TPR of the outlier score and of the
  ambiguity score against the evaluated test images (``genlab.ood.metrics``), and the share of outliers
  each fitted rule rejects.
* Baseline: the shipped LeNet of the dataset (``genlab/eval/feature_nets``), shown the same images as
  the model (binary models: the same 0/1 pixels), with Chow's rule on its softmax confidence fitted on the
  same held-out images at the same rate. It has no outlier rule of its own: its confidence is its only score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.config import bounded, check_fields, seed_field
from genlab.data import load_dataset
from genlab.data.base import ImageSet, to_model_input
from genlab.errors import InputError
from genlab.eval.feature_nets import FEATURE_NET_OF_DATASET
from genlab.eval.features import extract, load_feature_net
from genlab.ood.calibration import aurc, expected_calibration_error, reliability_bins, risk_coverage
from genlab.ood.classifier import (ClassLikelihood, RejectRules, Scored, ambiguity_score, check_outlier_score, decide,
                                   fit_reject_rules, outlier_scores, score_levels)
from genlab.ood.images import (background_of, convert_imageset, describe_rule, image_backgrounds, read_user_levels,
                               to_model_bits)
from genlab.ood.likelihood import LikelihoodOptions
from genlab.ood.metrics import detection_metrics, threshold_at_tpr
from genlab.ood.run import fixed_levels
from genlab.ood.scores import available_scores
from genlab.registry import DATASETS
from genlab.rng import sample_seed
from genlab.stats import standard_error
from genlab.train.distributed import resolve_device
from genlab.train.run import LoadedRun, load_run

NOISE = "noise"  # an outlier set that is no dataset: i.i.d. uniform levels


@dataclass
class ClassifyOptions:
    ood: tuple[str, ...] = ("fashion-mnist", "mnist-inverted", NOISE)  # outlier sets: dataset names or "noise"
    false_rejection: float = bounded(0.05, gt=0.0, lt=1.0)  # share of held-out test images each rule rejects
    # The outlier rule's score of the marginal p(x) (genlab.ood.scores). Typicality is two-sided: it flags images
    # that are too likely (the failure of the raw likelihood) and too unlikely. On binarized MNIST it separated
    # Fashion-MNIST, inverted MNIST and noise best (README, "A classifier that can say none of these").
    outlier_score: str = "typicality"
    n_fit: int = bounded(1000, ge=2)  # held-out test images the thresholds are fitted on
    max_examples: int = bounded(1000, ge=2)  # evaluated test images (disjoint from those); also per outlier set
    batch_size: int = bounded(32, ge=1)  # images per pass (a conditional autoregressive run takes K times as many)
    iwae_k: int = bounded(100, ge=1)  # importance samples of a VAE's bound (per-class VAE runs)
    bins: int = bounded(15, ge=1)  # equal-width confidence bins of the ECE (Guo et al. 2017)
    baseline: bool = True  # also evaluate the dataset's shipped LeNet with a softmax-confidence threshold
    seed: int = seed_field(0)
    device: str = "auto"
    data_root: str | None = None
    use_ema: bool = True

    def validate(self):
        check_fields(self)
        check_outlier_score(self.outlier_score)
        for name in self.ood:
            if name != NOISE and name not in DATASETS:
                raise InputError(f"unknown outlier set {name!r}: give a dataset ({', '.join(DATASETS.names())}) "
                                 f"or {NOISE!r}")


def load_runs(run_dirs, device, use_ema: bool = True, data_root: str | None = None) -> list[LoadedRun]:
    return [load_run(d, device, use_ema=use_ema, data_root=data_root) for d in run_dirs]


def test_split(lik: ClassLikelihood) -> ImageSet:
    """The test split of the runs' dataset, unfiltered by a per-class run's data.classes, restricted to the
    classes the classifier knows."""
    cfg = lik.runs[0].cfg.data
    test = load_dataset(cfg.name, "test", cfg)
    if test.labels is None:
        raise InputError(f"{cfg.name} has no labels: a classifier is evaluated on a labelled test split")
    return test.select_classes(lik.labels.tolist())


def fit_split(n: int, n_fit: int, n_eval: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint seeded random (fit, evaluation) indices of a split of n images."""
    if n_fit + n_eval > n:
        raise InputError(f"the split has {n} images: n_fit ({n_fit}) + max_examples ({n_eval}) must not exceed it")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(sample_seed(seed, 17)))
    return perm[:n_fit], perm[n_fit:n_fit + n_eval]


def noise_levels(n: int, lik: ClassLikelihood, seed: int) -> torch.Tensor:
    """n images of i.i.d. uniform levels 0..255 in the model's format (binary models: one Bernoulli draw)."""
    s = lik.spec
    levels = torch.randint(0, 256, (n, s.channels, s.height, s.width), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(sample_seed(seed, 23)))
    return to_model_bits(levels, s, sample_seed(seed, 29))


def _rate(flags) -> dict:
    flags = np.asarray(flags, dtype=np.float64)
    return {"value": float(flags.mean()), "stderr": standard_error(flags), "n": int(flags.size)}


def _selective(score: np.ndarray, confidence: np.ndarray, correct: np.ndarray, bins: int) -> dict:
    """Accuracy, ECE, reliability bins and risk-coverage of one classifier on the evaluated images."""
    coverage, risk = risk_coverage(score, correct)
    return {"accuracy": _rate(correct), "ece": expected_calibration_error(confidence, correct, bins),
            "aurc": aurc(score, correct), "reliability": {k: v.tolist() for k, v in
                                                          reliability_bins(confidence, correct, bins).items()},
            "risk_coverage": {"coverage": coverage.tolist(), "risk": risk.tolist()}}


def _baseline(net, levels: dict[str, torch.Tensor], transform: str, labels: torch.Tensor, y: np.ndarray,
              rate: float, bins: int, outlier_sets: list[str]) -> dict:
    """The LeNet's softmax over the classifier's labels, with Chow's rule fitted on the "fit" images."""
    amb = {}
    for key, lv in levels.items():
        logits = extract(net, to_model_input(lv, transform)).logits[:, labels]
        log_post = torch.log_softmax(logits.double(), dim=1)
        amb[key] = (ambiguity_score(log_post).numpy(), log_post.max(1).values.exp().numpy(),
                    labels[log_post.argmax(1)].numpy())
    threshold = threshold_at_tpr(amb["fit"][0], 1.0 - rate)
    score, conf, pred = amb["eval"]
    correct = pred == y
    out = {"name": net.name, "test_accuracy_shipped": net.test_accuracy, "chow_t": float(np.exp(threshold)),
           **_selective(-score, conf, correct, bins),
           "rejected_in_distribution": _rate(score > threshold), "ood": {}}
    for name in outlier_sets:
        o = amb[name][0]
        out["ood"][name] = {"ambiguity": detection_metrics(score, o), "rejected": _rate(o > threshold)}
    return out


def evaluate_classifier(run_dirs, opts: ClassifyOptions, log=print) -> tuple[dict, dict]:
    """Fit the reject rules and measure the classifier and the baseline (nothing is written).

    Returns:
        (the result written as classify.json by ``genlab.reports.classify``, {"key", "rules"}: the fitted
        rules as classify_rules.json stores them).
    """
    opts.validate()
    began = time.perf_counter()
    dev = resolve_device(opts.device)
    lik = ClassLikelihood(load_runs(run_dirs, dev, opts.use_ema, opts.data_root), LikelihoodOptions(opts.iwae_k))
    log(f"classifier: {lik.describe()}")
    test = test_split(lik)
    fit_idx, eval_idx = fit_split(len(test), opts.n_fit, opts.max_examples, opts.seed)
    background = background_of(test)
    levels, notes = {}, {}
    levels["fit"], transform = fixed_levels(test.take(fit_idx), opts.seed)
    levels["eval"], _ = fixed_levels(test.take(eval_idx), opts.seed)
    y = test.labels[eval_idx].numpy()
    for k, name in enumerate(opts.ood):
        if name == NOISE:
            levels[name] = noise_levels(opts.max_examples, lik, opts.seed)
            notes[name] = f"{opts.max_examples} images of i.i.d. uniform levels 0..255 (seed {opts.seed})" + (
                f", binarized by one Bernoulli(k/255) draw per pixel" if lik.spec.bits == 1 else "")
            continue
        data = load_dataset(name, "test", lik.runs[0].cfg.data)
        picked = data.take(fit_split(len(data), 0, min(opts.max_examples, len(data)), sample_seed(opts.seed, k))[1])
        converted, notes[name] = convert_imageset(picked, lik.spec, background, seed=opts.seed)
        levels[name], _ = fixed_levels(converted, opts.seed)  # the model's transform, as the test images

    scored: dict[str, Scored] = {}
    for stream, (key, lv) in enumerate(levels.items()):
        t0 = time.perf_counter()
        log(f"  {key}: {lv.shape[0]} images x {lik.labels.numel()} labels ...")
        g = torch.Generator(device=dev).manual_seed(sample_seed(opts.seed, 100 + stream))
        scored[key] = score_levels(lik, lv, transform, opts.batch_size, g, log=log)
        log(f"    {time.perf_counter() - t0:.1f} s")

    fitted_on = (f"{opts.n_fit} random {test.name}/test images (seed {opts.seed}), disjoint from the "
                 f"{opts.max_examples} evaluated ones")
    rules = fit_reject_rules(scored["fit"], opts.false_rejection, opts.outlier_score, fitted_on)
    ev = scored["eval"]
    verdict = decide(ev, rules, lik.labels)
    correct = verdict["label"] == y
    names = available_scores(False, True)
    in_scores = outlier_scores(ev, rules.reference, names)
    generative = {"likelihood": lik.describe(), "kind": lik.kind,
                  **_selective(-ev.ambiguity, ev.confidence, correct, opts.bins),
                  "rejected_in_distribution": {"ambiguity": _rate(verdict["ambiguous"]),
                                               "outlier": _rate(verdict["outlier"]),
                                               "either": _rate(~verdict["accepted"])},
                  "accuracy_of_accepted": _rate(correct[verdict["accepted"]]) if verdict["accepted"].any() else None,
                  "ood": {}}
    # Every score's own threshold at the same rate, so the choice of --outlier-score can be made from one run.
    fit_scores = outlier_scores(scored["fit"], rules.reference, names)
    thresholds = {n: threshold_at_tpr(fit_scores[n], 1.0 - opts.false_rejection) for n in names}
    generative["rejected_in_distribution"]["by_score"] = {n: _rate(in_scores[n] > thresholds[n]) for n in names}
    for name in opts.ood:
        o = scored[name]
        v = decide(o, rules, lik.labels)
        o_scores = outlier_scores(o, rules.reference, names)
        generative["ood"][name] = {
            "note": notes[name], "n": int(o.log_px.numel()),
            "outlier": {n: detection_metrics(in_scores[n], o_scores[n]) for n in names},
            "ambiguity": detection_metrics(ev.ambiguity, o.ambiguity),
            "rejected": {"ambiguity": _rate(v["ambiguous"]), "outlier": _rate(v["outlier"]),
                         "either": _rate(~v["accepted"]),
                         "by_score": {n: _rate(o_scores[n] > thresholds[n]) for n in names}},
            "mean_confidence": float(v["confidence"].mean())}
    result = {"runs": [str(r.run_dir) for r in lik.runs], "labels": lik.labels.tolist(),
              "protocol": _protocol(opts, test, fitted_on, str(dev)), "rules": rules.to_dict(),
              "generative": generative, "baseline": None}
    net_name = FEATURE_NET_OF_DATASET.get(test.name)
    if opts.baseline and net_name and lik.spec.channels == 1 and (lik.spec.height, lik.spec.width) == (28, 28):
        log(f"  baseline {net_name} ...")
        net = load_feature_net(net_name, device=dev)
        result["baseline"] = _baseline(net, levels, transform, lik.labels, y, opts.false_rejection, opts.bins,
                                       list(opts.ood))
    elif opts.baseline:
        log(f"  no shipped LeNet reads {test.name} images: no baseline")
    result["seconds"] = time.perf_counter() - began
    return result, {"key": rules_key(lik, opts), "rules": rules.to_dict()}


def _protocol(opts: ClassifyOptions, test: ImageSet, fitted_on: str, device: str) -> dict:
    return {"seed": opts.seed, "device": device, "false_rejection": opts.false_rejection,
            "outlier_score": opts.outlier_score, "n_fit": opts.n_fit, "max_examples": opts.max_examples,
            "ece_bins": opts.bins, "test": f"{test.name}/test ({len(test)} images of the classifier's classes)",
            "fitted_on": fitted_on,
            "text": (f"thresholds of both reject rules fitted on {fitted_on} to reject at most "
                     f"{100 * opts.false_rejection:g} % of them each; accuracy, ECE ({opts.bins} equal-width bins), "
                     f"AURC (ranked by max_y p(y|x)) and rejection rates on the {opts.max_examples} evaluated test "
                     f"images; outlier AUROC / FPR at 95 % TPR against up to {opts.max_examples} images per "
                     f"outlier set, OOD positive; the baseline sees the same images")}


def rules_key(lik: ClassLikelihood, opts: ClassifyOptions) -> dict:
    """What fitted thresholds depend on: a stored fit is reused only when all of it is equal."""
    return {"runs": [str(r.run_dir) for r in lik.runs], "steps": [r.step for r in lik.runs],
            "weights": ["ema" if r.used_ema else "raw" for r in lik.runs], "false_rejection": opts.false_rejection,
            "outlier_score": opts.outlier_score, "n_fit": opts.n_fit, "seed": opts.seed}


def fit_rules(lik: ClassLikelihood, opts: ClassifyOptions, log=print) -> RejectRules:
    """Fit both rules on the held-out images `--evaluate` fits them on (the same seeded test images)."""
    test = test_split(lik)
    fit_idx, _ = fit_split(len(test), opts.n_fit, 0, opts.seed)
    levels, transform = fixed_levels(test.take(fit_idx), opts.seed)
    log(f"fitting the reject thresholds on {len(fit_idx)} held-out {test.name}/test images ...")
    g = torch.Generator(device=lik.device).manual_seed(sample_seed(opts.seed, 100))
    scored = score_levels(lik, levels, transform, opts.batch_size, g, log=log)
    return fit_reject_rules(scored, opts.false_rejection, opts.outlier_score,
                            f"{opts.n_fit} random {test.name}/test images (seed {opts.seed})")


def classify_files(run_dirs, images, opts: ClassifyOptions, stored: dict | None = None, alpha_over: str = "auto",
                   log=print) -> tuple[dict, dict]:
    """Classify image files, each converted by `genlab score`'s rule (``genlab.ood.images``).

    Args:
        stored: a previous {"key", "rules"} (classify_rules.json); reused when its key matches, else the
            rules are fitted now (``fit_rules``).
        alpha_over: "black", "white" or "auto" (the border colour of the test images).
    Returns:
        (the summary: conversion rule, rules, one dict per image with label, posterior, verdict and reason;
        {"key", "rules"} to store for the next call).
    """
    paths = [Path(p) for p in images]
    if not paths:
        raise InputError("give at least one image file to classify (or --evaluate)")
    opts.validate()
    dev = resolve_device(opts.device)
    lik = ClassLikelihood(load_runs(run_dirs, dev, opts.use_ema, opts.data_root), LikelihoodOptions(opts.iwae_k))
    spec = lik.spec
    data_background = background_of(test_split(lik))
    alpha = data_background if alpha_over == "auto" else alpha_over
    raw = torch.stack([read_user_levels(p, spec, alpha) for p in paths])  # (N, C, H, W) 0..255
    levels = torch.stack([to_model_bits(r, spec, sample_seed(opts.seed, i)) for i, r in enumerate(raw)])
    key = rules_key(lik, opts)
    if stored and stored.get("key") == key:
        rules = RejectRules.from_dict(stored["rules"])
    else:
        rules = fit_rules(lik, opts, log)
    log(f"classifier: {lik.describe()}")
    g = torch.Generator(device=dev).manual_seed(sample_seed(opts.seed, 7))
    scored = score_levels(lik, levels, "binary" if spec.bits == 1 else "scale", opts.batch_size, g)
    v = decide(scored, rules, lik.labels)
    post = scored.log_post.exp()
    results = []
    for i, (path, (colour, _)) in enumerate(zip(paths, image_backgrounds(raw))):
        reasons = [r for r, flag in (("outlier", v["outlier"][i]), ("ambiguous", v["ambiguous"][i])) if flag]
        results.append({"path": str(path), "label": int(v["label"][i]), "posterior": float(v["confidence"][i]),
                        "posteriors": {int(c): float(p) for c, p in zip(lik.labels, post[i])},
                        "log_px_nats": float(scored.log_px[i]), rules.outlier_score: float(v["outlier_value"][i]),
                        "accepted": bool(v["accepted"][i]), "reasons": reasons,
                        "reversed_polarity": colour != data_background})
    summary = {"runs": key["runs"], "likelihood": lik.describe(), "kind": lik.kind,
               "conversion": describe_rule(spec, alpha, opts.seed), "rules": rules.to_dict(), "images": results}
    return summary, {"key": key, "rules": rules.to_dict()}
