"""The training loop, ready for the next families (issue 11): optimizers shared by phases, objectives with
state saved in checkpoints, and a data-dependent initialization before the weights are broadcast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genlab.config import RunConfig, apply_overrides
from genlab.data import load_dataset
from genlab.data.loader import BatchStream
from genlab.models.latent.autoencoder import Autoencoder
from genlab.nn.spec import Phase
from genlab.registry import OBJECTIVES
from genlab.train.checkpoint import list_checkpoints, load_latest
from genlab.train.loop import train
from genlab.train.step import PhaseOptimizers, train_step
from train_workers import INIT_TARGET, mean_init

TINY = ["data.name=digits", "model.channels=8,16", "model.hidden=32", "model.latent_dim=4", "train.batch_size=32",
        "train.log_every=2", "train.progress=false", "train.device=cpu"]


def _cfg(*extra, objective=None):
    return apply_overrides(RunConfig.create("autoencoder", objective), TINY + list(extra))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _full_and_resumed(tmp_path, make_cfg, stop=3):
    train(make_cfg(), tmp_path / "full")
    train(make_cfg(), tmp_path / "part", until_step=stop)
    train(None, tmp_path / "part", resume=True)
    return load_latest(tmp_path / "full"), load_latest(tmp_path / "part")


LAZY = [Phase("main"), Phase("reg", every=2, group="main")]  # StyleGAN-style: a second phase on the same Adam


def test_two_phases_share_one_optimizer_and_its_state(tmp_path, monkeypatch):
    monkeypatch.setattr(Autoencoder, "phases", lambda self: list(LAZY))
    full, part = _full_and_resumed(tmp_path, lambda: _cfg("train.steps=6"))
    assert {k.split("/")[0] for k in full["optim"]} == {"main"}  # one optimizer, one state
    assert list(full["state"]["optimizers"]) == ["main"]
    steps = {float(v) for k, v in full["optim"].items() if k.endswith("/step")}
    assert steps == {6 + 3}  # 'main' ran on 6 steps, 'reg' on steps 0, 2, 4: every update counted once
    for name in ("model", "optim"):
        assert _same(full[name], part[name]), f"{name} differs after resume"
    row = json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "train/main/loss" in row and "train/reg/loss" in row and "optim/reg/grad_norm" in row


def test_phases_sharing_an_optimizer_must_name_the_same_modules():
    model = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "b": torch.nn.Linear(2, 2)})
    with pytest.raises(ValueError, match="phases sharing the optimizer 'D' name different modules"):
        PhaseOptimizers(model, [Phase("x", ("a",), group="D"), Phase("y", ("b",), group="D")], torch.optim.Adam)


def test_train_step_skips_a_non_finite_update_and_leaves_the_weights_alone():
    model = torch.nn.Linear(3, 1)
    opts = PhaseOptimizers(model, [Phase("main")], lambda p: torch.optim.SGD(p, lr=0.1))

    def objective(m, batch, phase, step):
        return {"loss": m(batch["x"]).squeeze(1) * batch["scale"]}

    before = [p.detach().clone() for p in model.parameters()]
    bad = train_step(model, objective, [{"x": torch.ones(4, 3), "scale": float("nan")}], 0, opts)["main"]
    assert bad.skipped and all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    good = train_step(model, objective, [{"x": torch.ones(4, 3), "scale": 1.0}], 1, opts, lr=0.5)["main"]
    assert not good.skipped and opts.optimizers["main"].param_groups[0]["lr"] == 0.5
    assert not all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


class _NoHostReads:
    """Makes every read of a tensor's value on the host (bool, int, float, item) raise."""

    NAMES = ("__bool__", "__int__", "__float__", "item")

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def __enter__(self):
        def refuse(*_):
            raise AssertionError("train_step read a tensor on the host")
        for name in self.NAMES:
            self.monkeypatch.setattr(torch.Tensor, name, refuse)

    def __exit__(self, *exc):
        self.monkeypatch.undo()


