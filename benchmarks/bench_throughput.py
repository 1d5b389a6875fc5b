"""Training throughput of every registered model, and the genlab loop's overhead over a bare PyTorch loop.

For each model: the same network, objective, optimizer and batches are run by
(a) `genlab.train.loop.train` and (b) a minimal hand-written loop
(zero_grad / objective / backward / step). Both are timed over the steps only,
in the same process, alternating a few times; the overhead is the ratio of the
medians minus one. Prints one row per model.

    python benchmarks/bench_throughput.py [--device cpu] [--steps 60] [--models vae autoencoder]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import genlab  # noqa: F401
from genlab.config import RunConfig, apply_overrides
from genlab.data import load_dataset
from genlab.data.loader import BatchStream
from genlab.registry import MODELS
from genlab.train.loop import make_optimizer, train
from genlab.train.step import phase_parameters
from genlab.train.run import build_model, build_objective

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
    _sync(device)
    began = time.perf_counter()
    for step in range(steps):
        batch = stream.micro_batches(step)[0]  # the same indexing work as genlab's loop
        for ph in phases:
            opts[ph.name].zero_grad(set_to_none=True)
            objective(model, batch, ph.name, step)["loss"].mean().backward()
            opts[ph.name].step()
    _sync(device)
    return time.perf_counter() - began


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def genlab_loop(cfg: RunConfig, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return train(cfg, tmp).loop_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--data-root", default="")
    args = parser.parse_args()
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
