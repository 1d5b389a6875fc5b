"""The host's share of a training step: what the loop's step costs when the network does almost nothing.

    python benchmarks/host_overhead.py [--models vae gated-pixelcnn ...] [--steps 300]
    python benchmarks/host_overhead.py --device cuda [--size suite] [--compile] [--json OUT.json]

For each model of the GPU suite, the network is shrunk to its --smoke size (a few channels) and fed one
image per step, so the arithmetic is negligible and the time of `train_step` (objective, backward,
clipping, the finite check, the optimizer) and of the weight average's update is the per-step work of the
host: on a GPU that work is what a step can never go below, however fast the device. Runs on the CPU, with
the torch threads the environment gives (OMP_NUM_THREADS); prints milliseconds per step and the steps per
second that the host alone allows.

On a GPU (``--device cuda``) the same loop measures the host's cost there (CUDA launches included) and
counts how often a step makes the host wait for the device (CUDA's sync debug mode); ``--size suite``
times the suite's own networks and batches (bf16 autocast as in the suite; ``--compile`` as the suite
compiles them, ``--compile-mode reduce-overhead`` to replay them as CUDA graphs), so the figure is a real
step rate. The time runs until the device has finished the last step. To compare two commits, run it
from this checkout with ``PYTHONPATH=OTHER_CHECKOUT`` (any checkout from 2026-11-30 on; older ones lack
``compile_submodules``: the first H200 comparison ran an intermediate version of this script).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import get_args

import torch

import genlab
from genlab.config import CompileMode
from genlab.configs import resolve_train_config
from genlab.train.checkpoint import write_text_atomic
from genlab.train.ema import EMA
from genlab.nn.compiled import compile_submodules

sys.path.insert(0, str(Path(__file__).parent))  # the sibling scripts below
from gpu_suite import PRESETS  # noqa: E402
from profile_step import step_parts, step_runner  # noqa: E402
from side_by_side import device_sync  # noqa: E402


def host_ms(preset, overrides: dict, steps: int, data_root=None, warmup: int = 20,
            device: torch.device = torch.device("cpu"), compile_model: bool = False, compile_mode: str = "default") -> dict:
    """Milliseconds per step of train_step and of the EMA update, for one preset at the given overrides.
    On a GPU the steps run under bf16 autocast (as the suite's) and each timing waits for the device."""
    cfg = resolve_train_config(preset=preset, data_root=data_root, overrides=list(overrides.items()))
    model, objective, stream, opts = step_parts(cfg, device)
    graphs = compile_submodules(model, mode=compile_mode) if compile_model else False
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    finish = device_sync(device)
    ema = EMA(model, 0.999, "count")
    run = step_runner(model, objective, stream, opts, device, autocast, graphs, cfg.optim.grad_clip)
    run(0, warmup)
    syncs = host_waits(lambda: run(warmup, warmup + 5, wait=False)) / 5 if device.type == "cuda" else None
    finish()
    began = time.perf_counter()
    run(warmup, warmup + steps)
    step_ms = 1e3 * (time.perf_counter() - began) / steps
    began = time.perf_counter()
    for _ in range(steps):
        ema.update(model)
    finish()
    ema_ms = 1e3 * (time.perf_counter() - began) / steps
    return {"weights": sum(p.numel() for p in model.parameters()), "tensors": len(model.state_dict()),
            "batch_size": cfg.train.batch_size, "train_step_ms": step_ms, "ema_ms": ema_ms, "host_waits_per_step": syncs}


def host_waits(work) -> int:
    """How many times ``work`` made the host wait for the GPU (CUDA's sync debug mode warns at each wait)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            work()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help=f"a subset of {[p.name for p in PRESETS]}")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per model (after 20 untimed)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--size", choices=("smoke", "suite"), default="smoke",
                        help="smoke (default): tiny networks, batch 1, the host's work alone; suite: the GPU "
                             "suite's networks and batches")
    parser.add_argument("--compile", action="store_true", help="torch.compile each submodule, as the suite does")
    parser.add_argument("--compile-mode", default="default", choices=get_args(CompileMode),
                        help="torch.compile's mode with --compile (reduce-overhead: CUDA graphs)")
    parser.add_argument("--json", default=None, help="also write the rows here (rewritten after each model)")
    parser.add_argument("--data-root", default=None, help="default: $GENLAB_DATA")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to this torch build; use --device cpu")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    sizes = "smoke-size networks, batch 1" if args.size == "smoke" else "the suite's networks and batches"
    compiled = f", compiled ({args.compile_mode} mode)" if args.compile else ""
    print(f"{where}; {sizes}{compiled}; {args.steps} timed steps; torch {torch.__version__}")
    rows = []
    for p in PRESETS:
        if args.models and p.name not in args.models:
            continue
        overrides = {**p.smoke, "train.batch_size": "1"} if args.size == "smoke" else dict(p.gpu)
        row = {"model": p.name, "device": where, "genlab": str(Path(genlab.__file__).parent), "size": args.size,
               "compiled": args.compile, "compile_mode": args.compile_mode if args.compile else None,
               **host_ms(p.preset, overrides, args.steps, args.data_root, device=device, compile_model=args.compile,
                         compile_mode=args.compile_mode)}
        rows.append(row)
        total = row["train_step_ms"] + row["ema_ms"]
        print(f"{p.name:15s} {row['weights']:8d} weights in {row['tensors']:3d} tensors, batch {row['batch_size']:4d}: "
              f"train_step {row['train_step_ms']:7.2f} ms + EMA {row['ema_ms']:5.2f} ms = at most "
              f"{1e3 / total:5.0f} steps/s"
              + (f"; the host waits for the GPU {row['host_waits_per_step']:.1f} times a step"
                 if row["host_waits_per_step"] is not None else ""), flush=True)
        if args.json:  # rewritten whole after each model: a run stopped by a time limit keeps what it finished
            write_text_atomic(Path(args.json), json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
