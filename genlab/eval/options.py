"""Options shared by every evaluator, set from `genlab eval` flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from genlab.config import bounded, check_fields, seed_field


@dataclass
class EvalOptions:
    batch_size: int = bounded(256, ge=1)  # examples per forward pass
    max_examples: int | None = bounded(None, ge=1)  # None: the whole test split
    split: str = "test"
    iwae_k: int = bounded(1000, ge=1)  # importance samples per example for the IWAE bound (5000 as in Burda et al.)
    iwae_decodes: int = bounded(4096, ge=1)  # images decoded per forward pass in the IWAE bound (bounds memory)
    seed: int = seed_field(0)  # every stochastic estimate is seeded
    n_samples: int = bounded(10000, ge=1)  # generated samples for sample-quality metrics
    sample_output: Literal["sample", "mean"] = "sample"  # latent models: "sample" draws x ~ p(x|z); "mean" takes E[x|z] (named in protocols)
    inception_weights: str = ""  # Inception-v3 FID weights file; "" = domain feature networks only
    inception_unverified: bool = False  # accept weights whose sha256 is not the official file's (tensors only)
    n_reference: int = bounded(10000, ge=1)  # real images behind FID/KID/precision-recall reference statistics
    reference_split: str | None = None  # None: the evaluated split; "train": compare with training images
    cache_dir: str | None = None  # reference-statistics cache; None: $GENLAB_CACHE or ~/.cache/genlab
    data: object = None  # the run's DataConfig (set by evaluate_run; other splits are loaded with it)
    figure_dir: str | None = None  # where figures such as memorization.png go (set by evaluate_run)

    def __post_init__(self):
        check_fields(self)
