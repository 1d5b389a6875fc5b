"""Autoregressive models through the command line: train, eval, sample, complete, report.

The bundled 8x8 digits need no download; the binarized-MNIST run is skipped
when the shared datasets are absent.
"""

from __future__ import annotations

import json
import math

import pytest

import genlab.eval.exact  # noqa: F401  (registers "exact-nll" even before genlab/__init__ lists it)
import genlab.models.autoregressive  # noqa: F401
import genlab.objectives.autoregressive  # noqa: F401
import genlab.sampling.autoregressive  # noqa: F401
from genlab.cli import main
from genlab.config import DataConfig
from genlab.data import load_dataset
from genlab.data.base import images_sha256

COMMON = ["--set", "train.progress=false", "--set", "train.log_every=5", "--device", "cpu"]


def test_train_eval_sample_complete_report(conditional_run, tmp_path, capsys):
    run = conditional_run
    assert main(["eval", str(run), "--device", "cpu", "--max-examples", "100"]) == 0
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    nll, bpd = metrics["nll"], metrics["bpd"]
    assert nll["kind"] == "exact" and nll["unit"] == "nats/image" and bpd["unit"] == "bits/dim"
    assert "digits/test, 100 images" in nll["protocol"]
    assert bpd["value"] == pytest.approx(nll["value"] / (64 * math.log(2)), rel=1e-9)
    assert bpd["value"] < 8.0  # 30 steps beat the uniform 8 bits/dim of 256 levels

    assert main(["sample", str(run), "--n", "4", "--label", "3", "--device", "cpu",
                 "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert main(["sample", str(run), "--n", "4", "--device", "cpu", "--out", str(tmp_path / "t.png")]) == 2
    assert "class-conditional" in capsys.readouterr().err

    assert main(["complete", str(run), "--images", "2", "--completions", "2", "--device", "cpu",
                 "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000

    assert main(["report", str(run), "--device", "cpu"]) == 0
    md = (run / "report.md").read_text()
    for fig in ("samples.png", "completions.png", "surprise.png"):
        assert fig in md and (run / "figures" / fig).exists()


def test_pixelcnn_on_binarized_mnist_end_to_end(data_root, tmp_path):
    run = tmp_path / "pixelcnn"
    tiny = ["--set", "model.channels=8", "--set", "model.residual_blocks=1", "--set", "model.head_channels=16",
            "--batch-size", "16", "--data-root", str(data_root)]
    assert main(["train", "pixelcnn", "--data", "binarized-mnist", "--out", str(run), "--steps", "20",
                 "--set", "optim.lr=3e-3", *tiny, *COMMON]) == 0
    assert main(["eval", str(run), "--device", "cpu", "--max-examples", "64", "--data-root", str(data_root)]) == 0
    written = json.loads((run / "eval.json").read_text())
    nll = written["metrics"]["nll"]
    assert "binarized-mnist/test, 64 images" in nll["protocol"] and "random subset" in nll["protocol"]
    test = load_dataset("binarized-mnist", "test", DataConfig(name="binarized-mnist", root=str(data_root)))
    assert written["run"]["split_sha256"] == images_sha256(test.images)  # which images were evaluated
    assert nll["value"] < 784 * math.log(2)  # better than a fair coin per pixel
    assert main(["sample", str(run), "--n", "2", "--device", "cpu", "--out", str(tmp_path / "x.png"),
                 "--data-root", str(data_root)]) == 0
