"""The one training loop: exact resume, DDP and gradient-accumulation equivalence, non-finite steps, checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

from genlab.config import RunConfig, apply_overrides
from genlab.registry import OBJECTIVES
from genlab.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, load_latest
from genlab.train.loop import TrainingDiverged, train

TINY = ["data.name=digits", "model.channels=8,16", "model.hidden=32", "model.latent_dim=4", "train.batch_size=32",
        "train.log_every=2", "train.progress=false", "train.device=cpu"]


def _cfg(model="vae", extra=(), objective=None):
    return apply_overrides(RunConfig.create(model, objective), TINY + list(extra))


def _weights(run_dir, name="model"):
    ckpt = load_latest(run_dir)
    return ckpt[name]


def _assert_same(a, b, exact=True, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), f"{k} differs"
        else:
            assert torch.allclose(a[k], b[k], atol=atol, rtol=0), f"{k} differs by {(a[k] - b[k]).abs().max()}"


def test_interrupted_and_resumed_run_ends_with_identical_weights(tmp_path):
    # The EMA warms up (count): its decay depends on the updates before, which the checkpoint must restore.
    extra = ["train.steps=14", "train.ckpt_every=4", "train.ema_decay=0.9", "train.ema_warmup=count",
             "optim.schedule=cosine", "optim.warmup_steps=3"]
    full = train(_cfg(extra=extra), tmp_path / "full")
    assert full.step == 14 and not full.interrupted
    part = train(_cfg(extra=extra), tmp_path / "part", until_step=6)
    assert part.step == 6
    resumed = train(None, tmp_path / "part", resume=True)
    assert resumed.step == 14
    _assert_same(_weights(tmp_path / "full"), _weights(tmp_path / "part"))
    _assert_same(_weights(tmp_path / "full", "ema"), _weights(tmp_path / "part", "ema"))
    full_optim, part_optim = _weights(tmp_path / "full", "optim"), _weights(tmp_path / "part", "optim")
    _assert_same(full_optim, part_optim)
    rows = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12, 14]


def test_training_says_what_it_will_compute_and_then_how_long(tmp_path):
    lines = []
    train(_cfg(extra=["train.steps=24", "train.ckpt_every=100"]), tmp_path / "run", until_step=22, log=lines.append)
    assert len(lines) == 2
    assert "vae on digits: " in lines[0] and "M weights; steps 1-22 of 32 images" in lines[0]
    assert "epoch 0.5 at the end" in lines[0] and str(tmp_path / "run") in lines[0]  # 22 x 32 of 1,437 digits
    assert "steps/s over the first 20 steps: about" in lines[1] and "for the 2 left" in lines[1]
    assert f"genlab train --resume {tmp_path / 'run'}" in lines[1]
    lines.clear()
    train(None, tmp_path / "run", resume=True, log=lines.append)
    assert "steps 23-24 of 32 images" in lines[0] and len(lines) == 1  # nothing left to estimate at step 20


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    one = train(_cfg("autoencoder", ["train.steps=5"]), tmp_path / "one")
    acc = train(_cfg("autoencoder", ["train.steps=5", "train.grad_accum=4"]), tmp_path / "acc")
    assert one.step == acc.step == 5
    _assert_same(_weights(tmp_path / "one"), _weights(tmp_path / "acc"), exact=False, atol=1e-5)


def test_ddp_with_two_processes_matches_single_process(tmp_path):
    overrides = [f"--set={o}" for o in TINY + ["train.steps=6"]]
    base = [sys.executable, "-m", "genlab.cli", "train", "autoencoder", "--seed", "3"] + overrides
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(base + ["--out", str(tmp_path / "single")], capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "genlab.cli", "train", "autoencoder", "--seed", "3", *overrides,
                          "--out", str(tmp_path / "ddp")], capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    _assert_same(_weights(tmp_path / "single"), _weights(tmp_path / "ddp"), exact=False, atol=1e-5)
    # Rank 0 alone writes: one metrics line per logging step, not two.
    steps = [json.loads(l)["step"] for l in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


@OBJECTIVES.register("test-poisoned")
class _Poisoned:
    """Reconstruction loss that turns into NaN on chosen steps (or from a step on)."""

    @dataclass
    class Config:
        bad_steps: str = ""  # comma-separated steps
        bad_from: int = -1

    def __init__(self, cfg, data):
        self.cfg = cfg
        self.bad = {int(s) for s in cfg.bad_steps.split(",") if s}
        self.inner = OBJECTIVES.get("reconstruction")(OBJECTIVES.get("reconstruction").Config(), data)

    def __call__(self, model, batch, phase, step):
        terms = self.inner(model, batch, phase, step)
        if step in self.bad or 0 <= self.cfg.bad_from <= step:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    cfg = _cfg("autoencoder", ["train.steps=6", "objective.bad_steps=2,3"], objective="test-poisoned")
    result = train(cfg, tmp_path / "run", until_step=2)
    before = _weights(tmp_path / "run")
    result = train(None, tmp_path / "run", resume=True, until_step=4)
    assert result.skipped_steps == 2
    _assert_same(before, _weights(tmp_path / "run"))  # skipped steps leave the weights alone
    result = train(None, tmp_path / "run", resume=True)
    assert result.step == 6 and result.skipped_steps == 2
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "run").values())


def test_a_diverging_run_stops_and_keeps_its_last_good_checkpoint(tmp_path):
    cfg = _cfg("autoencoder", ["train.steps=40", "train.ckpt_every=3", "train.max_bad_steps=4",
                               "objective.bad_from=5"], objective="test-poisoned")
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(cfg, tmp_path / "run")
    ckpt = load_latest(tmp_path / "run")
    assert ckpt["state"]["step"] == 9  # written before the streak passed the limit
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_corrupt_checkpoint_is_detected_by_checksum_and_the_previous_one_used(tmp_path):
    train(_cfg("autoencoder", ["train.steps=4", "train.ckpt_every=2"]), tmp_path / "run")
    newest, older = list_checkpoints(tmp_path / "run")
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt: sha256"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match="skipped corrupt checkpoint"):
        ckpt = load_latest(tmp_path / "run")
    assert ckpt["path"] == older


def test_an_unfinished_checkpoint_write_leaves_the_previous_one_valid(tmp_path):
    train(_cfg("autoencoder", ["train.steps=2", "train.ckpt_every=2"]), tmp_path / "run")
    root = tmp_path / "run" / "checkpoints"
    shutil.copytree(root / "step_00000002", root / ".tmp_step_00000004")  # a crash mid-write
    (root / ".tmp_step_00000004" / "state.json").unlink()
    assert load_latest(tmp_path / "run")["state"]["step"] == 2


def test_checkpoints_hold_no_pickles(tmp_path):
    train(_cfg("vae", ["train.steps=2"]), tmp_path / "run")
    folder = list_checkpoints(tmp_path / "run")[0]
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "optim.safetensors",
                                                        "rng.safetensors", "state.json"]
    for f in folder.glob("*.safetensors"):
        load_file(str(f))  # plain tensors only
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["name"] == "vae" and config["train"]["steps"] == 2
    assert (tmp_path / "run" / "git.txt").read_text().strip()


def test_two_optimizer_gan_run_resumes_exactly(tmp_path):
    extra = ["data.name=digits", "train.steps=6", "train.batch_size=16", "train.ema_decay=0.9",
             "train.progress=false", "train.device=cpu", "train.log_every=3"]
    cfg = lambda: apply_overrides(RunConfig.create("dcgan"), extra)  # noqa: E731
    train(cfg(), tmp_path / "full")
    train(cfg(), tmp_path / "part", until_step=3)
    train(None, tmp_path / "part", resume=True)
    for name in ("model", "ema", "optim"):
        _assert_same(_weights(tmp_path / "full", name), _weights(tmp_path / "part", name))
    ema_keys = _weights(tmp_path / "full", "ema").keys()
    assert ema_keys and all(k.startswith("generator.") for k in ema_keys)  # EMA of G only
    assert {"D", "G"} <= {k.split("/")[0] for k in _weights(tmp_path / "full", "optim")}
    row = json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "train/D/loss" in row and "train/G/loss" in row and "optim/D/grad_norm" in row


def test_huge_gradient_norm_skips_are_capped(tmp_path):
    """With a threshold every norm exceeds, updates are skipped, but never more than optim.max_norm_skips in a
    row: the next update is taken (the failure this prevents: a norm that stays high skips every update)."""
    start = _weights(_run(tmp_path / "start", ["train.steps=1", "optim.skip_grad_norm=1e-12",
                                                 "optim.max_norm_skips=100"]))
    capped = _run(tmp_path / "capped", ["train.steps=6", "optim.skip_grad_norm=1e-12", "optim.max_norm_skips=2"])
    assert load_latest(capped)["state"]["norm_skipped_steps"] == 4  # skip, skip, update, skip, skip, update
    assert not torch.equal(_weights(capped)["decoder.conv.0.body.1.weight"], start["decoder.conv.0.body.1.weight"])
    stuck = _run(tmp_path / "stuck", ["train.steps=6", "optim.skip_grad_norm=1e-12", "optim.max_norm_skips=100"])
    _assert_same(start, _weights(stuck))  # without the cap nothing is ever learnt


def _run(run_dir, extra):
    cfg = _cfg("vae", ["model.blocks=1"] + extra)
    train(cfg, run_dir)
    return run_dir
