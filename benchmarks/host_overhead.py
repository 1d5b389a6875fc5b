"""The host's share of a training step: what the loop's step costs when the network does almost nothing.

    python benchmarks/host_overhead.py [--models vae gated-pixelcnn ...] [--steps 300]

For each model of the GPU suite, the network is shrunk to its --smoke size (a few channels) and fed one
image per step, so the arithmetic is negligible and the time of `train_step` (objective, backward,
clipping, the finite check, the optimizer) and of the weight average's update is the per-step work of the
host: on a GPU that work is what a step can never go below, however fast the device. Runs on the CPU, with
the torch threads the environment gives (OMP_NUM_THREADS); prints milliseconds per step and the steps per
second that the host alone allows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from genlab.configs import resolve_train_config
from genlab.train.ema import EMA
from genlab.train.step import train_step

sys.path.insert(0, str(Path(__file__).parent))  # the sibling scripts below
from gpu_suite import PRESETS  # noqa: E402
from profile_step import step_parts  # noqa: E402


def host_ms(preset, overrides: dict, steps: int, data_root=None, warmup: int = 20) -> dict:
    """Milliseconds per step of train_step and of the EMA update, for one preset at the given overrides."""
    cfg = resolve_train_config(preset=preset, data_root=data_root, overrides=list(overrides.items()))
    model, objective, stream, opts = step_parts(cfg)
    ema = EMA(model, 0.999, "count")
    for step in range(warmup):
        train_step(model, objective, stream.micro_batches(step), step, opts, grad_clip=cfg.optim.grad_clip)
    began = time.perf_counter()
    for step in range(warmup, warmup + steps):
        train_step(model, objective, stream.micro_batches(step), step, opts, grad_clip=cfg.optim.grad_clip)
    step_ms = 1e3 * (time.perf_counter() - began) / steps
    began = time.perf_counter()
    for _ in range(steps):
        ema.update(model)
    ema_ms = 1e3 * (time.perf_counter() - began) / steps
    return {"weights": sum(p.numel() for p in model.parameters()), "tensors": len(model.state_dict()),
            "train_step_ms": step_ms, "ema_ms": ema_ms}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help=f"a subset of {[p.name for p in PRESETS]}")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per model (after 20 untimed)")
    parser.add_argument("--data-root", default=None, help="default: $GENLAB_DATA")
    args = parser.parse_args(argv)
    rows = []
    print(f"CPU, {torch.get_num_threads()} torch threads; smoke-size networks, batch 1, {args.steps} timed steps")
    for p in PRESETS:
        if args.models and p.name not in args.models:
            continue
        row = {"model": p.name, **host_ms(p.preset, {**p.smoke, "train.batch_size": "1"}, args.steps, args.data_root)}
        rows.append(row)
        total = row["train_step_ms"] + row["ema_ms"]
        print(f"{p.name:15s} {row['weights']:8d} weights in {row['tensors']:3d} tensors: train_step "
              f"{row['train_step_ms']:6.2f} ms + EMA {row['ema_ms']:5.2f} ms = at most {1e3 / total:5.0f} steps/s",
              flush=True)
    return rows


if __name__ == "__main__":
    main()
