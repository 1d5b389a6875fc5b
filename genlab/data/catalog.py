"""What every dataset module declares (``DatasetInfo``) and the small base class they share.

A dataset is a class registered with ``@DATASETS.register("name")`` that carries
an ``info`` record (shape, bits, classes, split sizes, official files) and a
``load(split, cfg) -> ImageSet`` method. ``check(cfg)`` verifies the files
without parsing them, for ``genlab data check``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.data.base import ImageSet, Transform
from genlab.data.download import DataFile, data_root, ensure_file
from genlab.data.errors import DatasetError
from genlab.errors import InputError
from genlab.nn.spec import DataSpec
from genlab.rng import sample_seed


@dataclass(frozen=True)
class DatasetInfo:
    """The facts ``genlab data list`` prints about a dataset.

    Attributes:
        name: registry name.
        description: one line, with the paper or source.
        shape: (channels, height, width), or None when the user's files decide it.
        bits: 1 for binary pixels, 8 for 256 levels.
        classes: number of label classes, 0 when unlabelled.
        splits: split name -> number of examples (None when the user's files decide it).
        files: the official files, paths relative to the data root.
        folder: the subfolder of the data root that holds the files.
    """

    name: str
    description: str
    shape: tuple[int, int, int] | None
    bits: int
    classes: int
    splits: dict[str, int | None]
    files: tuple[DataFile, ...] = ()
    folder: str = ""

    def spec(self) -> DataSpec:
        c, h, w = self.shape
        return DataSpec(channels=c, height=h, width=w, bits=self.bits, num_classes=self.classes)

    def to_dict(self) -> dict:
        return dict(
            name=self.name,
            description=self.description,
            shape=None if self.shape is None else list(self.shape),
            bits=self.bits,
            classes=self.classes,
            splits=dict(self.splits),
            files=[f.path for f in self.files],
        )


class Dataset:
    """Base of the registered dataset classes: ``info``, ``load`` and a default ``check``."""

    info: DatasetInfo

    def load(self, split: str, cfg) -> ImageSet:
        raise NotImplementedError

    def check(self, cfg) -> dict:
        """Hash every official file (checksum only, no parsing; never the cache); never downloads."""
        root = data_root(cfg)
        folder = root / self.info.folder if self.info.folder else root
        problems, status = [], "ok"
        for spec in self.info.files:
            try:
                ensure_file(spec, root, download=False, trust_cache=False)
            except DatasetError as err:
                problems.append(str(err))
                # "corrupt" wins over "missing": it needs the user to delete something.
                status = "corrupt" if err.kind in ("corrupt", "unreadable") or status == "corrupt" else "missing"
        message = "\n".join(problems) if problems else f"{len(self.info.files)} file(s) verified"
        return dict(name=self.info.name, status=status, path=str(folder), message=message)

    def imageset(self, split: str, images: torch.Tensor, labels: torch.Tensor | None,
                 transform: Transform, note: str = "", spec: DataSpec | None = None,
                 extras: dict[str, torch.Tensor] | None = None) -> ImageSet:
        """Wrap parsed arrays, checking them against ``info`` (a mismatch is a parser bug)."""
        spec = spec or self.info.spec()
        expected_n = self.info.splits.get(split)
        shape = spec.shape
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != shape:
            raise AssertionError(f"{self.info.name}/{split}: images {images.dtype} {tuple(images.shape)}, want uint8 (N, {shape})")
        if expected_n is not None and len(images) != expected_n:
            raise AssertionError(f"{self.info.name}/{split}: {len(images)} images, want {expected_n}")
        if labels is not None:
            labels = labels.to(torch.int64)
            if labels.shape != (len(images),):
                raise AssertionError(f"{self.info.name}/{split}: labels {tuple(labels.shape)} for {len(images)} images")
        for name, values in (extras or {}).items():
            if values.shape != (len(images),):
                raise AssertionError(f"{self.info.name}/{split}: {name} {tuple(values.shape)} for {len(images)} examples")
        return ImageSet(self.info.name, split, images, labels, spec, transform, note, dict(extras or {}))


def seeded_split(n: int, n_test: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A reproducible train/test partition of ``range(n)`` for datasets without an official one.

    The order is ``sorted(range(n), key=sample_seed(seed, i))`` (SplitMix64 of
    (seed, i)): plain integer arithmetic, so the split never changes with the
    torch or numpy version. The first ``n_test`` indices of that order are the
    test set; each split keeps the file's order.

    Returns:
        {"train": int64 (n - n_test,), "test": int64 (n_test,)}, both sorted.
    """
    if not 0 <= n_test <= n:
        raise InputError(f"cannot hold out {n_test} of {n} examples")
    order = sorted(range(n), key=lambda i: sample_seed(seed, i))
    test = torch.tensor(sorted(order[:n_test]), dtype=torch.int64)
    train = torch.tensor(sorted(order[n_test:]), dtype=torch.int64)
    return {"train": train, "test": test}

