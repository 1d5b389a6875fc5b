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
