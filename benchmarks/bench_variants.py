"""One candidate speed-up against genlab's current training step, side by side in one process.

    python benchmarks/bench_variants.py vae-binarized-mnist channels_last --steps 3 --pairs 6

Both sides build the preset's network, objective, Adam and batches (the same seed) and run genlab's
training step (`genlab.train.step.train_step`) in windows of --steps steps, alternating over --pairs
pairs at one thread; the ratio is base time / variant time (above 1: the variant is faster), in CPU and
wall seconds. The base is the preset's network in PyTorch's default layout (NCHW) with unfused Adam at
one thread, whatever the preset's train.channels_last says (genlab's loop fuses Adam since 2026-11-30, for
the GPU: README, GPU suite). Variants:

    channels_last  the network's 4-D weights and the batches in NHWC (what train.channels_last does)
    fused          Adam with fused=True (one kernel over all parameters)
    threads2       2 threads instead of 1 (wall time is the figure here: CPU time counts spinning threads)
    compile        torch.compile (inductor) on each top-level submodule, as train.compile=true does; the first
                   window (the compilation) is timed on its own and printed, the ratio is of compiled steps
    native_conv    PyTorch's own convolutions (im2col and a BLAS product) instead of oneDNN's, which it uses on
                   the CPU by default (`torch.backends.mkldnn.enabled=False` during the variant's steps)

`--set KEY=VALUE` (repeatable, as `genlab train --set`) changes the preset for both sides, e.g.
`--set model.dropout=0` to see what the U-Net's dropout costs a compiled step.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

import genlab  # noqa: F401
from genlab.allocator import keep_freed_memory
from genlab.configs import resolve_train_config
from genlab.data import load_dataset
from genlab.data.loader import BatchStream
from genlab.train.run import build_model, build_objective
from genlab.nn.compiled import compile_submodules
from genlab.train.step import PhaseOptimizers, train_step

from runs_common import run_script
from side_by_side import alternate, describe, load_average, ratio_summary

VARIANTS = ("channels_last", "fused", "threads2", "compile", "native_conv")


@contextlib.contextmanager
def without_onednn():
    """PyTorch's own CPU convolutions inside, oneDNN's again after. (Not `torch.backends.mkldnn.flags`: it also
    sets oneDNN's TF32 flag, which this CPU build warns about.)"""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


def stepper(cfg, data, variant: str, steps: int):
    """A function running ``steps`` training steps of a fresh network under ``variant`` ("base": NCHW, unfused Adam)."""
    torch.manual_seed(0)
    model, objective = build_model(cfg, data.spec), build_objective(cfg, data.spec)
    nhwc = variant == "channels_last"
    if nhwc:
        model.to(memory_format=torch.channels_last)
    if variant == "compile":
        compile_submodules(model)  # what the training loop does with train.compile=true
    o = cfg.optim
    opts = PhaseOptimizers(model, model.phases(), lambda p: torch.optim.Adam(
        p, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, fused=variant == "fused"))
    stream = BatchStream(data, cfg.train.batch_size, 1, 0)
    done = [0]

    def run():
        torch.set_num_threads(2 if variant == "threads2" else 1)
        with without_onednn() if variant == "native_conv" else contextlib.nullcontext():
            for _ in range(steps):
                done[0] += 1
                batches = stream.micro_batches(done[0])
                if nhwc:
                    batches = [{k: v.contiguous(memory_format=torch.channels_last)
                                if torch.is_tensor(v) and v.dim() == 4 else v for k, v in b.items()} for b in batches]
                train_step(model, objective, batches, done[0], opts)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset")
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=3, help="training steps per window")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the preset for both sides, as `genlab train --set` (repeatable)")
    args = parser.parse_args()
    keep_freed_memory()  # as genlab's loop does, for both sides
    over = args.overrides + ([f"train.batch_size={args.batch_size}"] if args.batch_size else [])
    cfg = resolve_train_config(preset=args.preset, data_root=args.data_root, overrides=over)
    data = load_dataset(cfg.data.name, "train", cfg.data)
    base, variant = stepper(cfg, data, "base", args.steps), stepper(cfg, data, args.variant, args.steps)
    if args.variant == "compile":
        start = time.perf_counter()
        variant()  # compiles on its first steps: a one-off cost per run, reported apart from the ratio
        print(f"compile: first window of {args.steps} steps took {time.perf_counter() - start:.1f} s")
    t = alternate(base, variant, args.pairs)
    changed = "".join(f", {o}" for o in args.overrides)
    print(f"{args.preset} (batch {cfg.train.batch_size}{changed}) {args.variant}: base time / variant time, CPU "
          f"{describe(ratio_summary(t['first_cpu'], t['second_cpu']))}, wall "
          f"{describe(ratio_summary(t['first'], t['second']))}; {load_average()}")


if __name__ == "__main__":
    run_script(main, "bench_variants.py")