def test_fused_adam_skips_a_non_finite_update_on_the_device_without_reading_it(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    reference = torch.nn.Linear(3, 1)
    reference.load_state_dict(model.state_dict())
    make = lambda p: torch.optim.Adam(p, lr=0.1, fused=True)  # noqa: E731
    opts, ref_opts = PhaseOptimizers(model, [Phase("main")], make), PhaseOptimizers(reference, [Phase("main")], make)

    def objective(m, batch, phase, step):
        return {"loss": (m(batch["x"]).squeeze(1) * batch["scale"]) ** 2}

    good, nan = {"x": torch.ones(4, 3), "scale": 1.0}, {"x": torch.ones(4, 3), "scale": float("nan")}
    train_step(reference, objective, [good], 0, ref_opts, grad_clip=1.0)
    train_step(reference, objective, [good], 1, ref_opts, grad_clip=1.0)
    with _NoHostReads(monkeypatch):
        first = train_step(model, objective, [good], 0, opts, grad_clip=1.0)["main"]
        bad = train_step(model, objective, [nan], 1, opts, grad_clip=1.0)["main"]
        second = train_step(model, objective, [good], 2, opts, grad_clip=1.0)["main"]
    assert not first.skipped and bad.skipped and not second.skipped  # read here, after the steps
    # The skipped step left weights, moments and Adam's step count alone: two good steps equal the reference's.
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    state, ref_state = opts.optimizers["main"].state_dict()["state"], ref_opts.optimizers["main"].state_dict()["state"]
    assert all(torch.equal(state[i][k], ref_state[i][k]) for i in state for k in state[i])
    assert float(state[0]["step"]) == 2
    assert not hasattr(opts.optimizers["main"], "found_inf")  # handed over for the step only


def test_the_loop_makes_a_fused_adam_and_a_checkpoint_without_the_flag_falls_back(tmp_path):
    from genlab.train.loop import make_optimizer
    from genlab.train.step import fused_optimizer
    opt = make_optimizer(_cfg(), list(torch.nn.Linear(2, 2).parameters()))
    assert fused_optimizer(opt)
    # A checkpoint of an unfused Adam (genlab before fusing) sets the group's flags on load: then the
    # flag is read on the host, and the update is still skipped.
    model = torch.nn.Linear(3, 1)
    old = torch.optim.Adam(model.parameters(), lr=0.1)
    opts = PhaseOptimizers(model, [Phase("main")], lambda p: make_optimizer(_cfg(), p))
    opts.optimizers["main"].load_state_dict(old.state_dict())
    assert not fused_optimizer(opts.optimizers["main"])
    before = [p.detach().clone() for p in model.parameters()]
    bad = train_step(model, lambda m, b, ph, s: {"loss": m(b["x"]).squeeze(1) * float("nan")},
                     [{"x": torch.ones(2, 3)}], 0, opts)["main"]
    assert bad.skipped and all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


@OBJECTIVES.register("test-history")
class _History:
    """Reconstruction weighted by the mean of the last few batch losses: a result that depends on the state."""

    @dataclass
    class Config:
        size: int = 3

    def __init__(self, cfg, data):
        self.inner = OBJECTIVES.get("reconstruction")(OBJECTIVES.get("reconstruction").Config(), data)
        self.history = torch.zeros(cfg.size)  # (size,) the last batch-mean losses, newest first
        self.calls = 0

    def __call__(self, model, batch, phase, step):
        terms = self.inner(model, batch, phase, step)
        weight = 1.0 + torch.tanh(self.history.mean() / 50.0)
        self.history = torch.cat([terms["loss"].detach().mean().reshape(1), self.history[:-1]])
        self.calls += 1
        terms["loss"] = terms["loss"] * weight
        return terms

    def state_dict(self) -> dict:
        return {"history": self.history.clone(), "calls": self.calls, "about": {"size": len(self.history)}}

    def load_state_dict(self, state: dict) -> None:
        self.history, self.calls = state["history"].clone(), state["calls"]


def test_a_stateful_objective_is_saved_and_an_interrupted_run_resumes_exactly(tmp_path):
    make = lambda: _cfg("train.steps=6", "optim.lr=3e-3", objective="test-history")  # noqa: E731
    full, part = _full_and_resumed(tmp_path, make)
    for name in ("model", "optim", "objective"):
        assert _same(full[name], part[name]), f"{name} differs after resume"
    folder = list_checkpoints(tmp_path / "part")[0]
    assert (folder / "objective.safetensors").exists()  # tensors in safetensors, the rest in state.json
    state = json.loads((folder / "state.json").read_text())["objective"]
    assert state["calls"] == 6 and state["about"] == {"size": 3}
    assert set(load_file(str(folder / "objective.safetensors"))) == {"objective/history"}


def test_without_its_saved_state_the_resumed_run_would_differ(tmp_path, monkeypatch):
    """The control for the test above: the history buffer does change the weights."""
    monkeypatch.setattr(_History, "load_state_dict", lambda self, state: None)
    full, part = _full_and_resumed(tmp_path, lambda: _cfg("train.steps=6", "optim.lr=3e-3",
                                                          objective="test-history"))
    assert not _same(full["model"], part["model"])


def _first_batch_mean(cfg, rank=0, world=1):
    data = load_dataset(cfg.data.name, "train", cfg.data)
    stream = BatchStream(data, cfg.train.batch_size, cfg.train.grad_accum, cfg.train.seed, rank, world)
    return stream.micro_batches(0)[0]["x"].mean()


def test_data_dependent_init_runs_once_before_the_ema_copies_the_weights(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(Autoencoder, "data_init", lambda self, batch: (calls.append(1), mean_init(self, batch)),
                        raising=False)
    cfg = _cfg("train.steps=0", "train.ema_decay=0.9")
    train(cfg, tmp_path / "run")
    ckpt = load_latest(tmp_path / "run")
    expected = _first_batch_mean(cfg).expand(2)
    assert torch.equal(ckpt["model"][INIT_TARGET], expected) and torch.equal(ckpt["ema"][INIT_TARGET], expected)
    train(None, tmp_path / "run", resume=True, total_steps=2)
    assert len(calls) == 1  # a resumed run keeps its weights


def test_data_dependent_init_under_two_processes_gives_every_process_rank_0s_weights(tmp_path):
    overrides = TINY + ["train.steps=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = str(Path(__file__).with_name("train_workers.py"))
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          worker, str(tmp_path), *overrides], capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert _same(rank0, rank1)  # broadcast after the init: one set of weights
    cfg = _cfg(*overrides[len(TINY):])
    own0, own1 = _first_batch_mean(cfg, 0, 2), _first_batch_mean(cfg, 1, 2)
    assert own0 != own1  # each process's own init would differ...
    assert torch.equal(rank0[INIT_TARGET], own0.expand(2))  # ...so rank 0's is the one everybody keeps


def test_ema_follows_the_closed_form_and_weights_given_new_storage():
    from types import SimpleNamespace

    from genlab.train.ema import EMA

    class Net(torch.nn.Module):
        card = SimpleNamespace(ema_modules=None)

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    net = Net()
    w0 = net.lin.weight.detach().clone()
    ema = EMA(net, 0.9)
    with torch.no_grad():
        net.lin.weight.add_(1.0)  # in place, as an optimizer does
        net.seen.fill_(3)
    ema.update(net)
    assert torch.allclose(ema.shadow["lin.weight"], 0.9 * w0 + 0.1 * (w0 + 1.0))
    assert int(ema.shadow["seen"]) == 3  # integer buffers are copied, not averaged
    # New storage (load_state_dict(assign=True), .to() of a CPU model onto a GPU): the average follows it.
    net.load_state_dict({"lin.weight": torch.full((2, 2), 5.0), "lin.bias": torch.zeros(2),
                         "seen": torch.tensor(4)}, assign=True)
    ema.update(net)
    assert torch.allclose(ema.shadow["lin.weight"], 0.9 * (0.9 * w0 + 0.1 * (w0 + 1.0)) + 0.1 * 5.0)
    assert int(ema.shadow["seen"]) == 4


def test_a_cuda_graph_compile_mode_marks_each_step_as_a_new_iteration(tmp_path, monkeypatch):
    # With CUDA graphs (train.compile_mode=reduce-overhead) each step must tell them that the last step's
    # outputs may be overwritten; checked on the CPU with the tracing backend, which takes the mode and ignores it.
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    train(_cfg("train.steps=3", "train.compile=true", "train.compile_backend=eager",
               "train.compile_mode=reduce-overhead"), tmp_path / "graphs")
    assert len(marks) == 3
    train(_cfg("train.steps=3", "train.compile=true", "train.compile_backend=eager"), tmp_path / "default")
    assert len(marks) == 3  # the default mode records no graphs: no marks
