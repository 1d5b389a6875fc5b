"""Training throughput of every registered model, and the genlab loop's overhead over a bare PyTorch loop.

For each model: the same network, objective, optimizer and batches are run by
(a) `genlab.train.loop.train` and (b) a minimal hand-written loop
(zero_grad / objective / backward / step). Both are timed over the steps only,
in the same process, alternating a few times; the overhead is the ratio of the
medians minus one. Prints one row per model.

    python benchmarks/bench_throughput.py [--device cpu] [--steps 60] [--models vae autoencoder]

With --presets, each named preset instead trains in its own fresh process (genlab's loop, a few warm-up
steps, then --steps timed ones at the preset's batch size), which reports its images/s, CPU seconds
and peak resident memory (the child's ru_maxrss, so each preset's own); with --against REV the same
runs alternate between this checkout and git revision REV (checked out into a temporary worktree),
giving the before/after ratio of the changes since REV in one run:

    python benchmarks/bench_throughput.py --presets vae-binarized-mnist ddpm-mnist --against 1830be3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import genlab  # noqa: F401
from genlab.config import RunConfig, apply_overrides
from genlab.data import load_dataset
from genlab.data.loader import BatchStream
from genlab.registry import MODELS
from genlab.train.loop import make_optimizer, train
from genlab.train.step import phase_parameters
from genlab.train.run import build_model, build_objective

from side_by_side import device_sync

# A dataset each family can train on without downloads beyond the shared MNIST files.
DATA_FOR = {"latent": "binarized-mnist", "autoregressive": "binarized-mnist", "adversarial": "mnist",
            "diffusion": "mnist"}


def bare_loop(cfg: RunConfig, steps: int, device) -> float:
    """Seconds for `steps` plain PyTorch steps over the same batches as genlab's loop."""
    data = load_dataset(cfg.data.name, "train", cfg.data)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, data.spec).to(device)
    objective = build_objective(cfg, data.spec)
    stream = BatchStream(data.to(device), cfg.train.batch_size, 1, cfg.train.seed)
    phases = model.phases()
    opts = {ph.name: make_optimizer(cfg, phase_parameters(model, ph.modules)) for ph in phases}
    model.train()
    device_sync(device)()
    began = time.perf_counter()
    for step in range(steps):
        batch = stream.micro_batches(step)[0]  # the same indexing work as genlab's loop
        for ph in phases:
            opts[ph.name].zero_grad(set_to_none=True)
            objective(model, batch, ph.name, step)["loss"].mean().backward()
            opts[ph.name].step()
    device_sync(device)()
    return time.perf_counter() - began


def genlab_loop(cfg: RunConfig, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return train(cfg, tmp).loop_seconds


def worker(preset: str, steps: int, warmup: int, threads: int, data_root: str | None) -> None:
    """In a fresh process: train ``preset`` for ``warmup`` steps, then time ``steps`` more (a resumed run)."""
    from genlab.configs import resolve_train_config  # the genlab on PYTHONPATH: this checkout or the old one

    if threads:
        torch.set_num_threads(threads)
    over = [("train.steps", str(warmup + steps)), ("train.progress", "false"), ("train.ema_decay", "0"),
            ("train.log_every", str(warmup + steps)), ("train.ckpt_every", str(warmup + steps))]
    cfg = resolve_train_config(preset=preset, data_root=data_root, device="cpu", overrides=over)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, tmp, until_step=warmup)
        cpu = time.process_time()
        result = train(None, tmp, resume=True)
        cpu = time.process_time() - cpu
    print(json.dumps({"images_per_s": steps * cfg.train.batch_size / result.loop_seconds, "cpu_s": cpu,
                      "threads": torch.get_num_threads(), "batch": cfg.train.batch_size}))


def run_worker(tree: Path, args, preset: str) -> dict:
    """One worker process on the genlab of ``tree``; adds its peak RSS (MiB) from the kernel's accounting."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", preset, "--steps", str(args.steps),
           "--threads", str(args.threads)] + (["--data-root", args.data_root] if args.data_root else [])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"the worker for {preset} on {tree} failed: {' '.join(cmd)}")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_rss_mib": usage.ru_maxrss / 1024}


def presets_main(args) -> None:
    here = Path(__file__).resolve().parents[1]
    old = None
    if args.against:
        old = Path(tempfile.mkdtemp()) / "old"
        subprocess.run(["git", "-C", str(here), "worktree", "add", "--detach", str(old), args.against], check=True,
                       capture_output=True)
    print(f"{args.threads or 'default'} threads per process, {args.steps} timed steps after 3 warm-up steps, "
          f"{args.repeats} repeats; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        for preset in args.presets:
            new_runs, old_runs = [], []
            for i in range(args.repeats):
                order = [(here, new_runs), (old, old_runs)] if i % 2 == 0 else [(old, old_runs), (here, new_runs)]
                for tree, runs in order:
                    if tree is not None:
                        runs.append(run_worker(tree, args, preset))
            row = new_runs[-1]
            line = (f"{preset:32s} batch {row['batch']:4d}  {statistics.median(r['images_per_s'] for r in new_runs):8.1f} img/s"
                    f"  peak RSS {max(r['peak_rss_mib'] for r in new_runs):6.0f} MiB")
            if old_runs:
                wall = [o["images_per_s"] and n["images_per_s"] / o["images_per_s"] for n, o in zip(new_runs, old_runs)]
                cpu = [o["cpu_s"] / n["cpu_s"] for n, o in zip(new_runs, old_runs)]
                line += (f"  new/old speed: wall {statistics.median(wall):.2f}x ({min(wall):.2f}-{max(wall):.2f}), "
                         f"CPU {statistics.median(cpu):.2f}x ({min(cpu):.2f}-{max(cpu):.2f}); old peak RSS "
                         f"{max(r['peak_rss_mib'] for r in old_runs):.0f} MiB")
            print(line + f"; load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        if old is not None:
            subprocess.run(["git", "-C", str(here), "worktree", "remove", "--force", str(old)], capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--data-root", default="")
    parser.add_argument("--presets", nargs="*", default=None, help="time these presets, each in its own process")
    parser.add_argument("--against", default=None, help="with --presets: alternate with this git revision")
    parser.add_argument("--threads", type=int, default=0, help="with --presets: torch threads (0: every core)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.steps, 3, args.threads, args.data_root or None)
    if args.presets:
        return presets_main(args)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats")
    print(f"{'model':20s} {'data':18s} {'genlab img/s':>12s} {'bare img/s':>11s} {'overhead':>9s}")
    for name in args.models or MODELS.names():
        family = MODELS.get(name).card.family
        cfg = apply_overrides(RunConfig.create(name), [
            f"data.name={DATA_FOR[family]}", f"data.root={args.data_root}", f"train.steps={args.steps}",
            f"train.batch_size={args.batch_size}", f"train.device={args.device}", "train.progress=false",
            f"train.log_every={args.steps}", f"train.ckpt_every={args.steps}"])
        ours, bare = [], []
        for _ in range(args.repeats):
            ours.append(genlab_loop(cfg, args.steps))
            bare.append(bare_loop(cfg, args.steps, device))
        o, b = statistics.median(ours), statistics.median(bare)
        images = args.steps * args.batch_size
        print(f"{name:20s} {cfg.data.name:18s} {images / o:12.0f} {images / b:11.0f} {100 * (o / b - 1):8.1f}%",
              flush=True)


if __name__ == "__main__":
    main()
