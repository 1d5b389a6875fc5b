"""No run is lost (issue 13): atomic rewrites, crashes in the first checkpoint, failed writes, files that pass
their checksum but are not what the run needs, keep_checkpoints, file modes."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest
import torch
from safetensors.torch import save

from genlab.cli import main
from genlab.config import ConfigError, RunConfig, apply_overrides
from genlab.data.download import sha256_file
from genlab.train import checkpoint
from genlab.train.checkpoint import CheckpointError, list_checkpoints, load_latest
from genlab.train.loop import train
from genlab.train.run import load_run

TINY = ["data.name=digits", "model.channels=8,16", "model.hidden=32", "model.latent_dim=4", "train.batch_size=32",
        "train.log_every=1", "train.progress=false", "train.device=cpu"]


def _cfg(*extra, model="autoencoder"):
    return apply_overrides(RunConfig.create(model), TINY + list(extra))


class _Crash(BaseException):
    """A power cut: nothing after it runs, no handler catches it."""


def _crash_when_renaming(monkeypatch, prefix):
    real = os.rename

    def rename(src, dst):
        if os.path.basename(src).startswith(prefix):
            raise _Crash(f"crash while renaming {src}")
        return real(src, dst)

    monkeypatch.setattr(checkpoint.os, "rename", rename)


def test_rewriting_the_only_checkpoint_never_leaves_the_run_without_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(_cfg("train.steps=2", "train.keep_checkpoints=1"), run)
    before = load_latest(run)["model"]
    # `--resume` of a finished run writes step 2 again; a crash just before the new copy is renamed into place.
    with monkeypatch.context() as m:
        _crash_when_renaming(m, ".tmp_step")
        with pytest.raises(_Crash):
            train(None, run, resume=True)
    ckpt = load_latest(run)  # the old copy, moved aside, still counts
    assert ckpt["state"]["step"] == 2
    assert all(torch.equal(before[k], ckpt["model"][k]) for k in before)
    assert train(None, run, resume=True).step == 2  # and the next write puts everything back in order
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002"]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith((".old", ".tmp"))]


@pytest.mark.parametrize("how", ["same command", "resume"])
def test_a_crash_during_the_first_checkpoint_can_be_continued(tmp_path, monkeypatch, how):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _crash_when_renaming(m, ".tmp_step")
        with pytest.raises(_Crash):
            train(_cfg("train.steps=4", "train.ckpt_every=2"), run)
    assert not list_checkpoints(run) and (run / "config.json").exists()
    if how == "same command":
        result = train(_cfg("train.steps=4", "train.ckpt_every=2"), run)
    else:
        with pytest.warns(UserWarning, match="no checkpoint yet"):
            result = train(None, run, resume=True)
    assert result.step == 4
    fresh = train(_cfg("train.steps=4", "train.ckpt_every=2"), tmp_path / "fresh")
    assert fresh.step == 4
    a, b = load_latest(run)["model"], load_latest(tmp_path / "fresh")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the rows of the crashed attempt are not repeated


def test_a_failed_checkpoint_write_cleans_up_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real = checkpoint.write_tensors
    calls = []

    def full_disk(tensors, path):
        calls.append(path)
        if "step_00000004" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path)

    monkeypatch.setattr(checkpoint, "write_tensors", full_disk)
    args = ["train", "autoencoder", "--out", str(run), "--steps", "6"] + [
        f"--set={o}" for o in TINY + ["train.ckpt_every=2", "train.keep_checkpoints=1"]]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "No space left on device" in err and "step_00000002 is intact" in err and f"--resume {run}" in err
    assert [p.name for p in (run / "checkpoints").iterdir() if p.is_dir()] == ["step_00000002"]
    monkeypatch.setattr(checkpoint, "write_tensors", real)
    assert main(["train", "--resume", str(run)]) == 0
    assert load_latest(run)["state"]["step"] == 6


def test_a_failed_first_checkpoint_write_says_the_run_can_start_again(tmp_path, monkeypatch):
    def no_permission(tensors, path):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint, "write_tensors", no_permission)
    with pytest.raises(checkpoint.CheckpointWriteError, match="no checkpoint was written before.*--resume"):
        train(_cfg("train.steps=2"), tmp_path / "run")
    assert not list((tmp_path / "run" / "checkpoints").iterdir())


def _replace_file(folder, name, data: bytes):
    """Write ``data`` as ``name`` and record its sha256, as if the file had been written that way."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "state.json").read_text())
    manifest["files"][name] = sha256_file(folder / name)
    (folder / "state.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["not safetensors", "missing tensors"])
def test_a_checkpoint_that_passes_its_checksum_but_is_unusable_falls_back(tmp_path, damage, capsys):
    run = tmp_path / "run"
    train(_cfg("train.steps=4", "train.ckpt_every=2", model="vae"), run)
    expected = load_latest(run)["model"]
    newest, older = list_checkpoints(run)
    if damage == "not safetensors":
        _replace_file(newest, "model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    else:
        weights = load_latest(run)["model"]
        _replace_file(newest, "model.safetensors", save({k: v for k, v in list(weights.items())[1:]}))
    match = "not a valid safetensors" if damage == "not safetensors" else "does not hold the tensors"
    with pytest.warns(UserWarning, match=match):  # sample, eval, report, score, ood and complete load this way
        loaded = load_run(run)
    assert loaded.step == 2
    with pytest.warns(UserWarning, match=match):
        assert main(["sample", str(run), "--n", "4", "--device", "cpu", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()
    with pytest.warns(UserWarning, match=match):
        assert train(None, run, resume=True).step == 4  # resumed from step 2, it redoes steps 3 and 4
    again = load_latest(run)["model"]
    assert all(torch.equal(expected[k], again[k]) for k in expected)
    assert older.exists()


def test_keep_checkpoints_zero_keeps_all_and_negative_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="keep_checkpoints=-1 is not allowed"):
        _cfg("train.keep_checkpoints=-1")
    train(_cfg("train.steps=6", "train.ckpt_every=2", "train.keep_checkpoints=0"), tmp_path / "all")
    assert len(list_checkpoints(tmp_path / "all")) == 3
    train(_cfg("train.steps=6", "train.ckpt_every=2", "train.keep_checkpoints=1"), tmp_path / "one")
    assert [p.name for p in list_checkpoints(tmp_path / "one")] == ["step_00000006"]


def test_checkpoint_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        train(_cfg("train.steps=1"), tmp_path / "run")
    finally:
        os.umask(old)
    folder = list_checkpoints(tmp_path / "run")[0]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes and all(mode == 0o644 for mode in modes.values()), modes
    assert stat.S_IMODE((tmp_path / "run" / "checkpoints" / "latest").stat().st_mode) == 0o644


def test_an_unreadable_manifest_is_a_corrupt_checkpoint(tmp_path):
    train(_cfg("train.steps=2"), tmp_path / "run")
    folder = list_checkpoints(tmp_path / "run")[0]
    (folder / "state.json").write_text(json.dumps({"step": 2}))  # valid JSON, no file list
    with pytest.raises(CheckpointError, match="state.json is unreadable"):
        load_latest(tmp_path / "run")
