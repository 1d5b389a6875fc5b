"""MNIST and Fashion-MNIST, stored in the IDX format (gzipped).

* MNIST: LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to
  document recognition", Proc. IEEE 1998. http://yann.lecun.com/exdb/mnist/
* Fashion-MNIST: Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset
  for Benchmarking Machine Learning Algorithms", arXiv:1708.07747.

IDX: a 4-byte magic ``0 0 <type> <ndim>``, ``ndim`` big-endian int32 sizes,
then the values in row-major order. Only type 0x08 (unsigned byte) occurs here.
Both the official ``.gz`` files and their gunzipped forms are accepted, each
checked against its own official MD5.
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

_UBYTE = 0x08


def parse_idx(data: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """Decode an (uncompressed) IDX file of unsigned bytes.

    Args:
        data: the whole file's bytes.
        path: the file's name, for error messages.
    Returns:
        uint8 array of the shape the header states (a read-only view of ``data``).
    Raises:
        DatasetError: bad magic, unsupported type, or a size that does not match the header.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise unreadable_file(Path(path), "not an IDX file (the first two bytes must be zero)")
    if data[2] != _UBYTE:
        raise unreadable_file(Path(path), f"IDX value type 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise unreadable_file(Path(path), f"IDX header of {ndim} dimensions is truncated")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    if len(data) - header != int(np.prod(dims)):
        raise unreadable_file(Path(path), f"IDX header says {dims} = {int(np.prod(dims))} values, the file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _files(folder: str, names: dict[str, tuple[str, str]], urls: tuple[str, ...]) -> dict[str, DataFile]:
    """DataFiles from {name: (md5 of .gz, md5 of gunzipped)}."""
    return {
        name: DataFile(f"{folder}/{name}.gz", f"md5:{gz}", tuple(f"{u}{name}.gz" for u in urls), f"md5:{raw}")
        for name, (gz, raw) in names.items()
    }


def load_idx_split(files: dict[str, DataFile], split: str, cfg, height: int = 28, width: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 of the "train" or "test" split."""
    prefix = "train" if split == "train" else "t10k"
    root = data_root(cfg)
    img_spec, lab_spec = files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]
    img_path, img_bytes = read_verified(img_spec, root, cfg.download)
    lab_path, lab_bytes = read_verified(lab_spec, root, cfg.download)
    with parsing(img_path, img_spec.checksum, img_spec.urls):
        images = parse_idx(img_bytes, img_path)
    with parsing(lab_path, lab_spec.checksum, lab_spec.urls):
        labels = parse_idx(lab_bytes, lab_path)
    if images.ndim != 3 or images.shape[1:] != (height, width):
        raise unreadable_file(img_path, f"holds images of shape {images.shape[1:]}, expected ({height}, {width})")
    if labels.ndim != 1 or len(labels) != len(images):
        raise unreadable_file(lab_path, f"holds {labels.shape} labels for {len(images)} images in {img_path.name}")
    if labels.max(initial=0) > 9:
        raise unreadable_file(lab_path, f"label {int(labels.max())} is outside 0..9")
    # One copy out of the (read-only) file buffer into a tensor that owns its memory.
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


MNIST_FILES = _files(
    "mnist",
    {
        "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    },
    # The official site first; the PyTorch team's S3 copy serves the same bytes when it is down.
    ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
)

FASHION_FILES = _files(
    "fashion-mnist",
    {
        "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    },
    (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
)


class _IDXDataset(Dataset):
    files: dict[str, DataFile]

    def load(self, split: str, cfg) -> ImageSet:
        images, labels = load_idx_split(self.files, split, cfg)
        return self.imageset(split, images, labels, "scale", note=f"official {split} split, {len(images)} images")


@DATASETS.register("mnist")
class MNIST(_IDXDataset):
    """MNIST handwritten digits (LeCun et al. 1998), 8-bit grey 28x28, 60000 train / 10000 test."""

    files = MNIST_FILES
    info = DatasetInfo(
        name="mnist",
        description="MNIST handwritten digits (LeCun et al. 1998), 8-bit grey",
        shape=(1, 28, 28), bits=8, classes=10,
        splits={"train": 60000, "test": 10000},
        files=tuple(MNIST_FILES.values()), folder="mnist",
    )


@DATASETS.register("fashion-mnist")
class FashionMNIST(_IDXDataset):
    """Fashion-MNIST clothing images (Xiao et al. 2017, arXiv:1708.07747), 8-bit grey 28x28."""

    files = FASHION_FILES
    info = DatasetInfo(
        name="fashion-mnist",
        description="Fashion-MNIST clothing (Xiao et al. 2017, arXiv:1708.07747), 8-bit grey",
        shape=(1, 28, 28), bits=8, classes=10,
        splits={"train": 60000, "test": 10000},
        files=tuple(FASHION_FILES.values()), folder="fashion-mnist",
    )
