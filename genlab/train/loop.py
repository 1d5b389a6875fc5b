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
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from genlab.allocator import keep_freed_memory
from genlab.errors import UserError
from genlab.config import ConfigError, RunConfig, validate
from genlab.data import load_dataset
from genlab.data.domains import TwoDomainStream, split_domains, two_domain_spec
from genlab.data.loader import BatchStream
from genlab.nn.compiled import compile_submodules
from genlab.objectives.regularizers import SpectralRegularized
from genlab.registry import MODELS
from genlab.rng import sample_seed
from genlab.timing import duration_text
from genlab.train import distributed
from genlab.train.checkpoint import (CheckpointError, check_tensors, join_tensors, list_checkpoints, load_latest,
                                     save_checkpoint, unflatten_optimizer, write_text_atomic)
from genlab.train.ema import EMA
from genlab.train.run import (build_model, build_objective, read_config, read_metrics, to_run_layout,
                              write_run_header)
from genlab.train.stages import check_first_stage, training_codes
from genlab.train.step import PhaseOptimizers, train_step


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
    """Linear warm-up, then constant, cosine or linear decay; a pure function of the step (nothing to save)."""
    o, total = cfg.optim, max(cfg.train.steps, 1)
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "cosine":
        progress = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
        return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    if o.schedule == "linear":  # Zhu et al. 2017: constant, then linearly to zero at the last step
        begin = max(o.warmup_steps, round(o.decay_start * total))
        return o.lr * (1.0 - max(0, step - begin) / max(1, total - begin))
    return o.lr


# Devices whose Adam has a fused kernel (one pass over each weight instead of a dozen element-wise
# operations; on one CPU thread the DDPM U-Net's optimizer step took 0.72 ms fused against 4.4 ms).
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_optimizer(cfg: RunConfig, params: list) -> torch.optim.Optimizer:
    """Adam or AdamW over ``params``, fused where every parameter is a floating-point tensor on a device
    with the fused kernel (then train_step also skips non-finite updates without waiting for the device)."""
    o = cfg.optim
    kind = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    fused = bool(params) and all(p.is_floating_point() and p.device.type in FUSED_ADAM_DEVICES for p in params)
    return kind(params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay,
                fused=fused or None)


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

    def __init__(self, run_dir: Path, enabled: bool, start: int = 0):
        self.enabled = enabled
        if enabled and (run_dir / "metrics.jsonl").exists():
            # Rows past the step training restarts from were written by a process that died before its
            # next checkpoint; the resumed run writes them again.
            kept = [json.dumps(row) + "\n" for row in read_metrics(run_dir) if row.get("step", 0) <= start]
            write_text_atomic(run_dir / "metrics.jsonl", "".join(kept))
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
          total_steps: int | None = None, command: str | None = None, log=print) -> TrainResult:
    """Train (or resume) the run in ``run_dir``.

    Args:
        cfg: the run's configuration; None when resuming (read from the run folder).
        run_dir: the run folder; created for a new run. A folder whose run died before its
            first checkpoint is started again.
        resume: continue from the newest valid checkpoint in ``run_dir`` (from step 0 if the
            run died before writing one).
        until_step: stop after this step with a checkpoint even if the run is longer
            (for time-limited jobs); the run can be resumed later.
        total_steps: when resuming, extend or shorten the run to this many steps.
        command: what made the run, for RUN_DIR/command.txt (default: this process's command line).
        log: where the plan (model size, steps, epochs, threads) and, after the first steps, the
            time estimate go (rank 0 only; None: nowhere).
    """
    run_dir = Path(run_dir)
    if resume:
        cfg = read_config(run_dir)
        if total_steps is not None:
            cfg.train.steps = total_steps
            validate(cfg)
    elif list_checkpoints(run_dir):
        raise FileExistsError(f"{run_dir} already holds a run: resume it with `genlab train --resume {run_dir}` "
                              "or choose another --out folder")
    check_first_stage(cfg)
    t = cfg.train
    keep_freed_memory()  # the step's activations keep their pages from step to step (genlab/allocator.py)
    info, device = distributed.setup(t.device)
    threads = torch.get_num_threads()
    if t.threads:
        torch.set_num_threads(t.threads)
    try:
        return _train(cfg, run_dir, resume, until_step, info, device, command, log)
    finally:
        torch.set_num_threads(threads)  # the caller's count again (genlab.train from a notebook)
        distributed.teardown(info)


