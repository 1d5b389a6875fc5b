"""A minimal in-memory phase loop for toy GANs.

It keeps the contract of the real trainer (genlab/train/loop.py) and nothing
else: one Adam per phase over the parameters of the phase's submodules; every
step, for each phase due (step % every == 0), in order: zero all gradients,
``terms = objective(model, batch, phase, step)``, back-propagate
``terms["loss"].mean()``, step that phase's optimizer only. The toy
experiments need densities known in closed form and thousands of tiny steps
in a test or a benchmark, not run folders, checkpoints or datasets, which is
why they do not go through the trainer.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from genlab.nn.spec import Phase


def phase_optimizers(model: torch.nn.Module, phases: Sequence[Phase], lr: float,
                     betas: tuple[float, float]) -> dict[str, torch.optim.Optimizer]:
    """One Adam per phase over the parameters of its named submodules (all of them for None)."""
    opts = {}
    for phase in phases:
        if phase.modules is None:
            params = list(model.parameters())
        else:
            params = [p for name in phase.modules for p in model.get_submodule(name).parameters()]
        opts[phase.name] = torch.optim.Adam(params, lr=lr, betas=betas)
    return opts


def fit(model: torch.nn.Module, objective, next_batch: Callable[[int], dict], steps: int, lr: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999), phases: Sequence[Phase] | None = None,
        record: Sequence[str] = ()) -> list[dict[str, float]]:
    """Train ``model`` for ``steps`` steps.

    Args:
        model: a model with ``phases()`` (e.g. ``ToyGAN``).
        objective: called as objective(model, batch, phase_name, step).
        next_batch: step -> batch dict ({"x": (B, d)}).
        steps: number of steps.
        lr, betas: Adam settings shared by every phase.
        phases: the phases to run (default ``model.phases()``); pass only the "D"
            phase to train the discriminator against a frozen generator.
        record: names of terms whose batch means are returned for every step
            (prefixed by the phase, e.g. "D/loss").

    Returns:
        One dict per step of the recorded batch means.
    """
    phases = list(model.phases() if phases is None else phases)
    opts = phase_optimizers(model, phases, lr, betas)
    model.train()
    history = []
    for step in range(steps):
        batch = next_batch(step)
        row = {}
        for phase in phases:
            if step % phase.every:
                continue
            model.zero_grad(set_to_none=True)
            terms = objective(model, batch, phase.name, step)
            terms["loss"].mean().backward()
            opts[phase.name].step()
            for name in record:
                if name in terms:
                    row[f"{phase.name}/{name}"] = float(terms[name].float().mean())
        history.append(row)
    model.zero_grad(set_to_none=True)
    return history
