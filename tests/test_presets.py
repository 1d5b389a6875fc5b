"""A short smoke run of every preset: it resolves, builds, trains two steps and checkpoints."""

from __future__ import annotations

import pytest

from genlab.configs import PRESETS, resolve_train_config
from genlab.train.checkpoint import load_latest
from genlab.train.loop import train


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_smoke_run(name, data_root, tmp_path):
    cfg = resolve_train_config(preset=name, steps=2, seed=0, device="cpu", batch_size=8, data_root=str(data_root),
                               overrides=["train.progress=false"])
    result = train(cfg, tmp_path / "run")
    assert result.step == 2
    assert load_latest(tmp_path / "run")["state"]["step"] == 2
