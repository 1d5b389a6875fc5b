"""Shared fixtures: where the real datasets are, and small run configurations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """GENLAB_DATA if set, else the `shared/data` folder beside the repository (as in CI)."""
    env = os.environ.get("GENLAB_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "mnist").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("real datasets not found: set GENLAB_DATA or put shared/data beside the repository")
    return root


@pytest.fixture(autouse=True)
def _fixed_threads():
    # Keep tests reproducible and polite on small CI machines.
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory):
    """A class-conditional gated PixelCNN trained 30 steps on the bundled 8x8 digits (no download)."""
    from genlab.cli import main

    run = tmp_path_factory.mktemp("runs") / "gated"
    assert main(["train", "gated-pixelcnn", "--data", "digits", "--out", str(run), "--steps", "30",
                 "--batch-size", "32", "--set", "model.channels=12", "--set", "model.layers=3",
                 "--set", "model.head_channels=24", "--set", "model.conditional=true", "--set", "optim.lr=3e-3",
                 "--set", "train.progress=false", "--set", "train.log_every=5", "--device", "cpu"]) == 0
    return run
