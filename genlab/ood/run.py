"""`genlab ood RUN_DIR --ood NAME ...`: how well a run's likelihood separates its test set from other data.

For the run's own test split (in-distribution) and the test split of each named
dataset (out-of-distribution, converted to the run's format by
``genlab.ood.images.convert_imageset``), every image gets the per-image terms of
``OutlierScorer`` and every available score of ``genlab.ood.scores``. Each score is
summarized by AUROC, AUPR and FPR at 95% TPR per OOD set (``genlab.ood.metrics``),
and the typicality test is also run on batches of M images. Writes:

* RUN_DIR/ood.json: the protocol, the per-set summaries and the metrics;
* RUN_DIR/ood_scores.npz: every per-image score (arrays "<set>/<score>" and "<set>/index",
  the image indices in their split), read back by `genlab score` for percentiles;
and returns the per-set images and scores from which ``genlab.reports.ood`` (the `genlab ood` command)
draws RUN_DIR/ood_report.md and .html with figures in RUN_DIR/figures/ood/.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genlab.config import bounded, check_fields, seed_field
from genlab.data import load_dataset
from genlab.data.base import ImageSet
from genlab.data.dynamic import binarize_once
from genlab.errors import InputError
from genlab.ood.compress import COMPRESSORS
from genlab.ood.images import background_of, convert_imageset, image_backgrounds, is_outlier_path, read_outlier_set
from genlab.ood.metrics import detection_metrics, threshold_at_tpr
from genlab.ood.scorer import ScorerOptions, load_scorer
from genlab.ood.scores import OOD_SCORES, Reference, available_scores, batch_typicality, compute_scores
from genlab.registry import DATASETS
from genlab.rng import random_subset, sample_seed
from genlab.train.checkpoint import write_text_atomic
from genlab.train.distributed import resolve_device

IN_SET = "in-distribution"


@dataclass
class OODOptions:
    ood: list[str] = field(default_factory=list)  # OOD dataset names (`genlab data list`) or paths (folder/.npz/IDX)
    background: str | None = None  # run folder of a background model, for the likelihood ratio
    max_examples: int | None = bounded(None, ge=2)  # per set: a seeded random subset of this many images; None: all
    reference_examples: int = bounded(2000, ge=1)  # training images for the typicality test's H_hat
    typicality_m: int = bounded(10, ge=1)  # images per batch of the batch typicality test
    batch_size: int = bounded(256, ge=1)
    iwae_k: int = bounded(100, ge=1)
    iwae_chunk: int = bounded(100, ge=1)
    compressors: tuple[str, ...] = COMPRESSORS
    seed: int = seed_field(0)
    device: str = "auto"
    data_root: str | None = None
    use_ema: bool = True
    report: bool = True  # write ood_report.md/.html and figures

    def validate(self):
        if not self.ood:
            raise InputError("name at least one OOD dataset: --ood NAME (`genlab data list` lists them)")
        for name in self.ood:
            if name not in DATASETS and not is_outlier_path(name):
                raise InputError(f"unknown OOD dataset {name!r}: give a dataset ({', '.join(DATASETS.names())}) or "
                                 "an existing image folder, .npz or IDX file")
        check_fields(self)
        for c in self.compressors:
            if c not in COMPRESSORS:
                raise InputError(f"unknown compressor {c!r}; choose from {', '.join(COMPRESSORS)}")


def fixed_levels(data: ImageSet, seed: int) -> tuple[torch.Tensor, str]:
    """The set's images as the model sees them, as fixed uint8 levels and "binary" | "scale".

    A split binarized on the fly ("bernoulli") is binarized once, Bernoulli(k/255) with ``seed``.
    """
    if data.transform == "bernoulli":
        return binarize_once(data.images, seed), "binary"
    return data.images, data.transform


def subset(n: int, max_examples: int | None, seed: int) -> torch.Tensor:
    """All indices, or a seeded random subset (never a prefix: some test files are sorted by class)."""
    if max_examples is None or max_examples >= n:
        return torch.arange(n)
    return random_subset(n, max_examples, seed).sort().values


def _summary(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "std": float(values.std()), "median": float(np.median(values)),
            "min": float(values.min()), "max": float(values.max())}


def score_ood(run_dir: str | Path, opts: OODOptions, log=print) -> tuple[dict, dict[str, dict]]:
    """Score the run's test set and each OOD set; write ood.json and ood_scores.npz (no report).

    Args:
        run_dir: a run folder of a model with a likelihood (`genlab.ood.likelihood.FAMILY_LIKELIHOODS`).
        opts: which OOD sets, the background run, subset sizes, IWAE samples, seed, device...
        log: where progress lines go.
    Returns:
        (the dict written to RUN_DIR/ood.json, the scored sets: set name -> {"index", "levels" (uint8
        images as the model sees them), "transform", "terms", "scores" {score: (N,)}, "note", ...}).
    """
    opts.validate()
    began = time.perf_counter()
    run_dir = Path(run_dir)
    dev = resolve_device(opts.device)
    sopts = ScorerOptions(opts.batch_size, opts.iwae_k, opts.iwae_chunk, tuple(opts.compressors), opts.seed)
    scorer = load_scorer(run_dir, opts.background, sopts, dev, opts.use_ema, opts.data_root)
    run, spec = scorer.run, scorer.spec
    log(f"{run.cfg.model_name} on {run.cfg.data.name}: {scorer.lik.describe()}")

    test = run.dataset("test")
    background = background_of(test)
    sets: dict[str, dict] = {}

    def score_set(key: str, data: ImageSet, stream: int):
        index = subset(len(data), opts.max_examples, sample_seed(opts.seed, 1000 + stream))
        picked = data.take(index)
        reversed_share = None
        if key == IN_SET:
            note = data.note or f"{data.name}/test as the run sees it"
        else:  # only the chosen images are converted
            src = picked.images * 255 if picked.transform == "binary" else picked.images
            picked, note = convert_imageset(picked, spec, background, seed=opts.seed)
            if key not in DATASETS:  # a user's set (read_outlier_set): say where it came from
                note = f"{data.note}; then {note}"
            reversed_share = float(np.mean([bg != background for bg, _ in image_backgrounds(src)]))
            if reversed_share > 0.5:
                log(f"  warning: most {key} images have a {'white' if background == 'black' else 'black'} "
                    f"background where the run's images have a {background} one (reversed polarity): such "
                    "images are flagged trivially")
        levels, transform = fixed_levels(picked, opts.seed)
        t0 = time.perf_counter()
        log(f"  scoring {len(index)} images of {data.name}/{data.split} ...")
        terms = scorer.terms(levels, transform, stream, log=log)
        log(f"    {time.perf_counter() - t0:.1f} s; mean {terms.bpd.mean():.4f} bits/dim")
        sets[key] = {"index": index, "levels": levels, "transform": transform, "terms": terms, "note": note,
                     "n_split": len(data), "reversed_polarity": reversed_share}

    score_set(IN_SET, test, 0)
    for k, name in enumerate(opts.ood, start=1):
        data = (load_dataset(name, "test", dataclasses.replace(run.cfg.data, name=name)) if name in DATASETS
                else read_outlier_set(name, spec, background))
        score_set(name, data, k)

    # H_hat for the typicality test, from training images (not the test set the metrics use).
    train = run.dataset("train")
    ref_index = subset(len(train), opts.reference_examples, sample_seed(opts.seed, 999))
    ref_levels, ref_transform = fixed_levels(train.take(ref_index), opts.seed)
    log(f"  reference: {len(ref_index)} training images for H_hat ...")
    ref_terms = scorer.terms(ref_levels, ref_transform, stream=999, background=False)
    ref = Reference(float(ref_terms.bpd.mean()), len(ref_index),
                    f"mean bpd of a seeded random subset of {len(ref_index)} of the {len(train)} "
                    f"{train.name}/train images (seed {opts.seed})")

    names = available_scores(scorer.background is not None, True)
    for s in sets.values():
        s["scores"] = compute_scores(s["terms"], ref, names)
    in_scores = sets[IN_SET]["scores"]

    result = {
        **scorer.describe(),
        "protocol": {
            "seed": opts.seed, "max_examples": opts.max_examples, "batch_size": opts.batch_size,
            "iwae_k": opts.iwae_k if scorer.lik.kind == "bound" else None,
            "compressors": list(opts.compressors), "dims": spec.dims, "bits": spec.bits,
            "background_colour": background, "reference": dataclasses.asdict(ref),
            "typicality_m": opts.typicality_m, "device": str(dev),
            "subset": ("all test images" if opts.max_examples is None else
                       f"a seeded random subset of at most {opts.max_examples} test images per set"),
            "convention": "every score is higher for more outlying images; OOD is the positive class of "
                          "AUROC and AUPR; FPR95 is the share of OOD images below the threshold that keeps "
                          "95% of the in-distribution test images",
        },
        "scores": {n: {"label": OOD_SCORES.get(n).label, "paper": OOD_SCORES.get(n).paper, "unit": "bits/dim"}
                   for n in names},
        "in_distribution": {
            "name": test.name, "split": "test", "n": len(sets[IN_SET]["index"]), "n_split": len(test),
            "note": sets[IN_SET]["note"],
            "summary": {n: {**_summary(v), "threshold_tpr95": threshold_at_tpr(v, 0.95)} for n, v in in_scores.items()},
        },
        "ood": {},
    }
    for name in opts.ood:
        s = sets[name]
        metrics = {n: detection_metrics(in_scores[n], s["scores"][n]) for n in names}
        result["ood"][name] = {
            "n": len(s["index"]), "n_split": s["n_split"], "note": s["note"],
            # share of images whose border colour is the opposite of the run's test images'
            "reversed_polarity": s["reversed_polarity"],
            "summary": {n: _summary(v) for n, v in s["scores"].items()},
            "metrics": metrics,
            "typicality_batches": batch_typicality(sets[IN_SET]["terms"].bpd, s["terms"].bpd, ref.mean_bpd,
                                                   opts.typicality_m, opts.seed),
        }
        log(f"  {name}: " + ", ".join(f"{n} AUROC {m['auroc']:.3f}" for n, m in metrics.items()))
    result["seconds"] = time.perf_counter() - began

    write_text_atomic(run_dir / "ood.json", json.dumps(result, indent=1) + "\n")
    arrays = {}
    for key, s in sets.items():
        arrays[f"{key}/index"] = s["index"].numpy()
        for n, v in s["scores"].items():
            arrays[f"{key}/{n}"] = v
    np.savez(run_dir / "ood_scores.npz", **arrays)
    return result, sets


def read_ood_scores(run_dir: str | Path) -> dict[str, np.ndarray]:
    """RUN_DIR/ood_scores.npz as a dict (plain arrays, no pickles); {} when absent."""
    path = Path(run_dir) / "ood_scores.npz"
    if not path.exists():
        return {}
    try:  # allow_pickle=False: object arrays (pickles) are refused, never unpickled
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as err:  # not an .npz, a pickle, a damaged zip...: one line, not numpy's traceback
        reason = " ".join(str(err).split()) or type(err).__name__
        raise InputError(f"{path} is not a valid ood_scores.npz of plain arrays ({type(err).__name__}: {reason}); "
                         f"delete it and rerun `genlab ood {run_dir}`") from None
