"""Outlier scores and surprise maps of the user's own images (computed here; `genlab score` in
``genlab.reports.ood`` draws the figures and writes scores.json).

Each file is brought to the model's format (``genlab.ood.images.read_user_image``:
16-bit /257, alpha over the dataset's background colour, ITU-R 601-2 luma or RGB,
centre crop, box shrink by whole factors then Lanczos, Bernoulli binarization for
binary models), scored like the test images of `genlab ood`, and drawn beside its
per-pixel surprise map.

When `genlab ood RUN_DIR` has been run, its ood.json and ood_scores.npz give the
settings to reuse (background run, IWAE samples, compressors), the typicality
reference H_hat, and the in-distribution test scores: each score then comes with
its percentile among the test images and the verdict at the threshold that keeps
95% of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.data import load_dataset
from genlab.data.base import to_model_input
from genlab.errors import InputError
from genlab.ood.images import (ImageReadError, background_of, describe_rule, image_backgrounds, read_user_levels,
                               to_model_bits)
from genlab.ood.run import IN_SET, read_ood_scores
from genlab.ood.scorer import ScorerOptions, load_scorer
from genlab.ood.scores import OOD_SCORES, Reference, available_scores, compute_scores
from genlab.rng import sample_seed
from genlab.train.distributed import resolve_device
from genlab.train.run import read_config, read_run_json, read_spec


def _test_background(run_dir: Path, data_root: str | None) -> str:
    cfg = read_config(run_dir)
    if data_root:
        cfg.data.root = data_root
    return background_of(load_dataset(cfg.data.name, "test", cfg.data))


@dataclass
class SurpriseMap:
    """What the surprise figure of one image shows: the image as the model sees it and its per-pixel map."""
    image: torch.Tensor  # (C, H, W) floats in [0, 1]
    pixel_map: torch.Tensor  # (H, W) nats
    map_label: str  # what the map is
    title: str


def score_user_images(run_dir: str | Path, images: list[str | Path], background: str | Path | None = None,
                      alpha_over: str = "auto", iwae_k: int | None = None, seed: int = 0, device: str = "auto",
                      data_root: str | None = None, use_ema: bool = True,
                      log=print) -> tuple[dict, list[SurpriseMap]]:
    """Score image files with a run (computation only: nothing is written).

    Args:
        run_dir: a run folder of a model with a likelihood.
        images: PNG/JPEG/... files of any size and mode.
        background: run folder of a background model for the likelihood ratio (default: the one
            RUN_DIR/ood.json used, if any).
        alpha_over: "black", "white" or "auto" (the border colour of the run's test images).
        iwae_k: importance samples for a VAE's bound (default: ood.json's, else 100).
        seed: seeds the importance samples and, for binary models, the binarization.
    Returns:
        (the summary of scores.json, whose "images" hold one dict per image: path, scores {name: {value,
        percentile, outlier}}, background; one ``SurpriseMap`` per image, in the same order).
    Raises:
        ImageReadError: a file cannot be read (the message names it); nothing is scored then.
    """
    run_dir = Path(run_dir)
    read_config(run_dir)  # a clear error when RUN_DIR is not a run folder
    paths = [Path(p) for p in images]
    if not paths:
        raise InputError("give at least one image file")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ImageReadError(f"cannot read image {missing[0]}: no such file" +
                             (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""))
    ood_path = run_dir / "ood.json"
    prior = read_run_json(ood_path) if ood_path.exists() else None
    if background is None and prior and prior.get("background"):
        background = prior["background"]["dir"]
    protocol = (prior or {}).get("protocol", {})
    k = iwae_k if iwae_k is not None else protocol.get("iwae_k") or 100
    if prior and protocol.get("iwae_k") and k != protocol["iwae_k"]:
        log(f"note: --iwae-k {k} differs from the k={protocol['iwae_k']} of ood.json; percentiles compare "
            "bounds of different tightness")
    compressors = tuple(protocol.get("compressors") or ("png", "zlib"))
    # Read every image before loading the model, so a bad file fails fast.
    spec = read_spec(run_dir)
    data_background = protocol.get("background_colour") or _test_background(run_dir, data_root)
    if alpha_over == "auto":
        alpha_over = data_background
    rule = describe_rule(spec, alpha_over, seed)
    raw = torch.stack([read_user_levels(p, spec, alpha_over) for p in paths])  # (N, C, H, W) 0..255
    backgrounds = image_backgrounds(raw)
    for path, (colour, level) in zip(paths, backgrounds):
        if colour != data_background:
            log(f"warning: {path} has a {colour} background (median border level {level}) where the run's "
                f"images have a {data_background} one: an image of reversed polarity is an outlier trivially; "
                "invert it to score its shape")
    levels = torch.stack([to_model_bits(r, spec, sample_seed(seed, i)) for i, r in enumerate(raw)])
    transform = "binary" if spec.bits == 1 else "scale"
    dev = resolve_device(device)
    scorer = load_scorer(run_dir, background, ScorerOptions(batch_size=64, iwae_k=k,
                                                            compressors=compressors, seed=seed),
                         dev, use_ema, data_root)
    log(f"{scorer.run.cfg.model_name} on {scorer.run.cfg.data.name}: {scorer.lik.describe()}")
    log(f"conversion: {rule}")
    terms = scorer.terms(levels, transform, stream=0)
    ref = None
    if protocol.get("reference"):
        r = protocol["reference"]
        ref = Reference(r["mean_bpd"], r["n"], r["protocol"])
    names = available_scores(scorer.background is not None, ref is not None)
    scores = compute_scores(terms, ref, names)
    in_scores = read_ood_scores(run_dir) if prior else {}
    thresholds = {n: v.get("threshold_tpr95") for n, v in (prior or {}).get("in_distribution", {})
                  .get("summary", {}).items()}
    maps = scorer.pixel_nll(levels, transform)
    results, figures = [], []
    for i, path in enumerate(paths):
        entry = {"path": str(path), "scores": {}, "background": backgrounds[i][0],
                 "reversed_polarity": backgrounds[i][0] != data_background}
        for n in names:
            value = float(scores[n][i])
            rec = {"value": value, "unit": "bits/dim"}
            ref_scores = in_scores.get(f"{IN_SET}/{n}")
            if ref_scores is not None:
                rec["percentile"] = float(100.0 * np.mean(ref_scores < value))
            if thresholds.get(n) is not None:
                rec["outlier_at_tpr95"] = bool(value > thresholds[n])
            entry["scores"][n] = rec
        figures.append(SurpriseMap(to_model_input(levels[i], transform), maps[i], scorer.lik.pixel_map_name,
                                   f"{path.name}: {terms.bpd[i]:.3f} bits/dim [{scorer.lik.kind}] under "
                                   f"{scorer.run.cfg.model_name}/{scorer.run.cfg.data.name}"))
        results.append(entry)
    summary = {"run": str(run_dir), "likelihood": scorer.lik.describe(), "likelihood_kind": scorer.lik.kind,
               "background": None if scorer.background is None else str(scorer.background.run_dir),
               "conversion": rule, "surprise_map": scorer.lik.pixel_map_name,
               "data_background": data_background,
               "iwae_k": k if scorer.run.model.card.family == "latent" and scorer.lik.kind == "bound" else None,
               "seed": seed,
               "scores": {n: OOD_SCORES.get(n).label for n in names},
               "percentiles": ("% of the in-distribution test images of `genlab ood` with a lower score"
                               if in_scores else "run `genlab ood RUN_DIR` for percentiles, thresholds and "
                               "the typicality score"),
               "images": results}
    return summary, figures
