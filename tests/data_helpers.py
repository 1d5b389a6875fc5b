"""Builders of small dataset files in the official formats, for tests of the parsers.

The real CIFAR-10 tarball is 163 MiB and not available to tests, so
``cifar_tarball`` writes an archive with the same member names and the same
pickle format: Python 2 ``cPickle`` protocol 2, where byte strings are
``(SHORT_)BINSTRING`` opcodes and arrays are rebuilt by
``numpy.core.multiarray._reconstruct``. ``py2_pickle`` writes exactly that with
the pure-Python pickler of the standard library.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct


class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickles as Python 2 wrote them (str/bytes -> BINSTRING, numpy.core paths)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is _reconstruct:  # numpy 1.x module path, as in the official files
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_batch(images: np.ndarray, labels: list[int], name: str) -> dict:
    """A batch dict as in cifar-10-batches-py: data (N, 3072) uint8 (R, G, B planes), labels list."""
    return {
        "batch_label": name,
        "labels": list(labels),
        "data": np.ascontiguousarray(images.reshape(len(images), 3072)),
        "filenames": [f"img_{i}.png" for i in range(len(images))],
    }


def tiny_cifar_images(batch: int, n: int) -> np.ndarray:
    """(n, 3, 32, 32) uint8 whose pixels encode where they are: R = 10 * batch + i, G = row, B = column."""
    out = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        out[i, 0] = 10 * batch + i
        out[i, 1] = np.arange(32)[:, None]
        out[i, 2] = np.arange(32)[None, :]
    return out


def cifar_tarball(path: Path, per_batch: int = 3, members: dict[str, bytes] | None = None) -> dict[str, tuple]:
    """Write a tiny cifar-10-python.tar.gz; ``members`` replaces/adds raw member bytes by base name.

    Returns:
        base name -> (images (n, 3, 32, 32), labels) written for each real batch.
    """
    written, blobs = {}, {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names, start=1):
        images = tiny_cifar_images(b, per_batch)
        labels = [(b + i) % 10 for i in range(per_batch)]
        written[name] = (images, np.array(labels))
        blobs[name] = py2_pickle(cifar_batch(images, labels, name))
    blobs["batches.meta"] = py2_pickle({"label_names": ["airplane"] * 10, "num_vis": 3072})
    blobs.update(members or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in ["batches.meta", *names, *sorted(set(blobs) - set(names) - {"batches.meta"})]:
            if name not in blobs:
                continue
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blobs[name])
            tar.addfile(info, io.BytesIO(blobs[name]))
    return written


class RunsCode:
    """Pickles to a call of ``os.system``: what a malicious 'batch' would contain."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))
