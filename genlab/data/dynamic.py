"""Dynamically binarized MNIST, built from the official MNIST files.

Each pixel is a Bernoulli draw with probability intensity/255, as introduced
for MNIST by Salakhutdinov & Murray, "On the Quantitative Analysis of Deep
Belief Networks", ICML 2008, and redrawn at every use of an image as in Burda,
Grosse & Salakhutdinov, "Importance Weighted Autoencoders", arXiv:1509.00519.

* train: the images keep their 0..255 intensities with transform "bernoulli",
  so every batch is a fresh binarization (a regularizer, and the usual protocol).
* test: binarized ONCE with a ``torch.Generator`` seeded by
  ``cfg.test_binarization_seed`` and stored as 0/1 (transform "binary"): two
  runs with the same seed evaluate on the same binary images, so their test
  NLLs can be compared. Results on this set are NOT comparable with the static
  binarization of Larochelle & Murray (``binarized-mnist``).
"""

from __future__ import annotations

import torch

from genlab.data.base import ImageSet, binarize
from genlab.data.catalog import Dataset, DatasetInfo
from genlab.data.idx import MNIST_FILES, load_idx_split
from genlab.registry import DATASETS


def binarize_once(images: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 0/1 images (N, C, H, W): one Bernoulli(k/255) draw per pixel from a generator seeded ``seed``."""
    g = torch.Generator(device=images.device).manual_seed(seed)
    return binarize(images, g).to(torch.uint8)


@DATASETS.register("dynamic-binarized-mnist")
class DynamicBinarizedMNIST(Dataset):
    """MNIST with Bernoulli(k/255) pixels: resampled per batch in train, fixed by a seed in test."""

    info = DatasetInfo(
        name="dynamic-binarized-mnist",
        description="MNIST, pixels ~ Bernoulli(intensity/255): redrawn every batch (train), fixed by seed (test)",
        shape=(1, 28, 28), bits=1, classes=10,
        splits={"train": 60000, "test": 10000},
        files=tuple(MNIST_FILES.values()), folder="mnist",
    )

    def load(self, split: str, cfg) -> ImageSet:
        images, labels = load_idx_split(MNIST_FILES, split, cfg)
        if split == "train":
            note = "MNIST train, 0..255 intensities; each batch draws fresh Bernoulli(k/255) pixels"
            return self.imageset(split, images, labels, "bernoulli", note)
        seed = int(cfg.test_binarization_seed)
        note = (f"MNIST test binarized once: Bernoulli(k/255) drawn with torch.Generator seed {seed} "
                f"(data.test_binarization_seed); compare NLLs only at equal seeds")
        return self.imageset(split, binarize_once(images, seed), labels, "binary", note)
