"""scikit-learn's bundled 8x8 handwritten digits: a dataset that needs no download.

The UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak,
1998; Kaynak, MSc thesis 1995) as shipped in ``sklearn.datasets.load_digits``:
1797 images whose 8x8 pixels count set pixels in 4x4 blocks of a 32x32 bitmap,
values 0..16. genlab stores round(v * 255 / 16) as uint8 so the data is 8-bit
like every other dataset (0 -> 0, 16 -> 255). Small enough for smoke tests and
CPU experiments; there is no official split, so 300 images are held out by
``seeded_split(1797, 300, seed=0)``.

``digits-28`` is the same images in MNIST's format, a second handwriting domain for translation
(other writers, other resolution): the counts scaled to [0, 255] (v * 255 / 16, as floats),
bilinearly upsampled 8x8 -> 20x20 (``torch.nn.functional.interpolate``, ``align_corners=False``,
no antialiasing) into the 20x20 box that holds an MNIST digit, rounded to uint8 and padded with 4
black pixels on each side to 28x28. (MNIST centres its box by the digit's centre of mass; the
8x8 bitmaps are already centred, so the box is simply put in the middle.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genlab.data.base import ImageSet
from genlab.data.catalog import Dataset, DatasetInfo, seeded_split
from genlab.data.errors import DatasetError, describe
from genlab.registry import DATASETS

N_IMAGES, N_TEST, SPLIT_SEED = 1797, 300, 0
BOX, SIDE = 20, 28  # digits-28: the 20x20 box of an MNIST digit, centred in 28x28


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Counts 0..16 -> uint8 levels round(v * 255 / 16).

    The only half is v = 8 -> 127.5, which half-to-even (numpy) and half-up both round to 128.
    """
    return np.rint(values.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)


def to_mnist_format(values: np.ndarray) -> torch.Tensor:
    """Counts 0..16 (N, 8, 8) -> uint8 (N, 1, 28, 28): bilinear to 20x20 on the 0..255 scale, padded by 4."""
    x = torch.from_numpy(values.astype(np.float64) * (255.0 / 16.0)).unsqueeze(1)  # (N, 1, 8, 8)
    box = F.interpolate(x, size=(BOX, BOX), mode="bilinear", align_corners=False)
    pad = (SIDE - BOX) // 2
    return F.pad(box.round().clamp(0, 255).to(torch.uint8), (pad,) * 4)


def _load_bunch():
    try:
        from sklearn.datasets import load_digits  # imported here: sklearn is slow to import
    except ImportError as err:
        raise DatasetError(f"the digits dataset needs scikit-learn ({describe(err)}); pip install scikit-learn") from None
    return load_digits()


@DATASETS.register("digits")
class Digits(Dataset):
    """scikit-learn's 8x8 digits (UCI optdigits), 1x8x8, rescaled to 8 bits, 10 classes."""

    info = DatasetInfo(
        name="digits",
        description="scikit-learn 8x8 digits (UCI optdigits), 0..16 rescaled to 8 bits; no download",
        shape=(1, 8, 8), bits=8, classes=10,
        splits={"train": N_IMAGES - N_TEST, "test": N_TEST},
    )

    def load(self, split: str, cfg) -> ImageSet:
        bunch = _load_bunch()
        images = self.images(bunch.images)
        labels = torch.from_numpy(bunch.target.astype(np.int64))
        index = seeded_split(N_IMAGES, N_TEST, SPLIT_SEED)[split]
        note = f"no official split: {N_TEST} test images held out by seeded_split(seed={SPLIT_SEED}), {N_IMAGES - N_TEST} train"
        return self.imageset(split, images[index], labels[index], "scale", note)

    @staticmethod
    def images(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(to_uint8(values)).unsqueeze(1)  # (1797, 1, 8, 8)

    def check(self, cfg) -> dict:
        try:
            import sklearn.datasets  # noqa: F401
            status, message = "ok", "bundled with scikit-learn"
        except ImportError:
            status, message = "missing", "needs scikit-learn: pip install scikit-learn"
        return dict(name=self.info.name, status=status, path="(scikit-learn package)", message=message)


@DATASETS.register("digits-28")
class Digits28(Digits):
    """The same digits and split in MNIST's format: bilinear 8x8 -> 20x20, centred in 28x28 (module docstring)."""

    info = DatasetInfo(
        name="digits-28",
        description="scikit-learn 8x8 digits upsampled to MNIST's format: bilinear to 20x20, centred in 28x28; "
                    "a second handwriting domain for translation; no download",
        shape=(1, SIDE, SIDE), bits=8, classes=10,
        splits={"train": N_IMAGES - N_TEST, "test": N_TEST},
    )

    @staticmethod
    def images(values: np.ndarray) -> torch.Tensor:
        return to_mnist_format(values)
