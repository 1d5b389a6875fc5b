"""The shared model tester (STYLE.md, tests in layers): every registered network passes it.

check_model(model, objective, batch) asserts: the objective returns finite per-example
terms of shape (B,); the forward pass is deterministic for a fixed seed; a safetensors
round trip reproduces the outputs exactly; a training step on each phase changes that
phase's weights; an evaluation pass changes no weight or buffer.
"""

from __future__ import annotations

import copy

import torch
from safetensors.torch import load_file, save_file

from genlab.train.step import PhaseOptimizers, train_step


def _terms(model, objective, batch, phase, step=0, seed=0):
    torch.manual_seed(seed)
    return objective(model, batch, phase, step)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_model(model, objective, batch, tmp_path, step_lr: float = 1e-2):
    B = batch["x"].shape[0]
    phases = model.phases()
    # Shapes and finiteness of every term, for every phase.
    for ph in phases:
        terms = _terms(model, objective, batch, ph.name)
        assert "loss" in terms, "objectives must return a 'loss' term"
        for name, value in terms.items():
            assert value.shape == (B,), f"term {name!r} of phase {ph.name} has shape {tuple(value.shape)}, not ({B},)"
            assert torch.isfinite(value).all(), f"term {name!r} is not finite"
    # Determinism for a fixed seed.
    model.eval()
    a = _terms(model, objective, batch, phases[0].name, seed=3)["loss"]
    b = _terms(model, objective, batch, phases[0].name, seed=3)["loss"]
    assert torch.equal(a, b), "the same seed must give the same loss"
    # safetensors round trip.
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()}, str(path))
    twin = copy.deepcopy(model)
    for p in twin.parameters():
        p.data.normal_()
    twin.load_state_dict(load_file(str(path)))
    c = _terms(twin, objective, batch, phases[0].name, seed=3)["loss"]
    assert torch.equal(a, c), "a save/load round trip must reproduce the outputs exactly"
    # An evaluation pass changes nothing.
    before = _state(model)
    with torch.no_grad():
        for ph in phases:
            _terms(model, objective, batch, ph.name)
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before), "an eval pass changed weights or buffers"
    # A training step on each phase (the trainer's own step) changes that phase's parameters.
    model.train()
    opts = PhaseOptimizers(model, phases, lambda params: torch.optim.SGD(params, lr=step_lr))
    for ph in phases:
        params = opts.params[ph.optimizer_key]
        before = [p.detach().clone() for p in params]
        torch.manual_seed(0)
        result = train_step(model, objective, [batch], 0, opts.select(ph.name))[ph.name]
        assert not result.skipped, f"phase {ph.name}: the loss or gradient is not finite"
        changed = sum(not torch.equal(b, p) for b, p in zip(before, params))
        assert changed >= 0.5 * len(params), f"phase {ph.name}: only {changed}/{len(params)} tensors changed"
