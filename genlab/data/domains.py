"""Two-domain data for unpaired translation: synthetic domains with an exact ground truth, and the two-domain stream.

A synthetic domain is a registered dataset made from MNIST by a pure, exact transform T
of the uint8 pixels, so that the test image i of the domain is exactly T(MNIST test image i)
and a translation can be scored against the true map:

===============  ===============================================  ===========================
name             T (on uint8 pixels, (N, 1, 28, 28))              exact inverse
===============  ===============================================  ===========================
mnist-inverted   255 - x (colour inversion)                       T itself
mnist-thick      grey dilation, flat 3x3 square footprint         none (dilation loses detail)
mnist-thin       grey erosion, flat 3x3 plus-shaped footprint     none
mnist-rot90      rotation by 90 degrees counter-clockwise         rotation by -90 degrees
===============  ===============================================  ===========================

Dilation and erosion are taken over the pixels inside the image (as
``scipy.ndimage.grey_dilation``/``grey_erosion`` with ``mode="nearest"``; tests pin them).
Fashion-MNIST (``fashion-mnist``) is the domain with no correspondence to MNIST.

A two-domain run names domain A in ``data.name`` and domain B in ``data.domain_b``. Each
step draws a batch from each domain independently (unpaired): two ``BatchStream``s with
different seeds, so batches stay a pure function of (seed, step) and resume exactly. When
both domains are made from the same images (mnist and mnist-inverted), domain A trains on
the first half of the training split and domain B on the second (``data.unpaired_halves``),
so no digit is ever seen in both domains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from genlab.data.base import ImageSet
from genlab.data.catalog import Dataset, DatasetInfo
from genlab.data.idx import MNIST_FILES, load_idx_split
from genlab.data.loader import BatchStream
from genlab.errors import InputError
from genlab.registry import DATASETS

Transform = Callable[[torch.Tensor], torch.Tensor]  # uint8 (N, C, H, W) -> uint8 (N, C, H, W)

SQUARE = torch.ones(3, 3, dtype=torch.bool)
PLUS = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
# Seed offset of domain B's batch order: independent of domain A's, still a function of the run's seed.
DOMAIN_B_SEED = 1_000_003


def _morphology(images: torch.Tensor, footprint: torch.Tensor, take_max: bool) -> torch.Tensor:
    """Grey dilation (max) or erosion (min) over a flat footprint, taken over in-image pixels only.

    The elementwise max/min of shifted views of the padded images: exact on uint8, no float copy
    of the whole set (60,000 MNIST images at once).
    """
    k = footprint.shape[0]
    h, w = images.shape[-2:]
    # Padding with the neutral value (0 for max, 255 for min) keeps windows at the border to in-image pixels.
    padded = F.pad(images, (k // 2,) * 4, value=0 if take_max else 255)
    reduce = torch.maximum if take_max else torch.minimum
    out = None
    for dy, dx in footprint.nonzero().tolist():
        view = padded[..., dy:dy + h, dx:dx + w]
        out = view.clone() if out is None else reduce(out, view)
    return out


def invert(images: torch.Tensor) -> torch.Tensor:
    return 255 - images


def thicken(images: torch.Tensor) -> torch.Tensor:
    return _morphology(images, SQUARE, take_max=True)


def thin(images: torch.Tensor) -> torch.Tensor:
    return _morphology(images, PLUS, take_max=False)


def rotate(images: torch.Tensor) -> torch.Tensor:
    return torch.rot90(images, 1, dims=(2, 3))


def unrotate(images: torch.Tensor) -> torch.Tensor:
    return torch.rot90(images, -1, dims=(2, 3))


@dataclass(frozen=True)
class SyntheticDomain:
    """A domain made from a source dataset by an exact transform (the true A -> B map)."""

    name: str
    source: str  # the dataset the images come from
    forward: Transform  # source -> domain, exact on uint8 pixels
    inverse: Transform | None  # domain -> source where exactly invertible
    description: str


SYNTHETIC = {d.name: d for d in (
    SyntheticDomain("mnist-inverted", "mnist", invert, invert, "MNIST with colours inverted (255 - x)"),
    SyntheticDomain("mnist-thick", "mnist", thicken, None,
                    "MNIST with thickened strokes: grey dilation, flat 3x3 square footprint"),
    SyntheticDomain("mnist-thin", "mnist", thin, None,
                    "MNIST with thinned strokes: grey erosion, flat 3x3 plus-shaped footprint"),
    SyntheticDomain("mnist-rot90", "mnist", rotate, unrotate, "MNIST rotated by 90 degrees counter-clockwise"),
)}


def source_of(name: str) -> str:
    """The dataset whose images a domain is made of (itself for a plain dataset)."""
    return SYNTHETIC[name].source if name in SYNTHETIC else name


def true_map(a: str, b: str) -> Transform | None:
    """The exact A -> B map on uint8 images when one is known, else None."""
    if a == b:
        return lambda images: images
    if b in SYNTHETIC and SYNTHETIC[b].source == a:
        return SYNTHETIC[b].forward
    if a in SYNTHETIC and SYNTHETIC[a].source == b and SYNTHETIC[a].inverse is not None:
        return SYNTHETIC[a].inverse
    return None


def _register(domain: SyntheticDomain) -> None:
    class _Synthetic(Dataset):
        info = DatasetInfo(name=domain.name, description=domain.description + " (exact ground-truth pairs)",
                           shape=(1, 28, 28), bits=8, classes=10, splits={"train": 60000, "test": 10000},
                           files=tuple(MNIST_FILES.values()), folder="mnist")

        def load(self, split: str, cfg) -> ImageSet:
            images, labels = load_idx_split(MNIST_FILES, split, cfg)
            note = f"{domain.description}; image i is T(MNIST {split} image i)"
            return self.imageset(split, domain.forward(images), labels, "scale", note)

    _Synthetic.__name__ = _Synthetic.__qualname__ = "Synthetic_" + domain.name.replace("-", "_")
    DATASETS.register(domain.name)(_Synthetic)


for _domain in SYNTHETIC.values():
    _register(_domain)


# ----------------------------------------------------------------------------------------------
# Two domains in one training stream


def halves(data: ImageSet, first: bool) -> ImageSet:
    """The first or second half of a split (the unpaired-halves rule)."""
    cut = len(data) // 2
    part = slice(0, cut) if first else slice(cut, len(data))
    labels = None if data.labels is None else data.labels[part]
    note = f"{data.note}; {'first' if first else 'second'} half ({cut} images) for unpaired training"
    return ImageSet(data.name, data.split, data.images[part], labels, data.spec, data.transform, note)


def check_pair(a: ImageSet, b: ImageSet) -> None:
    """Two domains must have images of one shape (the translators map C x H x W to itself)."""
    shape_a, shape_b = (a.spec.channels, a.spec.height, a.spec.width), (b.spec.channels, b.spec.height, b.spec.width)
    if shape_a != shape_b:
        raise InputError(f"domains {a.name} {shape_a} and {b.name} {shape_b} differ in shape: "
                         "choose two datasets with images of one shape")


def split_domains(a: ImageSet, b: ImageSet, unpaired_halves: bool) -> tuple[ImageSet, ImageSet]:
    """Domains A and B of a training run: disjoint halves when both are made of the same images."""
    check_pair(a, b)
    if unpaired_halves and source_of(a.name) == source_of(b.name) and len(a) == len(b):
        return halves(a, True), halves(b, False)
    return a, b


class TwoDomainStream:
    """Unpaired batches: domain A as ``x``/``y``, domain B as ``x_b``/``y_b``, each a pure function of (seed, step).

    Epochs are counted in domain A's images.
    """

    def __init__(self, a: ImageSet, b: ImageSet, global_batch: int, accum: int, seed: int, rank: int = 0,
                 world: int = 1):
        self.a = BatchStream(a, global_batch, accum, seed, rank, world)
        self.b = BatchStream(b, global_batch, accum, seed + DOMAIN_B_SEED, rank, world)

    def micro_batches(self, step: int) -> list[dict]:
        out = []
        for batch_a, batch_b in zip(self.a.micro_batches(step), self.b.micro_batches(step)):
            batch = dict(batch_a, x_b=batch_b["x"])
            if "y" in batch_b:
                batch["y_b"] = batch_b["y"]
            out.append(batch)
        return out

    def epoch_of(self, step: int) -> float:
        return self.a.epoch_of(step)