def _skip_norms(o, opts: PhaseOptimizers, streak: dict[str, int]) -> dict[str, float] | None:
    """Per phase, the gradient norm above which train_step skips the update: optim.skip_grad_norm, or
    none once optim.max_norm_skips updates of that phase were skipped in a row (so one is taken)."""
    if o.skip_grad_norm <= 0:
        return None
    return {ph.name: o.skip_grad_norm if streak.get(ph.name, 0) < o.max_norm_skips else math.inf
            for ph in opts.phases}


def _restore(ckpt: dict, model, opts: PhaseOptimizers, ema: EMA | None, objective) -> None:
    """Check that a checkpoint holds everything this run needs, then load it (CheckpointError if not)."""
    path, state = ckpt["path"], ckpt["state"]
    check_tensors(path, "model", ckpt["model"], model.state_dict())
    if ema is not None:
        if "ema" not in ckpt:
            raise CheckpointError(f"{path} has no EMA weights but the run has train.ema_decay > 0")
        check_tensors(path, "ema", ckpt["ema"], ema.state_dict())
    optim = {}
    for name, opt in opts.optimizers.items():
        meta = state.get("optimizers", {}).get(name)
        if meta is None or "optim" not in ckpt:
            raise CheckpointError(f"{path} holds no state for the optimizer {name!r}")
        optim[name] = unflatten_optimizer(name, ckpt["optim"], meta)
        params = opts.params[name]
        for idx, fields in optim[name]["state"].items():
            if idx >= len(params) or any(torch.is_tensor(v) and v.dim() and v.shape != params[idx].shape
                                         for v in fields.values()):
                raise CheckpointError(f"{path / 'optim.safetensors'} does not match the parameters of {name!r}")
    if "cpu" not in ckpt["rng"]:
        raise CheckpointError(f"{path / 'rng.safetensors'} holds no 'cpu' generator state")
    has_state = callable(getattr(objective, "load_state_dict", None))
    if has_state and "objective" not in state:
        raise CheckpointError(f"{path} holds no state for the objective, which keeps one")
    objective_state = join_tensors(ckpt.get("objective", {}), state["objective"]) if has_state else None
    model.load_state_dict(ckpt["model"])
    for name, opt in opts.optimizers.items():
        try:
            opt.load_state_dict(optim[name])
        except ValueError as err:  # a parameter-group size mismatch
            raise CheckpointError(f"{path / 'optim.safetensors'}: {err}") from None
    if ema is not None:
        ema.load_state_dict(ckpt["ema"])
    if has_state:
        objective.load_state_dict(objective_state)
    torch.set_rng_state(ckpt["rng"]["cpu"].cpu())


def data_init(model, stream: BatchStream, seed: int) -> None:
    """Run the model's data-dependent initialization (ActNorm-style) on the first micro-batch, if it has one.

    Each process runs it on its own first batch; the caller then broadcasts rank 0's parameters,
    so every process starts from the same weights.
    """
    init = getattr(model, "data_init", None)  # optional hook: data_init(batch) -> None, in place
    if init is None:
        return
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(sample_seed(seed, -1))
        init(stream.micro_batches(0)[0])


def _domain_b(cfg: RunConfig):
    """Domain B's training set of a two-domain model (data.domain_b), None for a one-dataset model."""
    domains = MODELS.get(cfg.model_name).card.domains
    if domains == 2 and not cfg.data.domain_b:
        raise ConfigError(f"{cfg.model_name} translates between two domains: name domain B with data.domain_b=NAME "
                          "(e.g. mnist-inverted; `genlab data list`)")
    if domains == 1 and cfg.data.domain_b:
        raise ConfigError(f"{cfg.model_name} trains on one dataset: drop data.domain_b")
    return load_dataset(cfg.data.domain_b, "train", cfg.data) if cfg.data.domain_b else None


def _stream(cfg: RunConfig, train_set, domain_b, device, info):
    """The run's batches: one dataset, or two domains drawn unpaired (data.domain_b)."""
    t = cfg.train
    if domain_b is None:
        return BatchStream(train_set.to(device), t.batch_size, t.grad_accum, t.seed, info.rank, info.world)
    a, b = split_domains(train_set, domain_b, cfg.data.unpaired_halves)
    return TwoDomainStream(a.to(device), b.to(device), t.batch_size, t.grad_accum, t.seed, info.rank, info.world)


