"""`genlab eval`: run a model's evaluators and write RUN_DIR/eval.json."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from genlab.data.base import images_sha256
from genlab.errors import InputError
from genlab.eval.options import EvalOptions
from genlab.registry import EVALUATORS
from genlab.train.checkpoint import write_text_atomic
from genlab.train.distributed import resolve_device
from genlab.train.run import LoadedRun, load_run, read_run_json


def evaluate_run(run_dir: str | Path, opts: EvalOptions, device: str = "auto", only: list[str] | None = None,
                 use_ema: bool = True, data_root: str | None = None, log=print) -> dict:
    """Evaluate the newest checkpoint of a run; merge the results into RUN_DIR/eval.json.

    Returns the dict written: {"metrics": {name: record}, "run": {...}}.
    """
    dev = resolve_device(device)
    return evaluate_loaded(load_run(run_dir, dev, use_ema=use_ema, data_root=data_root), opts, dev, only, log)


def evaluate_loaded(run: LoadedRun, opts: EvalOptions, dev: torch.device, only: list[str] | None = None,
                    log=print) -> dict:
    """``evaluate_run`` for a run already loaded on ``dev``; writes RUN_DIR/eval.json the same way."""
    run_dir = run.run_dir
    own = list(run.model.card.evaluators)
    names = own if not only else only
    for name in names:  # unknown or inapplicable names fail before any work
        EVALUATORS.get(name)
        if name not in own:
            raise InputError(f"evaluator {name!r} does not apply to a {type(run.model).__name__} run; "
                             f"its evaluators: {', '.join(own)}")
    opts = dataclasses.replace(opts, data=run.cfg.data, figure_dir=str(run_dir))
    test = run.dataset(opts.split).to(dev)
    path = Path(run_dir) / "eval.json"
    previous = read_run_json(path) if path.exists() else {}
    metrics = dict(previous.get("metrics", {}))
    torch.manual_seed(opts.seed)
    for name in names:
        began = time.perf_counter()
        log(f"evaluating {name} on {test.name}/{test.split} ...")
        with torch.no_grad():
            result = EVALUATORS.get(name)(run.model, run.objective, test, dev, opts)
        if not result:
            log(f"  {name}: nothing to report for this model or dataset (see the warning above)")
        for key, record in result.items():
            record["checkpoint_step"] = run.step
            record["weights"] = "ema" if run.used_ema else "raw"
            metrics[key] = record
            log(f"  {key} = {record['value']:.4f} {record['unit']} [{record['kind']}]")
        log(f"  ({time.perf_counter() - began:.1f} s)")
    # The exact images evaluated (e.g. one seeded binarization), so equal numbers mean equal data.
    out = {"run": {"model": run.cfg.model_name, "data": run.cfg.data.name, "step": run.step,
                   "device": str(dev), "split": test.split, "split_sha256": images_sha256(test.images)},
           "metrics": metrics}
    write_text_atomic(path, json.dumps(out, indent=1) + "\n")
    return out
