"""Options shared by every evaluator, set from `genlab eval` flags, and the named protocols that fill them.

A protocol names the sizes of an evaluation: `quick` (the default) finishes in minutes
on a 2-core CPU for every preset-size model; `paper` is the protocol of the published
numbers. A field given explicitly (a flag) overrides the protocol's value, and eval.json
states the protocol name with the values actually used, so a quick number is never
mistaken for a paper one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from genlab.config import bounded, check_fields, seed_field
from genlab.errors import InputError

# The sizes each protocol sets; every other option keeps its default.
PROTOCOLS: dict[str, dict] = {
    # About 1-3 minutes on 2 CPU cores for each preset-size model (README, "Evaluation protocols").
    # Iterative samplers (those with a ``steps`` option: diffusion) take 10 steps instead of their card's
    # default (DDIM 50): 1,000 samples at NFE 50 took about 10 minutes on 2 CPU cores, at NFE 10 about 2.
    "quick": {"iwae_k": 100, "max_examples": 1000, "n_samples": 1000, "n_reference": 10000, "sampler_steps": 10},
    # Burda et al. 2016 (IWAE k=5000 on the whole test set); 10,000 samples as in the FID literature;
    # exact NLL of autoregressive models on the whole test set (van den Oord et al. 2016).
    "paper": {"iwae_k": 5000, "max_examples": None, "n_samples": 10000, "n_reference": 10000, "sampler_steps": None},
}

# Evaluators costing many network passes per image (diffusion likelihoods: T passes for the bound, about
# 100 forward and backward passes for the ODE) evaluate at most this many images under `quick`.
QUICK_IMAGE_CAPS: dict[str, int] = {"diffusion-bound": 32, "diffusion-vdm": 32, "diffusion-ode": 16}
# Sample-based evaluators whose samples are slow to draw on a CPU (audio: 4,000 sequential steps a clip) draw at
# most this many under the quick protocol instead of n_samples.
QUICK_SAMPLE_CAPS: dict[str, int] = {"spoken-digits": 100}


@dataclass
class EvalOptions:
    protocol: str = "quick"  # the named sizes below come from PROTOCOLS[protocol] unless set explicitly
    batch_size: int | None = bounded(None, ge=1)  # examples per pass; None: 256 on a GPU, 32 on a CPU (cache-sized)
    max_examples: int | None = bounded(1000, ge=1)  # None: the whole split; else a seeded random subset
    split: str = "test"
    iwae_k: int = bounded(100, ge=1)  # importance samples per example for the IWAE bound (5000 as in Burda et al.)
    iwae_decodes: int | None = bounded(None, ge=1)  # images per IWAE decoder pass; None: 4096 GPU, 256 CPU
    iwae_prior_fraction: float = bounded(0.1, ge=0, lt=1)  # share of IWAE samples from the prior (defensive mixture)
    seed: int = seed_field(0)  # every stochastic estimate is seeded
    n_samples: int = bounded(1000, ge=1)  # generated samples for sample-quality metrics
    sampler_steps: int | None = bounded(10, ge=1)  # steps of an iterative sampler (one with a `steps` option) for sample metrics; None: the card's
    sample_output: Literal["sample", "mean"] = "sample"  # latent models: "sample" draws x ~ p(x|z); "mean" takes E[x|z] (named in protocols)
    inception_weights: str = ""  # Inception-v3 FID weights file; "" = domain feature networks only
    inception_unverified: bool = False  # accept weights whose sha256 is not the official file's (tensors only)
    n_reference: int = bounded(10000, ge=1)  # real images behind FID/KID/precision-recall reference statistics
    reference_split: str | None = None  # None: the evaluated split; "train": compare with training images
    cache_dir: str | None = None  # reference-statistics cache; None: $GENLAB_CACHE or ~/.cache/genlab
    data: object = None  # the run's DataConfig (set by evaluate_run; other splits are loaded with it)
    figure_dir: str | None = None  # where figures such as memorization.png go (set by evaluate_run)
    state_dir: str | None = None  # where interrupted evaluators keep finished batches (set by evaluate_run)
    log: object = None  # where progress lines and time estimates go (set by evaluate_run; None: print)
    examples: str = "images"  # what the data's examples are called in those lines (set by evaluate_run)

    def __post_init__(self):
        check_fields(self)
        if self.protocol not in PROTOCOLS:
            raise InputError(f"unknown evaluation protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")

    @classmethod
    def for_protocol(cls, name: str = "quick", **explicit) -> "EvalOptions":
        """The options of protocol ``name``, with the ``explicit`` fields (e.g. from flags) on top."""
        return cls(protocol=name, **{**PROTOCOLS.get(name, {}), **explicit})

    def protocol_record(self) -> dict:
        """What eval.json states beside every metric: the protocol's name, the sizes used, and whether
        they are the paper protocol's."""
        sizes = {key: getattr(self, key) for key in PROTOCOLS["paper"]}
        paper = all(sizes[key] == value for key, value in PROTOCOLS["paper"].items())
        return {"name": self.protocol, "is_paper_protocol": paper, **sizes, "seed": self.seed,
                "iwae_prior_fraction": self.iwae_prior_fraction}


def resolve_device_sizes(opts: EvalOptions, device) -> EvalOptions:
    """Fill the batch sizes left to the device: small batches keep a CPU's caches warm (a gated
    PixelCNN ran about 2 times faster at 32 images per pass than at 256 on one thread)."""
    gpu = getattr(device, "type", str(device)) != "cpu"
    return dataclasses.replace(opts, batch_size=opts.batch_size or (256 if gpu else 32),
                               iwae_decodes=opts.iwae_decodes or (4096 if gpu else 256))