# The time estimate is printed after this many steps, so that the first step's one-off costs
# (allocation, compilation) weigh little in it.
ESTIMATE_AFTER_STEPS = 20


def _train(cfg, run_dir, resume, until_step, info, device, command=None, log_fn=print) -> TrainResult:
    t = cfg.train
    train_set = load_dataset(cfg.data.name, "train", cfg.data).select_classes(cfg.data.classes)
    domain_b = _domain_b(cfg)
    spec = train_set.spec if domain_b is None else two_domain_spec(train_set, domain_b)
    torch.manual_seed(t.seed)  # same initial weights on every process
    model = to_run_layout(build_model(cfg, spec).to(device), cfg)  # NHWC convolutions whatever the batch's layout
    objective = build_objective(cfg, spec)
    if cfg.optim.spectral_reg > 0:
        objective = SpectralRegularized(objective, cfg.optim.spectral_reg, cfg.optim.spectral_iterations, t.seed)
    train_set = training_codes(cfg, model, train_set, run_dir, device, info.is_main)  # a second stage's codes
    stream = _stream(cfg, train_set, domain_b, device, info)
    if resume and not list_checkpoints(run_dir):
        warnings.warn(f"{run_dir} has no checkpoint yet (its first run stopped before writing one): "
                      "training starts again from step 0", stacklevel=3)
        resume = False
    if not resume:
        if info.is_main:
            write_run_header(run_dir, cfg, spec, train_set, command)
        data_init(model, stream, t.seed)
    distributed.broadcast_parameters(model, info)  # before the EMA and optimizers copy anything
    opts = PhaseOptimizers(model, model.phases(), lambda params: make_optimizer(cfg, params))
    ema = EMA(model, t.ema_decay, t.ema_warmup, t.batch_size, t.ema_rampup) if t.ema_decay > 0 else None
    # skipped: the checkpoint's total, plus this call's norm skips (decided on the host); this call's
    # non-finite steps are counted on the device (not_finite_steps) and added by skipped_total().
    start, skipped = 0, 0
    norm_skipped, norm_streak = 0, {}  # updates skipped for a huge gradient norm; the current run of them per phase
    if resume:
        ckpt = load_latest(run_dir, device, restore=lambda c: _restore(c, model, opts, ema, objective))
        start, skipped = ckpt["state"]["step"], ckpt["state"].get("skipped_steps", 0)
        norm_skipped = ckpt["state"].get("norm_skipped_steps", 0)  # absent from checkpoints before the option
        norm_streak = dict(ckpt["state"].get("norm_streak", {}))
        if ema is not None:
            ema.load_counters(ckpt["state"], start)
    cuda_graphs = compile_submodules(model, t.compile_backend, t.compile_mode) if t.compile else False
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if device.type == "cuda" and t.precision == "bf16" else nullcontext())
    log = MetricLog(run_dir, info.is_main, start)
    end = t.steps if until_step is None else min(t.steps, until_step)
    # disable=None: no bar when stderr is not a terminal (a log file gets the plan and estimate lines
    # above, not thousands of redrawn bars).
    bar = tqdm(total=t.steps, initial=start, disable=None if info.is_main and t.progress else True, dynamic_ncols=True,
               desc=f"{cfg.model_name}/{cfg.data.name}")
    say = log_fn if info.is_main and log_fn is not None else (lambda *_: None)
    weights = sum(p.numel() for p in model.parameters())
    say(f"{cfg.model_name} on {cfg.data.name}: {weights / 1e6:.2f} M weights; steps {start + 1}-{end} of "
        f"{t.batch_size} {spec.example_noun} (epoch {stream.epoch_of(end):.1f} at the end), {torch.get_num_threads()} "
        f"threads on {device}{f', {info.world} processes' if info.world > 1 else ''}; run folder {run_dir}")
    estimate_at = min(start + ESTIMATE_AFTER_STEPS, end)
    single = len(opts.phases) == 1
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    # Non-finite steps since the start of this call and the current run of them, as device tensors.
    not_finite_steps = torch.zeros((), dtype=torch.long, device=device)
    bad_streak = torch.zeros((), dtype=torch.long, device=device)
    window_start, window_steps = time.perf_counter(), 0
    began = time.perf_counter()

    def checkpoint(step):
        if not info.is_main:
            return
        rng = {"cpu": torch.get_rng_state()}
        state = {"skipped_steps": skipped_total(), "model": cfg.model_name, "epoch": stream.epoch_of(step),
                 "norm_skipped_steps": norm_skipped, "norm_streak": norm_streak, **(ema.counters() if ema else {})}
        objective_state = objective.state_dict() if callable(getattr(objective, "state_dict", None)) else None
        save_checkpoint(run_dir, step, model.state_dict(), ema.state_dict() if ema else None, opts.optimizers, rng,
                        state, t.keep_checkpoints, objective_state)

    def add(key, value, weight=1):
        sums[key] = sums.get(key, 0.0) + value
        counts[key] = counts.get(key, 0) + weight  # phases with `every` > 1 log the mean over the steps they ran

    def skipped_total() -> int:
        return skipped + int(not_finite_steps)

    def check_divergence(step):
        if int(bad_streak) > t.max_bad_steps:
            raise TrainingDiverged(
                f"{int(bad_streak)} consecutive steps had a non-finite loss or gradient (step {step}); "
                f"the last good checkpoint in {run_dir / 'checkpoints'} is intact. Lower optim.lr, "
                "set optim.grad_clip, or check the data")

    step, interrupted = start, False
    model.train()
    loop_began = time.perf_counter()
    with _StopFlag() as stop:
        try:
            while step < end:
                torch.manual_seed(sample_seed(t.seed + 104729 * info.rank, step))
                lr = learning_rate(cfg, step)
                results = train_step(model, objective, stream.micro_batches(step), step, opts, lr=lr,
                                     grad_clip=cfg.optim.grad_clip, info=info, autocast=autocast,
                                     skip_norm=_skip_norms(cfg.optim, opts, norm_streak), cuda_graphs=cuda_graphs)
                for name, r in results.items():
                    for k, v in r.terms.items():
                        add(f"train/{k}" if single else f"train/{name}/{k}", v)
                    # Counted on the device (see genlab.train.step): read at log and checkpoint steps only.
                    not_finite_steps += r.not_finite
                    bad_streak = (bad_streak + 1) * r.not_finite
                    if r.norm_skipped:
                        norm_streak[name] = norm_streak.get(name, 0) + 1
                        skipped += 1
                        norm_skipped += 1
                        continue
                    if cfg.optim.skip_grad_norm <= 0 or not r.skipped:  # a non-finite step leaves the run of norm skips
                        norm_streak[name] = 0
                    # The loop's own figures live under optim/, apart from the objective's terms; a
                    # non-finite step's norm is left out of the mean.
                    add("optim/grad_norm" if single else f"optim/{name}/grad_norm",
                        torch.where(r.not_finite, 0.0, r.grad_norm), ~r.not_finite)
                if ema is not None:
                    ema.update(model)
                step += 1
                window_steps += 1
                bar.update(1)
                if step == estimate_at and step < end:
                    rate = (step - start) / (time.perf_counter() - loop_began)
                    say(f"{rate:.2f} steps/s over the first {step - start} steps: about "
                        f"{duration_text((end - step) / rate)} for the {end - step} left (Ctrl-C or SIGTERM "
                        f"checkpoints; `genlab train --resume {run_dir}` continues)")
                if step % t.log_every == 0 or step == end or step % t.ckpt_every == 0:
                    check_divergence(step)
                if step % t.log_every == 0 or step == end:
                    elapsed = time.perf_counter() - window_start
                    values = {k: float(v) / float(counts[k]) for k, v in sums.items() if float(counts[k]) > 0}
                    values.update({"optim/lr": lr, "epoch": stream.epoch_of(step), "skipped_steps": skipped_total(),
                                   "norm_skipped_steps": norm_skipped, "threads": torch.get_num_threads(),
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
                if t.max_seconds and time.perf_counter() - loop_began > t.max_seconds:
                    break  # a time-boxed run (benchmarks/gpu_suite.py): like until_step, resumable
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            log.close()
    loop_seconds = time.perf_counter() - loop_began
    check_divergence(step)
    checkpoint(step)
    return TrainResult(run_dir, step, skipped_total(), interrupted, time.perf_counter() - began, loop_seconds)
