"""Options shared by every evaluator, set from `genlab eval` flags."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalOptions:
    batch_size: int = 256  # examples per forward pass
    max_examples: int | None = None  # None: the whole test split
    split: str = "test"
    iwae_k: int = 1000  # importance samples per example for the IWAE bound (5000 as in Burda et al.)
    iwae_decodes: int = 4096  # images decoded per forward pass in the IWAE bound (bounds memory)
    seed: int = 0  # every stochastic estimate is seeded
    n_samples: int = 10000  # generated samples for sample-quality metrics
    inception_weights: str = ""  # Inception-v3 FID weights file; "" = domain feature networks only
    n_reference: int = 10000  # real images behind FID/KID/precision-recall reference statistics
    reference_split: str | None = None  # None: the evaluated split; "train": compare with training images
    cache_dir: str | None = None  # reference-statistics cache; None: $GENLAB_CACHE or ~/.cache/genlab
    data: object = None  # the run's DataConfig (set by evaluate_run; other splits are loaded with it)
    figure_dir: str | None = None  # where figures such as memorization.png go (set by evaluate_run)
