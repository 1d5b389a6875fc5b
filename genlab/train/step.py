"""One training step, shared by the trainer and every smaller loop that trains a network.

For every phase due at this step (``step % every == 0``), in order: zero the
gradients, run the objective on each micro-batch and back-propagate the mean
loss scaled by 1 / (number of micro-batches), average gradients across
processes, clip, and step the phase's optimizer, unless the loss or the
gradient is not finite on some process, in which case the update is skipped
(and reported, so the caller can count it). Seeding, learning-rate schedules,
EMA, logging and checkpoints stay with the caller.

With a fused optimizer (genlab's default Adam, `fused_optimizer`) that skip is decided on the device:
the optimizer is handed the non-finite flag as ``found_inf``, the mechanism PyTorch's GradScaler uses,
and leaves its weights and moments alone when the flag is set. The host then never waits for the
device inside a step, so on a GPU it can queue the next step while this one computes (the first lent
H200 showed the small suite models waiting on the host). Other optimizers read the flag on the host.
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from genlab.nn.spec import Phase
from genlab.train import distributed
from genlab.train.distributed import DistInfo


@dataclass
class PhaseResult:
    terms: dict[str, torch.Tensor]  # each term's mean over the batch (0-d, detached), averaged over micro-batches
    grad_norm: torch.Tensor  # 0-d, the gradient norm before clipping
    not_finite: torch.Tensor  # 0-d bool, on the device: the loss or gradient was not finite on some process: no update
    norm_skipped: bool = False  # the gradient norm was above the phase's skip_norm: no update was made

    @property
    def skipped(self) -> bool:
        """``not_finite`` as a bool: reading it waits for the device (the loop counts the tensor instead)."""
        return bool(self.not_finite)


def fused_optimizer(opt: torch.optim.Optimizer) -> bool:
    """Whether every parameter group of ``opt`` runs the fused kernel, which can skip an update on the
    device. A group's flags come from the checkpoint it was loaded from, so this is asked at each step."""
    return getattr(opt, "_step_supports_amp_scaling", False) and all(g.get("fused") for g in opt.param_groups)


def step_unless(opt: torch.optim.Optimizer, not_finite: torch.Tensor) -> None:
    """``opt.step()`` that makes no change where the 0-d ``not_finite`` is true, without reading it on the
    host. The fused kernels skip the update of the weights and moments and take back the step count
    when ``found_inf`` is non-zero (torch.amp.GradScaler hands its overflow flag over the same way)."""
    opt.found_inf = not_finite.float()
    try:
        opt.step()
    finally:
        del opt.found_inf


def phase_parameters(model: torch.nn.Module, modules: tuple[str, ...] | None) -> list[torch.nn.Parameter]:
    """The trainable parameters of the named submodules (all of the model's for None)."""
    if modules is None:
        return [p for p in model.parameters() if p.requires_grad]
    params = []
    for name in modules:
        params.extend(p for p in model.get_submodule(name).parameters() if p.requires_grad)
    return params


class PhaseOptimizers:
    """The phases of a model and one optimizer per group of modules (``Phase.optimizer_key``).

    Args:
        model: the network whose submodules the phases name.
        phases: the phases to run, in order.
        make: builds an optimizer over a list of parameters.
    """

    def __init__(self, model: torch.nn.Module, phases: Sequence[Phase],
                 make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]):
        self.phases = list(phases)
        self.params: dict[str, list[torch.nn.Parameter]] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        modules: dict[str, tuple[str, ...] | None] = {}
        for ph in self.phases:
            key = ph.optimizer_key
            if key in modules:
                if modules[key] != ph.modules:
                    raise ValueError(f"phases sharing the optimizer {key!r} name different modules "
                                     f"({modules[key]} and {ph.modules}); one optimizer steps one set of parameters")
                continue
            modules[key] = ph.modules
            self.params[key] = phase_parameters(model, ph.modules)
            self.optimizers[key] = make(self.params[key])

    def select(self, *names: str) -> "PhaseOptimizers":
        """The same optimizers, running only the named phases (in the given order)."""
        by_name = {ph.name: ph for ph in self.phases}
        view = copy.copy(self)
        view.phases = [by_name[n] for n in names]
        return view


def train_step(model: torch.nn.Module, objective, micro_batches: Sequence[dict], step: int, opts: PhaseOptimizers,
               lr: float | None = None, grad_clip: float = 0.0, info: DistInfo = DistInfo(),
               autocast=None, skip_norm: Mapping[str, float] | None = None,
               cuda_graphs: bool = False) -> dict[str, PhaseResult]:
    """Run every phase due at ``step`` on one batch split into ``micro_batches``.

    Args:
        objective: called as objective(model, batch, phase_name, step) -> dict of (B,) terms with "loss".
        micro_batches: this process's share of the batch; gradients are summed over them with
            weight 1 / len(micro_batches), so the update equals one pass over their concatenation.
        lr: if given, each phase's optimizer runs at lr x phase.lr_scale; None leaves it alone.
        grad_clip: clip the gradient norm of each phase's parameters to this (0: no clipping).
        info: the process group (gradients are averaged over it; one process by default).
        autocast: a context manager around each objective call (e.g. bf16 autocast), or None.
        skip_norm: phase name -> a gradient norm (before clipping) above which that phase's update is
            skipped (VD-VAE's skip_threshold); None or a missing phase never skips for the norm.
        cuda_graphs: the model's submodules were compiled in a CUDA-graph mode (``compile_submodules``): the
            step first marks a new iteration, so the graphs may reuse the memory of the last step's outputs.

    Returns:
        One PhaseResult per phase that ran, keyed by phase name, in phase order.
    """
    if cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()
    autocast = autocast if autocast is not None else nullcontext()
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    results = {}
    for ph in opts.phases:
        if step % ph.every:
            continue
        opt, params = opts.optimizers[ph.optimizer_key], opts.params[ph.optimizer_key]
        if lr is not None:
            for g in opt.param_groups:
                g["lr"] = lr * ph.lr_scale
        model.zero_grad(set_to_none=True)
        loss_sum, terms_mean = None, {}
        for batch in micro_batches:
            with autocast:
                terms = objective(model, batch, ph.name, step)
            (terms["loss"].float().mean() / len(micro_batches)).backward()
            loss = terms["loss"].detach().float().mean()
            loss_sum = loss if loss_sum is None else loss_sum + loss
            for k, v in terms.items():
                v = v.detach().float().mean() / len(micro_batches)
                terms_mean[k] = v if k not in terms_mean else terms_mean[k] + v
        distributed.average_gradients(params, info)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        not_finite = distributed.any_process(~(torch.isfinite(loss_sum) & torch.isfinite(grad_norm)), info)
        norm_limit = math.inf if skip_norm is None else skip_norm.get(ph.name, math.inf)
        if fused_optimizer(opt) and norm_limit == math.inf:
            step_unless(opt, not_finite)
            results[ph.name] = PhaseResult(terms_mean, grad_norm.detach(), not_finite)
            continue
        skipped = bool(not_finite)
        # The norm of the averaged gradient is the same on every process, so they all decide alike.
        too_large = not skipped and float(grad_norm) > norm_limit
        if skipped or too_large:
            model.zero_grad(set_to_none=True)
        else:
            opt.step()
        results[ph.name] = PhaseResult(terms_mean, grad_norm.detach(), not_finite, too_large)
    return results
