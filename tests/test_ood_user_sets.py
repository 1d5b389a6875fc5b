"""Users' own outlier sets for `genlab ood --ood PATH`, and the polarity warning of `genlab score`.

A folder of images, an .npz and a gzipped IDX file holding the same digits must give the
same model-format images (the folder's through the rule of `genlab score`), and an image
with the opposite background of the training data is named in a warning.
"""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

import genlab  # noqa: F401  (fills the registries)
from genlab.config import DataConfig, RunConfig, apply_overrides
from genlab.data import load_dataset
from genlab.nn.spec import DataSpec
from genlab.ood.images import image_backgrounds, read_outlier_set, read_user_image
from genlab.train.loop import train

DIGITS = DataSpec(1, 8, 8, bits=8)


def _digits(n=12) -> np.ndarray:
    return load_dataset("digits", "test", DataConfig(name="digits")).images[:n, 0].numpy()  # (n, 8, 8) uint8


def _write_sets(root, digits: np.ndarray):
    """The same digits as a folder of PNGs (enlarged 3x by pixel replication), an .npz and a gzipped IDX file."""
    folder = root / "pngs"
    folder.mkdir()
    for i, d in enumerate(digits):
        Image.fromarray(np.kron(d, np.ones((3, 3), np.uint8)), "L").save(folder / f"{i:03d}.png")
    npz = root / "digits.npz"
    np.savez(npz, images=digits)
    idx = root / "digits-idx3-ubyte.gz"
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3i", *digits.shape)
    idx.write_bytes(gzip.compress(header + digits.tobytes()))
    return folder, npz, idx


def test_folder_npz_and_idx_give_the_same_images(tmp_path):
    digits = _digits()
    folder, npz, idx = _write_sets(tmp_path, digits)
    sets = [read_outlier_set(p, DIGITS, "black") for p in (folder, npz, idx)]
    for s in sets:
        assert s.images.dtype == torch.uint8 and s.transform == "scale" and s.labels is None
        assert torch.equal(s.images, torch.from_numpy(digits)[:, None])
    # A folder image is converted exactly as `genlab score` converts the file.
    assert torch.equal(sets[0].images[3], read_user_image(folder / "003.png", DIGITS, "black"))
    assert "rule of `genlab score`" in sets[0].note and "12 uint8 images of 1x8x8" in sets[1].note


def test_arrays_in_other_layouts_and_bad_files(tmp_path):
    digits = _digits(4)
    last = tmp_path / "last.npz"
    np.savez(last, np.repeat(digits[..., None], 3, axis=3))  # (N, H, W, 3), unnamed single array
    assert read_outlier_set(last, DataSpec(3, 8, 8, bits=8), "black").images.shape == (4, 3, 8, 8)
    two = tmp_path / "two.npz"
    np.savez(two, a=digits, b=digits)
    with pytest.raises(ValueError, match=r"holds arrays \[a, b\].*'images'"):
        read_outlier_set(two, DIGITS, "black")
    floats = tmp_path / "floats.npz"
    np.savez(floats, images=digits / 255.0)
    with pytest.raises(ValueError, match="uint8"):
        read_outlier_set(floats, DIGITS, "black")
    one = tmp_path / "one.png"
    Image.fromarray(digits[0], "L").save(one)
    with pytest.raises(ValueError, match="genlab score"):
        read_outlier_set(one, DIGITS, "black")


def test_backgrounds_are_read_per_image():
    dark = torch.zeros(1, 1, 6, 6, dtype=torch.uint8)
    light = torch.full((1, 1, 6, 6), 240, dtype=torch.uint8)
    light[..., 2:4, 2:4] = 0  # black strokes on white
    assert image_backgrounds(torch.cat([dark, light])) == [("black", 0), ("white", 240)]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    cfg = RunConfig.create("vae", None)
    apply_overrides(cfg, ["data.name=digits", "train.steps=40", "train.batch_size=64", "train.progress=false",
                          "train.log_every=1000", "train.ckpt_every=1000", "optim.lr=3e-3", "model.latent_dim=4",
                          "model.channels=8", "model.hidden=32", "model.blocks=0"])
    out = tmp_path_factory.mktemp("vae")
    train(cfg, out)
    return out


def test_ood_command_takes_a_folder_an_npz_and_an_idx_file(vae_run, tmp_path):
    from genlab.ood.run import OODOptions
    from genlab.reports.ood import ood_run

    folder, npz, idx = _write_sets(tmp_path, 255 - _digits(20))  # inverted: black strokes on white
    lines = []
    opts = OODOptions(ood=[str(folder), str(npz), str(idx)], max_examples=10, reference_examples=20,
                      typicality_m=5, iwae_k=2, seed=0, device="cpu", report=False)
    result = ood_run(vae_run, opts, log=lines.append)
    for path in (folder, npz, idx):
        entry = result["ood"][str(path)]
        assert entry["n"] == 10 and entry["n_split"] == 20 and entry["reversed_polarity"] == 1.0
        assert str(path) in entry["note"] and 0 <= entry["metrics"]["bpd"]["auroc"] <= 1
    assert sum("reversed polarity" in line for line in lines) == 3
    with pytest.raises(ValueError, match="unknown OOD dataset 'no-such-set'.*image folder, .npz or IDX"):
        ood_run(vae_run, OODOptions(ood=["no-such-set"]))


def test_score_warns_about_reversed_polarity(vae_run, tmp_path, capsys):
    from genlab.cli import main

    digit = _digits(1)[0]
    Image.fromarray(np.kron(digit, np.ones((4, 4), np.uint8)), "L").save(tmp_path / "digit.png")
    Image.fromarray(np.kron(255 - digit, np.ones((4, 4), np.uint8)), "L").save(tmp_path / "ink.png")
    out = tmp_path / "maps"
    assert main(["score", str(vae_run), str(tmp_path / "digit.png"), str(tmp_path / "ink.png"), "--out", str(out),
                 "--iwae-k", "2", "--device", "cpu"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "ink.png" in warnings[0] and "white background" in warnings[0]
    entries = {e["path"].rsplit("/", 1)[-1]: e for e in json.loads((out / "scores.json").read_text())["images"]}
    assert entries["ink.png"]["reversed_polarity"] and not entries["digit.png"]["reversed_polarity"]
