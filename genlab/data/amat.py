"""Statically binarized MNIST (the fixed 50000/10000/10000 split used for likelihood benchmarks).

Salakhutdinov & Murray, "On the Quantitative Analysis of Deep Belief Networks",
ICML 2008, drew one Bernoulli sample per MNIST pixel; Larochelle & Murray, "The
Neural Autoregressive Distribution Estimator", AISTATS 2011, published the
result as three text files that NADE, IWAE, PixelCNN and later papers report on.

Format (``.amat``): one image per line, 784 characters ``0``/``1`` separated by
single spaces, no trailing space, LF line ends: 1568 bytes per line. The files
carry no labels, and the test file is ordered by digit (all 0s first), so a
"first N" subset of it is not a random sample. A gzipped copy is accepted when
its content has the official SHA256.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.data.base import ImageSet
from genlab.data.catalog import Dataset, DatasetInfo
from genlab.data.download import DataFile, data_root, read_verified
from genlab.data.errors import parsing, unreadable_file
from genlab.registry import DATASETS

_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
FILES = {
    split: DataFile(f"binarized-mnist/binarized_mnist_{split}.amat", f"sha256:{digest}", (f"{_URL}binarized_mnist_{split}.amat",))
    for split, digest in _SHA256.items()
}
_SPACE, _NEWLINE, _ZERO = ord(" "), ord("\n"), ord("0")


def _first_bad_line(buf: np.ndarray, pixels: int) -> str:
    """Describe the first malformed line of ``buf`` (1-based line number) for the error message."""
    width = 2 * pixels - 1  # characters before the newline
    newlines = np.flatnonzero(buf == _NEWLINE)
    starts = np.concatenate([[0], newlines[:-1] + 1]).astype(np.int64)
    lengths = newlines - starts
    wrong = np.flatnonzero(lengths != width)
    if len(wrong):
        i = int(wrong[0])
        return f"line {i + 1} has {int(lengths[i])} characters, expected {width} ({pixels} values 0/1 separated by single spaces)"
    end = int(newlines[-1]) + 1 if len(newlines) else 0
    if end < len(buf):
        return f"line {len(newlines) + 1} does not end with a newline"
    rows = buf.reshape(-1, width + 1)
    bad_sep = (rows[:, 1:width:2] != _SPACE).any(axis=1)
    bad_val = ((rows[:, 0:width:2] - _ZERO) > 1).any(axis=1)  # uint8 wraps below '0'
    i = int(np.flatnonzero(bad_sep | bad_val)[0])
    what = "a value other than 0 or 1" if bad_val[i] else "a separator other than one space"
    return f"line {i + 1} has {what}"


def parse_amat(data: bytes, path: Path | str = "<bytes>", pixels: int = 784) -> np.ndarray:
    """Decode a binarized-MNIST ``.amat`` text file, vectorized over its bytes.

    Args:
        data: the (uncompressed) file content.
        path: the file's name, for error messages.
        pixels: values per line.
    Returns:
        uint8 array (N, pixels) of 0/1.
    Raises:
        DatasetError: naming the file and the first malformed line.
    """
    line = 2 * pixels  # pixels digits + (pixels - 1) spaces + "\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    if len(buf) == 0:
        raise unreadable_file(Path(path), "the file is empty")
    if len(buf) % line == 0:
        rows = buf.reshape(-1, line)  # (N, 1568) view, no copy
        values = rows[:, 0 : line - 1 : 2] - _ZERO  # (N, pixels): 0/1, anything else wraps to > 1
        if (rows[:, -1] == _NEWLINE).all() and (rows[:, 1 : line - 1 : 2] == _SPACE).all() and (values <= 1).all():
            return values
    raise unreadable_file(Path(path), _first_bad_line(buf, pixels))


@DATASETS.register("binarized-mnist")
class BinarizedMNIST(Dataset):
    """Static binarized MNIST (Salakhutdinov & Murray 2008; files of Larochelle & Murray 2011)."""

    info = DatasetInfo(
        name="binarized-mnist",
        description="static binarized MNIST (Larochelle & Murray 2011 files), 0/1 pixels, no labels",
        shape=(1, 28, 28), bits=1, classes=0,
        splits={"train": 50000, "valid": 10000, "test": 10000},
        files=tuple(FILES.values()), folder="binarized-mnist",
    )

    def load(self, split: str, cfg) -> ImageSet:
        spec = FILES[split]
        path, content = read_verified(spec, data_root(cfg), cfg.download)
        with parsing(path, spec.checksum, spec.urls):
            values = parse_amat(content, path)
        images = torch.from_numpy(values.reshape(-1, 1, 28, 28))
        note = f"static binarization of Larochelle & Murray (2011), official {split} file"
        if split == "test":
            note += "; the file is ordered by digit, so take random subsets, not the first N"
        return self.imageset(split, images, None, "binary", note)
