"""The Frey faces: 1965 frames of one face, 28x20 8-bit grey, from Sam Roweis' page.

Used as a continuous-data benchmark by Kingma & Welling, "Auto-Encoding
Variational Bayes", arXiv:1312.6114. The MATLAB file holds one uint8 variable
``ff`` of shape (560, 1965): each column is a 28x20 image stored row-major.

There is no official split; genlab holds out 200 faces chosen by
``seeded_split(1965, 200, seed=0)``. The faces are consecutive video frames, so
neighbouring frames are near-duplicates and a random split puts near-copies of
test faces in the training set: test likelihoods measure fit, not much more.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from genlab.data.base import ImageSet
from genlab.data.catalog import Dataset, DatasetInfo, seeded_split
from genlab.data.download import DataFile, data_root, read_verified
from genlab.data.errors import parsing, unreadable_file
from genlab.registry import DATASETS

FILE = DataFile("frey/frey_rawface.mat", "md5:5aeb024d42b8a6091f30e5eb18c8a48d", ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",))
N_FACES, N_TEST, SPLIT_SEED = 1965, 200, 0


def parse_frey(content: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """uint8 faces (1965, 28, 20) from the bytes of ``frey_rawface.mat``."""
    from scipy.io import loadmat  # scipy is slow to import; only this dataset needs it

    ff = loadmat(io.BytesIO(content), variable_names=["ff"]).get("ff")
    if ff is None:
        raise unreadable_file(Path(path), "the MATLAB file has no variable 'ff'")
    if ff.dtype != np.uint8 or ff.shape != (28 * 20, N_FACES):
        raise unreadable_file(Path(path), f"variable 'ff' is {ff.dtype} {ff.shape}, expected uint8 (560, {N_FACES})")
    return np.ascontiguousarray(ff.T).reshape(-1, 28, 20)


@DATASETS.register("frey")
class Frey(Dataset):
    """Frey faces (Roweis; used by Kingma & Welling 2013), 1x28x20, 8-bit, unlabelled."""

    info = DatasetInfo(
        name="frey",
        description="Frey faces (Roweis; Kingma & Welling 2013 arXiv:1312.6114), 8-bit grey 28x20, no labels",
        shape=(1, 28, 20), bits=8, classes=0,
        splits={"train": N_FACES - N_TEST, "test": N_TEST},
        files=(FILE,), folder="frey",
    )

    def load(self, split: str, cfg) -> ImageSet:
        path, content = read_verified(FILE, data_root(cfg), cfg.download)
        with parsing(path, FILE.checksum, FILE.urls):
            faces = parse_frey(content, path)
        index = seeded_split(N_FACES, N_TEST, SPLIT_SEED)[split]
        images = torch.from_numpy(faces).unsqueeze(1)[index]
        note = (f"no official split: {N_TEST} test faces held out by seeded_split(seed={SPLIT_SEED}) "
                f"(SplitMix64 order), {N_FACES - N_TEST} train; consecutive frames are near-duplicates")
        return self.imageset(split, images, None, "scale", note)
