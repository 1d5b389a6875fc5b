"""genlab.allocator: the training loop keeps a step's freed memory in the process (glibc), and stands aside
for the user's own allocator settings."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from genlab import allocator

# In a fresh process: one step of the VAE preset through genlab's loop (which tunes malloc unless told not
# to), then the minor page faults of its training step in steady state (steps 4-6 of the same parts). The
# parts are built here, not with benchmarks/profile_step.step_parts: that tunes malloc itself, and the test
# is that the loop does.
STEADY_STATE_FAULTS = """
import json, resource, sys, tempfile, torch
from genlab import allocator
from genlab.configs import resolve_train_config
from genlab.data import load_dataset
from genlab.data.loader import BatchStream
from genlab.train.loop import make_optimizer, train
from genlab.train.run import build_model, build_objective
from genlab.train.step import PhaseOptimizers, train_step

torch.set_num_threads(1)
cfg = resolve_train_config(preset="vae-binarized-mnist", data_root=sys.argv[1],
                           overrides=["train.steps=1", "train.progress=false"])
with tempfile.TemporaryDirectory() as run_dir:
    train(cfg, run_dir, log=None)
data = load_dataset(cfg.data.name, "train", cfg.data)
model, objective = build_model(cfg, data.spec), build_objective(cfg, data.spec)
opts = PhaseOptimizers(model, model.phases(), lambda p: make_optimizer(cfg, p))
stream = BatchStream(data, cfg.train.batch_size, 1, 0)
faults = []
for step in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    train_step(model, objective, stream.micro_batches(step), step, opts)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"allocator": allocator.keep_freed_memory(), "faults_per_step": sum(faults[3:]) / 3}))
"""


def _steady_state(data_root, genlab_malloc: str) -> dict:
    # the user's own settings would make genlab stand aside: not in this child
    env = {k: v for k, v in os.environ.items() if k not in allocator.GLIBC_TUNING and k != "LD_PRELOAD"}
    out = subprocess.run([sys.executable, "-c", STEADY_STATE_FAULTS, str(data_root)], capture_output=True, text=True,
                         env={**env, "GENLAB_MALLOC": genlab_malloc}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_the_loop_keeps_a_steps_pages_in_the_process(data_root):
    tuned, system = _steady_state(data_root, ""), _steady_state(data_root, "system")
    assert tuned["allocator"] == "kept" and system["allocator"] == "GENLAB_MALLOC=system"
    # Kept: fewer than 200 new pages (800 KiB) a step.
    # (glibc's defaults take about 9,000 new pages a step here: README, "Where the time goes".)
    assert tuned["faults_per_step"] < 200, (tuned, system)
    assert tuned["faults_per_step"] < system["faults_per_step"], (tuned, system)


@pytest.mark.parametrize("env, reason", [
    ({"GENLAB_MALLOC": "system"}, "GENLAB_MALLOC=system"),
    ({"MALLOC_TRIM_THRESHOLD_": "1048576"}, "MALLOC_* set in the environment"),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "LD_PRELOAD allocator"),
])
def test_the_users_own_allocator_settings_win(monkeypatch, env, reason):
    for name in (*allocator.GLIBC_TUNING, "GENLAB_MALLOC", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert allocator._tune() == reason  # decided before mallopt is reached
