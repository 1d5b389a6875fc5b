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

Which pixels a seed draws is up to torch's Bernoulli kernel, which may change between
torch versions or devices, so "the same seed" is checked rather than assumed: the sha256
of the binarized test set is written into the split's note (and so into the protocol of
every metric on it, and into eval.json), and compared with ``PINNED_TEST_SHA256``; a
different binarization warns, since its NLLs are not comparable with pinned results.
"""

from __future__ import annotations

import warnings

import torch

from genlab.data.base import ImageSet, binarize, images_sha256
from genlab.data.catalog import Dataset, DatasetInfo
from genlab.data.idx import MNIST_FILES, load_idx_split
from genlab.registry import DATASETS


# sha256 (``images_sha256``) of the test split binarized by torch 2.13's CPU Bernoulli kernel, per seed.
PINNED_TEST_SHA256 = {0: "81da61c13385c7ee248f679be8155e36e04cf97a2e5721a43a4db356dce583fa"}


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
        binary = binarize_once(images, seed)
        sha = images_sha256(binary)
        note = (f"MNIST test binarized once: Bernoulli(k/255) drawn with torch.Generator seed {seed} "
                f"(data.test_binarization_seed), sha256 {sha} ({pinned_status(seed, sha)}); "
                f"compare NLLs only on equal sha256")
        return self.imageset(split, binary, labels, "binary", note)


def pinned_status(seed: int, sha: str) -> str:
    """Whether a test binarization is the pinned one; warns when it is not."""
    pinned = PINNED_TEST_SHA256.get(seed)
    if pinned is None:
        return "no pinned checksum for this seed"
    if sha == pinned:
        return "the pinned binarization"
    warnings.warn(f"dynamic-binarized-mnist: seed {seed} drew a test binarization (sha256 {sha[:12]}...) other than "
                  f"the pinned one ({pinned[:12]}...), probably a different torch Bernoulli kernel ({torch.__version__}); "
                  "its NLLs are not comparable with results on the pinned set")
    return f"NOT the pinned binarization {pinned}"
