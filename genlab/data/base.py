"""The in-memory dataset type and the pure transforms that turn stored pixels into model input."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from genlab.errors import InputError
from genlab.nn.spec import DataSpec

# How stored uint8 pixels become the float batch a model sees:
#   "scale":     k -> k / 255 (8-bit data)
#   "binary":    pixels already 0/1 -> float (static binarization)
#   "bernoulli": k -> Bernoulli(k / 255), resampled at every use (dynamic binarization)
Transform = Literal["scale", "binary", "bernoulli"]


@dataclass
class ImageSet:
    """One split of a dataset, held in memory.

    Attributes:
        name: registry name of the dataset, e.g. "mnist".
        split: "train", "valid" or "test".
        images: uint8 tensor (N, *spec.shape): (N, C, H, W) images, or (N, C, L) 1-D signals
            (audio: mu-law codes 0..255, which the "scale" transform maps to k / 255 like pixels).
        labels: int64 tensor (N,), or None for unlabelled data.
        spec: what models see (shape, bits, number of classes).
        transform: how ``images`` become model input (see ``to_model_input``).
        note: how the split was made, for reports (e.g. the binarization used).
        extras: further per-example int64 tensors (N,) carried into every batch under their
            name (e.g. "speaker" of a spoken-digit recording).
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor | None
    spec: DataSpec
    transform: Transform
    note: str = ""
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device) -> "ImageSet":
        labels = None if self.labels is None else self.labels.to(device)
        extras = {k: v.to(device) for k, v in self.extras.items()}
        return ImageSet(self.name, self.split, self.images.to(device), labels, self.spec, self.transform, self.note,
                        extras)

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """The model-ready batch for the given example indices."""
        x = to_model_input(self.images[index], self.transform, generator)
        out = {"x": x}
        if self.labels is not None:
            out["y"] = self.labels[index]
        for name, values in self.extras.items():
            out[name] = values[index]
        return out

    def select_classes(self, classes) -> "ImageSet":
        """The images whose label is in ``classes`` (all of them for an empty ``classes``: data.classes)."""
        if not classes:
            return self
        if self.labels is None:
            raise InputError(f"{self.name} has no labels: data.classes needs a labelled dataset")
        bad = [c for c in classes if not 0 <= c < self.spec.num_classes]
        if bad:
            raise InputError(f"data.classes={','.join(map(str, bad))} is not a class of {self.name} "
                             f"(0..{self.spec.num_classes - 1})")
        keep = torch.isin(self.labels, torch.tensor(sorted(set(classes)), device=self.labels.device))
        note = f"classes {','.join(map(str, sorted(set(classes))))} only" + (f"; {self.note}" if self.note else "")
        return replace(self.take(keep), note=note)

    def take(self, index: torch.Tensor) -> "ImageSet":
        """The images at ``index`` (a mask or indices) with their labels and extras; same name, split, transform."""
        labels = None if self.labels is None else self.labels[index]
        return ImageSet(self.name, self.split, self.images[index], labels, self.spec, self.transform, self.note,
                        {k: v[index] for k, v in self.extras.items()})


def images_sha256(images: torch.Tensor) -> str:
    """sha256 of uint8 images (N, C, H, W) as stored: the bytes in C order, on the CPU.

    Names exactly which images a number was computed on (e.g. one binarization of a test set).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"images_sha256 hashes stored uint8 images, got {images.dtype}")
    return hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def scale(images: torch.Tensor) -> torch.Tensor:
    """uint8 levels 0..255 -> float in [0, 1]."""
    return images.float().div_(255.0)


def binarize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Bernoulli(intensity / 255) draw per pixel: dynamic binarization."""
    probs = scale(images)
    return torch.bernoulli(probs, generator=generator)


def threshold(images: torch.Tensor, level: int = 128) -> torch.Tensor:
    """Deterministic binarization (pixel >= level) for figures, never for likelihoods."""
    return (images >= level).float()


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None, levels: int = 256) -> torch.Tensor:
    """Uniform dequantization of [0, 1] data on a grid of ``levels``: x + U(0, 1/levels)."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x * (levels - 1) + noise) / levels


def to_model_input(images: torch.Tensor, transform: Transform, generator: torch.Generator | None = None) -> torch.Tensor:
    if transform == "scale":
        return scale(images)
    if transform == "binary":
        return images.float()
    if transform == "bernoulli":
        return binarize(images, generator)
    raise InputError(f"unknown transform {transform!r}")
