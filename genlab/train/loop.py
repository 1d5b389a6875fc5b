"""The one training loop, for every model family.

A step consumes one global batch. For every phase the model declares (one for
most models; "D" and "G" for GANs), in order: zero the gradients, run the
objective on each micro-batch and backpropagate, average gradients across
processes, skip the update if the loss or gradient is not finite, clip, step
that phase's optimizer. Randomness inside a step comes from the global torch
RNG reseeded from (seed, rank, step), and batches are a pure function of
(seed, step), so a resumed run repeats exactly what an uninterrupted one does.
"""

from __future__ import annotations

import json
import math
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from genlab.errors import UserError
from genlab.config import RunConfig, validate
from genlab.data import load_dataset
from genlab.data.loader import BatchStream
from genlab.rng import sample_seed
from genlab.train import distributed
from genlab.train.checkpoint import CheckpointError, load_latest, save_checkpoint, unflatten_optimizer
from genlab.train.ema import EMA
from genlab.train.run import build_model, build_objective, read_config, write_run_header


class TrainingDiverged(UserError, RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    skipped_steps: int
    interrupted: bool
    seconds: float  # the whole call: data loading, set-up, steps, final checkpoint
    loop_seconds: float = 0.0  # the steps alone, from the first to the last


def learning_rate(cfg: RunConfig, step: int) -> float:
    """Linear warm-up, then constant or cosine decay; a pure function of the step (nothing to save)."""
    o, total = cfg.optim, max(cfg.train.steps, 1)
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "cosine":
        progress = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
        return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    return o.lr


def phase_parameters(model: torch.nn.Module, modules: tuple[str, ...] | None) -> list[torch.nn.Parameter]:
    if modules is None:
        return [p for p in model.parameters() if p.requires_grad]
    params = []
    for name in modules:
        params.extend(p for p in model.get_submodule(name).parameters() if p.requires_grad)
    return params


def make_optimizer(cfg: RunConfig, params: list) -> torch.optim.Optimizer:
    o = cfg.optim
    kind = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return kind(params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay)


class _StopFlag:
    """SIGTERM (a scheduler's pre-emption) asks the loop to checkpoint and stop at the next step."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not in the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.stop = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class MetricLog:
    """Metrics to RUN_DIR/metrics.jsonl and TensorBoard, from rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.file = open(run_dir / "metrics.jsonl", "a") if enabled else None
        self.tb = None
        if enabled:
            # imported here: tensorboard takes about a second to import, and only rank 0 of a training run needs it
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        for k, v in values.items():
            self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()


def train(cfg: RunConfig | None, run_dir: str | Path, resume: bool = False, until_step: int | None = None,
          total_steps: int | None = None, command: str | None = None) -> TrainResult:
    """Train (or resume) the run in ``run_dir``.

    Args:
        cfg: the run's configuration; None when resuming (read from the run folder).
        run_dir: the run folder; created for a new run.
        resume: continue from the newest valid checkpoint in ``run_dir``.
        until_step: stop after this step with a checkpoint even if the run is longer
            (for time-limited jobs); the run can be resumed later.
        total_steps: when resuming, extend or shorten the run to this many steps.
        command: what made the run, for RUN_DIR/command.txt (default: this process's command line).
    """
    run_dir = Path(run_dir)
    if resume:
        cfg = read_config(run_dir)
        if total_steps is not None:
            cfg.train.steps = total_steps
            validate(cfg)
    elif (run_dir / "checkpoints").exists() and any((run_dir / "checkpoints").iterdir()):
        raise FileExistsError(f"{run_dir} already holds a run: resume it with `genlab train --resume {run_dir}` "
                              "or choose another --out folder")
    t = cfg.train
    info, device = distributed.setup(t.device)
    try:
        return _train(cfg, run_dir, resume, until_step, info, device, command)
    finally:
        distributed.teardown(info)


def _train(cfg, run_dir, resume, until_step, info, device, command=None) -> TrainResult:
    t = cfg.train
    train_set = load_dataset(cfg.data.name, "train", cfg.data)
    spec = train_set.spec
    torch.manual_seed(t.seed)  # same initial weights on every process
    model = build_model(cfg, spec).to(device)
    objective = build_objective(cfg, spec)
    phases = model.phases()
    params = {ph.name: phase_parameters(model, ph.modules) for ph in phases}
    optimizers = {ph.name: make_optimizer(cfg, params[ph.name]) for ph in phases}
    ema = EMA(model, t.ema_decay) if t.ema_decay > 0 else None
    start, skipped = 0, 0
    if info.is_main and not resume:
        write_run_header(run_dir, cfg, spec, train_set, command)
    if resume:
        ckpt = load_latest(run_dir, device)
        model.load_state_dict(ckpt["model"])
        for name, opt in optimizers.items():
            opt.load_state_dict(unflatten_optimizer(name, ckpt["optim"], ckpt["state"]["optimizers"][name]))
        if ema is not None:
            if "ema" not in ckpt:
                raise CheckpointError(f"{ckpt['path']} has no EMA weights but the run has train.ema_decay > 0")
            ema.load_state_dict(ckpt["ema"])
        torch.set_rng_state(ckpt["rng"]["cpu"].cpu())
        start, skipped = ckpt["state"]["step"], ckpt["state"]["skipped_steps"]
    distributed.broadcast_parameters(model, info)
    if t.compile:
        for child in model.children():
            child.compile()
    stream = BatchStream(train_set.to(device), t.batch_size, t.grad_accum, t.seed, info.rank, info.world)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if device.type == "cuda" and t.precision == "bf16" else nullcontext())
    log = MetricLog(run_dir, info.is_main)
    end = t.steps if until_step is None else min(t.steps, until_step)
    bar = tqdm(total=t.steps, initial=start, disable=not (info.is_main and t.progress), dynamic_ncols=True,
               desc=f"{cfg.model_name}/{cfg.data.name}")
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    bad_streak, window_start, window_steps = 0, time.perf_counter(), 0
    began = time.perf_counter()

    def checkpoint(step):
        if not info.is_main:
            return
        rng = {"cpu": torch.get_rng_state()}
        state = {"skipped_steps": skipped, "model": cfg.model_name, "epoch": stream.epoch_of(step)}
        save_checkpoint(run_dir, step, model.state_dict(), ema.state_dict() if ema else None, optimizers, rng,
                        state, t.keep_checkpoints)

    step, interrupted = start, False
    model.train()
    loop_began = time.perf_counter()
    with _StopFlag() as stop:
        try:
            while step < end:
                torch.manual_seed(sample_seed(t.seed + 104729 * info.rank, step))
                lr = learning_rate(cfg, step)
                micro = stream.micro_batches(step)
                for ph in phases:
                    if step % ph.every:
                        continue
                    opt = optimizers[ph.name]
                    for g in opt.param_groups:
                        g["lr"] = lr * ph.lr_scale
                    model.zero_grad(set_to_none=True)
                    loss_sum = torch.zeros((), device=device)
                    for batch in micro:
                        with autocast:
                            terms = objective(model, batch, ph.name, step)
                        (terms["loss"].float().mean() / len(micro)).backward()
                        loss_sum = loss_sum + terms["loss"].detach().float().mean()
                        for k, v in terms.items():
                            key = f"train/{k}" if len(phases) == 1 else f"train/{ph.name}/{k}"
                            sums[key] = sums.get(key, 0.0) + v.detach().float().mean() / len(micro)
                    for k in terms:  # phases with `every` > 1 log the mean over the steps they ran
                        key = f"train/{k}" if len(phases) == 1 else f"train/{ph.name}/{k}"
                        counts[key] = counts.get(key, 0) + 1
                    distributed.average_gradients(params[ph.name], info)
                    max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
                    grad_norm = torch.nn.utils.clip_grad_norm_(params[ph.name], max_norm)
                    bad = ~(torch.isfinite(loss_sum) & torch.isfinite(grad_norm))
                    if distributed.any_true(bad, info):
                        skipped += 1
                        bad_streak += 1
                        model.zero_grad(set_to_none=True)
                        if bad_streak > t.max_bad_steps:
                            raise TrainingDiverged(
                                f"{bad_streak} consecutive steps had a non-finite loss or gradient (step {step}); "
                                f"the last good checkpoint in {run_dir / 'checkpoints'} is intact. Lower optim.lr, "
                                "set optim.grad_clip, or check the data")
                        continue
                    bad_streak = 0
                    opt.step()
                    # The loop's own figures live under optim/, apart from the objective's terms.
                    key = "optim/grad_norm" if len(phases) == 1 else f"optim/{ph.name}/grad_norm"
                    sums[key] = sums.get(key, 0.0) + grad_norm.detach()
                    counts[key] = counts.get(key, 0) + 1
                if ema is not None:
                    ema.update(model)
                step += 1
                window_steps += 1
                bar.update(1)
                if step % t.log_every == 0 or step == end:
                    elapsed = time.perf_counter() - window_start
                    values = {k: float(v) / counts[k] for k, v in sums.items()}
                    values.update({"optim/lr": lr, "epoch": stream.epoch_of(step), "skipped_steps": skipped,
                                   "images_per_s": window_steps * t.batch_size / max(elapsed, 1e-9)})
                    log.write(step, values)
                    loss_key = next((k for k in values if k.endswith("/loss")), None)
                    if loss_key:
                        bar.set_postfix(loss=f"{values[loss_key]:.4g}")
                    sums, counts, window_start, window_steps = {}, {}, time.perf_counter(), 0
                if step % t.ckpt_every == 0 and step != end:
                    checkpoint(step)
                if stop.stop:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            log.close()
    loop_seconds = time.perf_counter() - loop_began
    checkpoint(step)
    return TrainResult(run_dir, step, skipped, interrupted, time.perf_counter() - began, loop_seconds)
