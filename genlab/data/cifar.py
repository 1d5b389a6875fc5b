"""CIFAR-10, read straight from the official python tarball with a restricted unpickler.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech.
report, University of Toronto, 2009. https://www.cs.toronto.edu/~kriz/cifar.html

``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1..5`` (train)
and ``test_batch``: Python 2 pickles of a dict whose ``data`` is a uint8 array
(10000, 3072), each row the 1024 red, then green, then blue values of a 32x32
image in row-major order, and whose ``labels`` is a list of ints 0..9.

A pickle can run arbitrary code when loaded, and a downloaded archive is not
trusted code. The unpickler here resolves only the numpy functions that rebuild
an array (``_reconstruct``, ``_frombuffer``, ``ndarray``, ``dtype``); any other
global (``os.system``, ``builtins.eval``...) is refused before it is called.
Members are read from the tar stream in one pass, never extracted to disk.
"""

from __future__ import annotations

import io
import pickle
import posixpath
import tarfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from genlab.data.base import ImageSet
from genlab.data.catalog import Dataset, DatasetInfo
from genlab.data.download import DataFile, data_root, ensure_file
from genlab.data.errors import describe, parsing, unreadable_file
from genlab.errors import InputError
from genlab.registry import DATASETS

FILE = DataFile(
    "cifar10/cifar-10-python.tar.gz",
    "md5:c58f30108f718f92721af3b95e74349a",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
)
MEMBERS = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def _allowed_globals() -> dict[tuple[str, str], object]:
    """The numpy callables that rebuild a plain array, under their numpy 1.x and 2.x module paths."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return allowed


class ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build dicts, lists, strings, numbers and numpy arrays, and nothing else."""

    _allowed = None

    def find_class(self, module: str, name: str):
        if ArrayOnlyUnpickler._allowed is None:
            ArrayOnlyUnpickler._allowed = _allowed_globals()
        obj = ArrayOnlyUnpickler._allowed.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refused to load the global {module}.{name}: only numpy arrays are allowed")
        return obj


def _batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) from one pickled batch."""
    # latin1 maps Python 2 byte strings 1:1, which is what numpy needs to rebuild the array data.
    batch = ArrayOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    if not isinstance(batch, dict):
        raise InputError(f"member {name} holds a {type(batch).__name__}, expected a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise InputError(f"member {name}: 'data' is {got}, expected a uint8 array (N, 3072)")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (len(data),):
        raise InputError(f"member {name}: {labels.size} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise InputError(f"member {name}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def parse_cifar10_tarball(path: Path | str, splits: Iterable[str] = ("train", "test")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read CIFAR-10 batches from the python tarball without extracting it.

    Args:
        path: ``cifar-10-python.tar.gz`` (or a tar of the same layout).
        splits: which of "train" (data_batch_1..5, in order) and "test" (test_batch) to read.
    Returns:
        split -> (images uint8 (N, 3, 32, 32), labels int64 (N,)).
    Raises:
        DatasetError: naming the archive (and member) for a missing member, a bad
            array, or a pickle that asks for anything but numpy arrays.
    """
    path = Path(path)
    wanted = {m: s for s in splits for m in MEMBERS[s]}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with parsing(path):
        with tarfile.open(path, "r:*") as tar:
            for member in tar:  # one pass over the (gzip) stream
                base = posixpath.basename(member.name)
                if base not in wanted or not member.isfile():
                    continue
                if base in found:
                    raise unreadable_file(path, f"the archive holds two members named {base}")
                try:
                    found[base] = _batch(tar.extractfile(member).read(), member.name)
                except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError) as err:
                    raise unreadable_file(path, f"member {member.name}: {describe(err)}") from None
        missing = [m for m in wanted if m not in found]
        if missing:
            raise unreadable_file(path, f"the archive has no member {', '.join(missing)} (is it cifar-10-python.tar.gz?)")
    out = {}
    for split in splits:
        parts = [found[m] for m in MEMBERS[split]]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return out


@DATASETS.register("cifar10")
class CIFAR10(Dataset):
    """CIFAR-10 (Krizhevsky 2009), 3x32x32 8-bit RGB, 50000 train / 10000 test, 10 classes."""

    info = DatasetInfo(
        name="cifar10",
        description="CIFAR-10 (Krizhevsky 2009), 8-bit RGB 32x32, 10 classes",
        shape=(3, 32, 32), bits=8, classes=10,
        splits={"train": 50000, "test": 10000},
        files=(FILE,), folder="cifar10",
    )

    def load(self, split: str, cfg) -> ImageSet:
        form = ensure_file(FILE, data_root(cfg), cfg.download)
        with parsing(form.path, FILE.checksum, FILE.urls):  # adds the checksum and URL to parse errors
            images, labels = parse_cifar10_tarball(form.path, (split,))[split]
        note = f"official {split} split ({', '.join(MEMBERS[split])})"
        return self.imageset(split, torch.from_numpy(images), torch.from_numpy(labels), "scale", note)
