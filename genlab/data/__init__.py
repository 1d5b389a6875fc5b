"""Datasets: official files found under a data root, verified by checksum, held in memory as uint8.

    load_dataset("mnist", "train", cfg.data) -> ImageSet   # images uint8 (N, C, H, W)
    list_datasets()                  # what `genlab data list` prints
    check_datasets(cfg.data)         # what `genlab data check` prints
    data_root(cfg.data)              # cfg.root, else $GENLAB_DATA, else ~/.cache/genlab/data

Each dataset lives in its own subfolder of the data root (``mnist/``,
``fashion-mnist/``, ``binarized-mnist/``, ``frey/``, ``cifar10/``). Files are
never fetched unless ``data.download`` is true; a missing or corrupt file is a
``DatasetError`` that says which file, its checksum, where to put it and where
to get it. Each dataset module registers itself in ``genlab.registry.DATASETS``
(imported with every other plugin module on the first registry lookup).
"""

from __future__ import annotations

from genlab.data.base import ImageSet
from genlab.data.catalog import Dataset
from genlab.data.download import data_root
from genlab.data.errors import DatasetError
from genlab.registry import DATASETS

__all__ = ["DatasetError", "ImageSet", "check_datasets", "data_root", "list_datasets", "load_dataset"]


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; datasets: {', '.join(DATASETS.names())} (see `genlab data list`)")
    return DATASETS.get(name)()


def load_dataset(name: str, split: str, cfg) -> ImageSet:
    """One split of a dataset, in memory.

    Args:
        name: a registered dataset name (``genlab data list``).
        split: "train", "test", or "valid" where the dataset has an official one.
        cfg: a ``DataConfig`` (root, download, test_binarization_seed, ...).
    Returns:
        The ImageSet: uint8 images (N, C, H, W) on the CPU, int64 labels or None.
    Raises:
        DatasetError: unknown name or split; missing, corrupt or unreadable files.
    """
    dataset = _dataset(name)
    splits = list(dataset.info.splits)
    if split not in splits:
        raise DatasetError(f"dataset {name!r} has no split {split!r}; its splits are {', '.join(splits)}")
    return dataset.load(split, cfg)


def list_datasets() -> list[dict]:
    """Every registered dataset: name, description, shape, bits, classes, splits, files."""
    return [DATASETS.get(name)().info.to_dict() for name in DATASETS.names()]


def check_datasets(cfg, names: list[str] | None = None) -> list[dict]:
    """Verify the files of the named datasets (all by default) without downloading anything.

    Returns:
        One dict per dataset: name, status ("ok" | "missing" | "corrupt"), path, message.
    """
    return [_dataset(name).check(cfg) for name in (names or DATASETS.names())]
