"""The loop's speed and time options (issue 20): channels-last networks, the time box, the thread count."""

from __future__ import annotations

import copy
import json

import torch

from genlab.api import train_run
from genlab.eval.latent import iwae_log_likelihood
from genlab.train.checkpoint import load_latest
from genlab.train.run import load_run

TINY = [("train.progress", "false"), ("model.channels", "8,8"), ("model.hidden", "16"), ("train.log_every", "1")]


def test_max_seconds_stops_the_loop_resumably(tmp_path):
    # Any step takes longer than a nanosecond: the loop stops after its first, with a checkpoint.
    result = train_run("vae", out=tmp_path / "r", data="digits", steps=50, overrides=[("train.max_seconds", "1e-9"), *TINY])
    assert result.step == 1 and not result.interrupted
    assert train_run(resume=tmp_path / "r", steps=2).step == 2


def test_channels_last_trains_the_same_weights_and_saves_contiguous_ones(tmp_path):
    runs, threads = {}, torch.get_num_threads()
    for layout in ("false", "true"):
        train_run("vae", out=tmp_path / layout, data="digits", steps=3, seed=1,
                  overrides=[("train.channels_last", layout), ("train.threads", "1"), *TINY])
        runs[layout] = load_latest(tmp_path / layout)["model"]
    for name, weight in runs["true"].items():
        assert weight.is_contiguous(), name
        torch.testing.assert_close(weight, runs["false"][name], rtol=1e-4, atol=1e-5)
    rows = [json.loads(line) for line in (tmp_path / "true" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["threads"] == 1  # the count a figure used is in its metrics
    assert torch.get_num_threads() == threads  # and the caller's count is back


def test_a_channels_last_run_loads_in_its_layout_and_gives_the_same_bounds(tmp_path):
    # Evaluation and sampling run in the layout the run trained in; the numbers are those of the NCHW network.
    train_run("vae", out=tmp_path / "r", data="digits", steps=2, seed=1,
              overrides=[("train.channels_last", "true"), ("train.threads", "1"), *TINY])
    run = load_run(tmp_path / "r")
    convs = [m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    nchw = copy.deepcopy(run.model).to(memory_format=torch.contiguous_format)
    x = run.dataset("test").batch(torch.arange(8), torch.Generator().manual_seed(0))["x"]
    bounds = [iwae_log_likelihood(m, x, 16, 8, torch.Generator().manual_seed(3)) for m in (run.model, nchw)]
    torch.testing.assert_close(bounds[0], bounds[1], rtol=1e-5, atol=1e-4)
