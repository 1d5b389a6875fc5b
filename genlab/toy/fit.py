"""A minimal in-memory phase loop for toy GANs.

It runs the real trainer's step (``genlab.train.step.train_step``: for each
phase due, zero all gradients, back-propagate the mean loss, skip a non-finite
update, step that phase's optimizer) with one Adam per optimizer group and
nothing else: no seeding, schedule, EMA or logging. The toy
experiments need densities known in closed form and thousands of tiny steps
in a test or a benchmark, not run folders, checkpoints or datasets, which is
why they do not go through the trainer.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from genlab.nn.spec import Phase
from genlab.train.step import PhaseOptimizers, train_step


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
    opts = PhaseOptimizers(model, phases, lambda params: torch.optim.Adam(params, lr=lr, betas=betas))
    model.train()
    history = []
    for step in range(steps):
        results = train_step(model, objective, [next_batch(step)], step, opts)
        history.append({f"{name}/{term}": float(r.terms[term]) for name, r in results.items()
                        for term in record if term in r.terms})
    model.zero_grad(set_to_none=True)
    return history
