"""The model card: one typed, frozen record of what a model is and what it takes.

Every registered model class carries ``card = ModelCard(...)``. Samplers, evaluators,
OOD scoring, reports, the trainer and the CLI read the card (or the ``conditioning``
helper below) instead of guessing from loose attributes, ``getattr`` or the type of
what a method happens to return. A new family states its contract here once.

This module sits at the left end of the import layers (next to ``registry``): it
imports only genlab.errors, so models, samplers and the CLI can all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

from genlab.errors import InputError

Family = Literal["latent", "autoregressive", "adversarial", "diffusion", "self-supervised"]
# exact: -log p is computed exactly (chain rule); bound: an upper bound on -log p (ELBO, IWAE);
# estimate: a Monte Carlo estimate that is neither; none: the model gives no likelihood.
LikelihoodKind = Literal["exact", "bound", "estimate", "none"]
# What ``model.encode(x)`` returns: nothing (no encoder), a code tensor (B, D), or a
# Gaussian posterior as a (mean, logvar) pair of (B, D) tensors.
Encoder = Literal["none", "code", "posterior"]
# Whether the model takes a class label: never, always, or when its Config's
# ``conditional`` field is true (a knob of the autoregressive models).
ClassLabel = Literal["no", "yes", "config"]
# What maps codes back to images: nothing; ``decode(z)`` giving raw outputs whose
# ``distribution(...).mean()`` is the image (latent models); ``generate(z, y)`` giving images (GANs);
# ``decode(z, x)`` giving raw outputs of an autoregressive decoder, teacher-forced on x (PixelVAE):
# its images are drawn pixel by pixel by the model's sampler, it has no mean image.
Decoder = Literal["none", "distribution", "generator", "autoregressive"]
# Where a frozen model's features for linear / k-NN probes come from (genlab/eval/representations.py):
# posterior-mean: the mean of ``encode(x)`` (a Gaussian posterior); code: ``encode(x)``; submodule: the
# submodule named ``module`` maps images to (B, D) features itself (a self-supervised backbone); hidden: the
# output of submodule ``module`` during ``model(x)`` (an autoregressive network's hidden layer, teacher-forced);
# denoiser-hidden: the output of ``module`` during ``model.denoise(x + sigma * eps, sigma)`` at the fixed
# noise level ``sigma`` (a diffusion U-Net's middle block; a class-conditional one gets its ``null_label``).
# Feature maps are average-pooled to a small grid.
FeatureKind = Literal["posterior-mean", "code", "submodule", "hidden", "denoiser-hidden"]


# Data the registry-wide model tester builds tiny models on (DataSpec fields): a small labelled
# grey image, and a small labelled colour image (colour exercises the sub-pixel ordering of
# autoregressive models; 4x4 keeps pixel-by-pixel sampling cheap).
TINY_BINARY = dict(channels=1, height=8, width=8, bits=1, num_classes=10)
TINY_GREY = dict(channels=1, height=8, width=8, bits=8, num_classes=10)
TINY_RGB = dict(channels=3, height=4, width=4, bits=8, num_classes=3)


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class SamplerSpec:
    """One way of drawing samples from the model.

    The sampler itself (a pure function) and its typed options dataclass are
    registered together under ``name`` (``genlab.registry.register_sampler``); the card
    names the sampler and may change the defaults of its options for this model.
    """

    name: str  # key in SAMPLERS and SAMPLER_OPTIONS
    defaults: Mapping[str, Any] = field(default_factory=dict)  # option -> this model's default

    def __post_init__(self):
        object.__setattr__(self, "defaults", _frozen(self.defaults))


@dataclass(frozen=True)
class FeatureSpec:
    """What a probe reads off the frozen model as its representation of an image (see ``FeatureKind``)."""

    kind: FeatureKind
    module: str = ""  # the submodule (dotted name) for submodule, hidden and denoiser-hidden
    sigma: float = 0.0  # denoiser-hidden: the fixed noise level, on the [-1, 1] image scale

    def __post_init__(self):
        if (self.kind in ("submodule", "hidden", "denoiser-hidden")) != bool(self.module):
            raise InputError(f"feature kind {self.kind!r} {'needs' if not self.module else 'takes no'} a module name")
        if (self.kind == "denoiser-hidden") != (self.sigma > 0):
            raise InputError("a noise level sigma > 0 is for (and needed by) the denoiser-hidden feature kind")


@dataclass(frozen=True)
class ConditioningSpec:
    """What the model class can take besides noise; resolved per instance by ``conditioning``."""

    class_label: ClassLabel = "no"
    label_optional: bool = False  # without a label the sampler draws one uniformly per sample (cgan)
    source_image: bool = False  # an image-to-image model: samples are translations of a given image
    partial_image: bool = False  # can complete an image of which the top rows are given
    # also takes batch["speaker"] (audio) when its Config's ``speakers`` > 0 (the number of speakers)
    speaker: bool = False


@dataclass(frozen=True)
class Conditioning:
    """What one built model takes: the answer to every "is this model class-conditional?"."""

    num_classes: int = 0  # > 0: the model takes a label y in 0..num_classes-1
    label_optional: bool = False
    source_image: bool = False
    partial_image: bool = False
    num_speakers: int = 0  # > 0: the model also takes a speaker in 0..num_speakers-1 (batch["speaker"])

    @property
    def class_conditional(self) -> bool:
        return self.num_classes > 0


@dataclass(frozen=True)
class ModelCard:
    """What a model is and what it takes (the contract every other part of genlab reads).

    ``tiny`` holds overrides of the model's Config that make it small enough for
    the registry-wide model tester; ``tiny_data`` is the DataSpec fields it is built on
    there (a plain mapping so that this module imports nothing from ``nn``).
    """

    family: Family
    default_objective: str  # name in OBJECTIVES
    samplers: tuple[SamplerSpec, ...] = ()  # the first is what `genlab sample` uses by default
    evaluators: tuple[str, ...] = ()  # names in EVALUATORS, run by `genlab eval`
    likelihood: LikelihoodKind = "none"
    encoder: Encoder = "none"
    decoder: Decoder = "none"
    conditioning: ConditioningSpec = ConditioningSpec()
    ema_modules: tuple[str, ...] | None = None  # None: the EMA averages every weight
    # Progressive growing: ``generate(z, level=k)`` draws at the k-th resolution (report figure; progan).
    growing: bool = False
    # 2: a translation model whose batches hold domain A (x, y) and domain B (x_b, y_b); see data/domains.py
    domains: int = 1
    # A second stage: the name of the model it is trained on top of (frozen). Its Config then has
    # ``first_stage`` (a run folder) and ``first_stage_sha256``, its constructor takes ``first_stage=`` the
    # loaded model, and the trainer feeds it that model's codes (genlab/train/run.py, genlab/train/stages.py).
    first_stage: str | None = None
    features: FeatureSpec | None = None  # what `genlab probe` reads as the model's representation (None: nothing)
    run_defaults: Mapping[str, Any] = field(default_factory=dict)  # "section.key" -> the paper's value
    tiny: Mapping[str, Any] = field(default_factory=dict)
    tiny_data: Mapping[str, int] = field(default_factory=lambda: TINY_BINARY)

    def __post_init__(self):
        for name in ("run_defaults", "tiny", "tiny_data"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def sampler_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.samplers)

    def sampler(self, name: str | None = None) -> SamplerSpec:
        """The named sampler of this model (default: its first); an error naming the choices."""
        if name is None and self.samplers:
            return self.samplers[0]
        for spec in self.samplers:
            if spec.name == name:
                return spec
        if not self.samplers:
            raise InputError(f"this {self.family} model has no sampler (nothing to sample from)")
        raise InputError(f"sampler {name!r} is not one of this model's: {', '.join(self.sampler_names)}")


def conditioning(model) -> Conditioning:
    """What this built model takes (labels, source or partial images), from its card and config."""
    spec = model.card.conditioning
    takes_label = spec.class_label == "yes" or (spec.class_label == "config" and bool(model.cfg.conditional))
    return Conditioning(num_classes=model.data.num_classes if takes_label else 0,
                        label_optional=spec.label_optional, source_image=spec.source_image,
                        partial_image=spec.partial_image,
                        num_speakers=int(model.cfg.speakers) if spec.speaker else 0)


def likelihood_of(model) -> str:
    """What the model's likelihood is of: "p(x)", or "p(x | y)" for a class-conditional one."""
    return "p(x | y)" if conditioning(model).class_conditional else "p(x)"
