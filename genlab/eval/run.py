"""`genlab eval`: run a model's evaluators and write RUN_DIR/eval.json."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from genlab.allocator import keep_freed_memory
from genlab.data.base import images_sha256
from genlab.errors import InputError
from genlab.eval.batches import EvalInterrupted, state_key
from genlab.eval.options import QUICK_IMAGE_CAPS, QUICK_SAMPLE_CAPS, EvalOptions, resolve_device_sizes
from genlab.eval.sample_metrics import sampling_settings
from genlab.registry import EVALUATORS
from genlab.train.checkpoint import write_text_atomic
from genlab.train.distributed import resolve_device
from genlab.train.run import LoadedRun, load_run, read_run_json


# What each evaluator computes, in the words of the plan printed before it starts.
_SAMPLE_BASED = ("sample-quality", "memorization", "spoken-digits")


def describe_plan(names: list[str], opts: EvalOptions, n_images: int, split_name: str, model=None) -> list[str]:
    """One line per evaluator saying what it will compute, under a line naming the protocol; with the
    ``model``, sample-based lines name its sampler as it will run (steps and NFE for diffusion).
    Examples are called ``opts.examples`` ("images", or "clips" of audio)."""
    noun = opts.examples
    n = n_images if opts.max_examples is None else min(n_images, opts.max_examples)
    images = (f"all {n_images} {split_name} {noun}" if n == n_images else
              f"{n} of {n_images} {split_name} {noun} (random, seed {opts.seed})")
    paper = opts.protocol_record()["is_paper_protocol"]
    lines = [f"protocol {opts.protocol!r}" + ("" if paper else " (not the paper protocol: --protocol paper)")
             + f"; {opts.batch_size} {noun} per forward pass"]
    for name in names:
        if name == "iwae":
            what = f"IWAE bound, k={opts.iwae_k} importance samples per image, on {images}"
        elif name in _SAMPLE_BASED:
            cap = QUICK_SAMPLE_CAPS.get(name) if opts.protocol == "quick" else None
            what = f"{opts.n_samples if cap is None else min(cap, opts.n_samples)} model samples"
            if model is not None and model.card.samplers:
                what += f" ({sampling_settings(model, opts)[2]})"
        else:
            what = images
            cap = QUICK_IMAGE_CAPS.get(name)
            if opts.protocol == "quick" and cap is not None and cap < n:
                what = f"{cap} of {n_images} {split_name} {noun} (random, seed {opts.seed}; the quick protocol's cap)"
        lines.append(f"  {name}: {what}")
    return lines


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler's pre-emption) stops an evaluation as Ctrl-C does: finished batches are kept."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not in the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def evaluate_run(run_dir: str | Path, opts: EvalOptions, device: str = "auto", only: list[str] | None = None,
                 use_ema: bool = True, data_root: str | None = None, log=print, raw_too: bool = False,
                 compile: str | None = None) -> dict:
    """Evaluate the newest checkpoint of a run; merge the results into RUN_DIR/eval.json.

    With ``use_ema`` the EMA weights (when the run kept them) give the plain metric names; with
    ``raw_too`` as well, the raw weights are evaluated next and their records are named "raw/NAME",
    so both sit side by side in eval.json and the report. ``compile`` (a torch.compile mode) compiles the
    networks first (``load_run``); it changes the speed, not what is estimated.

    Every record states the protocol (name, sizes, whether it is the paper protocol). On Ctrl-C or
    SIGTERM the finished evaluators and the stopped one's partial results (marked partial, with their
    count) are written, and running the same command again continues without redoing finished batches.

    Returns the dict written: {"metrics": {name: record}, "run": {...}}.
    Raises:
        EvalInterrupted: after writing eval.json, when the evaluation was stopped.
    """
    dev = resolve_device(device)
    run = load_run(run_dir, dev, use_ema=use_ema, data_root=data_root, compile=compile)
    out = evaluate_loaded(run, opts, dev, only, log)
    if raw_too and run.used_ema:
        log("the same evaluators on the raw (not averaged) weights, as raw/NAME:")
        raw = load_run(run_dir, dev, use_ema=False, data_root=data_root, compile=compile)
        out = evaluate_loaded(raw, opts, dev, only, log, prefix="raw/")
    return out


def evaluate_loaded(run: LoadedRun, opts: EvalOptions, dev: torch.device, only: list[str] | None = None,
                    log=print, prefix: str = "") -> dict:
    """``evaluate_run`` for a run already loaded on ``dev``; writes RUN_DIR/eval.json the same way.

    ``prefix`` goes before every metric name (the raw weights' records are "raw/NAME").
    """
    keep_freed_memory()  # each batch's tensors keep their pages for the next (genlab/allocator.py)
    run_dir = run.run_dir
    own = list(run.model.card.evaluators)
    names = own if not only else only
    for name in names:  # unknown or inapplicable names fail before any work
        EVALUATORS.get(name)
        if name not in own:
            raise InputError(f"evaluator {name!r} does not apply to a {type(run.model).__name__} run; "
                             f"its evaluators: {', '.join(own)}")
    weights = "ema" if run.used_ema else "raw"
    state_dir = Path(run_dir) / "eval_partial" / f"step{run.step}-{weights}"
    opts = dataclasses.replace(resolve_device_sizes(opts, dev), data=run.cfg.data, figure_dir=str(run_dir),
                               state_dir=str(state_dir), log=log)
    test = run.dataset(opts.split).to(dev)
    opts = dataclasses.replace(opts, examples=test.spec.example_noun)
    log(f"{'EMA' if run.used_ema else 'raw'} weights of step {run.step}")
    if run.used_ema and run.ema_warning:
        log(f"warning: {run.ema_warning}")
    for line in describe_plan(names, opts, len(test), f"{test.name}/{test.split}", run.model):
        log(line)
    path = Path(run_dir) / "eval.json"
    previous = read_run_json(path) if path.exists() else {}
    metrics = dict(previous.get("metrics", {}))
    protocol = opts.protocol_record()
    # The exact images evaluated (e.g. one seeded binarization), so equal numbers mean equal data.
    out = {"run": {"model": run.cfg.model_name, "data": run.cfg.data.name, "step": run.step, "device": str(dev),
                   "split": test.split, "split_sha256": images_sha256(test.images)},
           "metrics": metrics}
    if run.ema_warning:
        out["run"]["ema_warning"] = run.ema_warning

    def keep(result: dict) -> None:
        for key, record in result.items():
            record.update(checkpoint_step=run.step, weights=weights, eval_protocol=protocol)
            key = prefix + key
            metrics[key] = record
            partial = (f" [PARTIAL: {record['n_done']} of {record['n_planned']} {opts.examples}]"
                       if record.get("partial") else "")
            log(f"  {key} = {record['value']:.4f} {record['unit']} [{record['kind']}]{partial}")

    # Evaluators finished before an interruption are not redone when the same evaluation runs again.
    finished_path = state_dir / "finished.json"
    finished = json.loads(finished_path.read_text()) if finished_path.exists() else {}
    torch.manual_seed(opts.seed)
    with _sigterm_as_interrupt():
        for name in names:
            if finished.get(name) == state_key(name, opts) and all(
                    metrics.get(key, {}).get("eval_protocol") == protocol for key in finished[name + ":keys"]):
                log(f"{name}: finished before the interruption, kept from {path}")
                continue
            began = time.perf_counter()
            log(f"evaluating {name} on {test.name}/{test.split} ...")
            try:
                with torch.no_grad():
                    result = EVALUATORS.get(name)(run.model, run.objective, test, dev, opts)
            except EvalInterrupted as stopped:
                keep(stopped.records)
                write_text_atomic(path, json.dumps(out, indent=1) + "\n")
                raise
            except KeyboardInterrupt:  # an evaluator without resumable batches: its work is lost
                write_text_atomic(path, json.dumps(out, indent=1) + "\n")
                raise EvalInterrupted(f"{name} stopped; the evaluators finished before it are in {path}; "
                                      "run the same command again to redo it") from None
            if not result:
                log(f"  {name}: nothing to report for this model or dataset (see the warning above)")
            keep(result)
            log(f"  ({time.perf_counter() - began:.1f} s)")
            write_text_atomic(path, json.dumps(out, indent=1) + "\n")  # a later stop keeps this evaluator
            finished.update({name: state_key(name, opts), name + ":keys": sorted(prefix + k for k in result)})
            state_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(finished_path, json.dumps(finished) + "\n")
    finished_path.unlink(missing_ok=True)
    for folder in (state_dir, state_dir.parent):  # nothing left to continue: no empty folders either
        try:
            folder.rmdir()
        except OSError:
            break
    return out
