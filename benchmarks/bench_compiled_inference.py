"""Inference with the networks compiled (`genlab.load(compile=)`, `genlab sample|eval --compile`) against eager.

    python benchmarks/bench_compiled_inference.py --preset ddpm-mnist --samples 32 --set steps=10 --pairs 3
                                                  [--mode default] [--threads 1] [--device cpu]
    python benchmarks/bench_compiled_inference.py --preset vae-binarized-mnist --samples 16 --iwae-k 100

Two copies of the preset's network (same weights; untrained, as speed does not depend on them): one eager, one
compiled by `genlab.nn.compiled.compile_for_inference`, the function behind `genlab.load(compile=MODE)`. Both draw
the same ``--samples`` images in one batch with the model's sampler (``--sampler``, default its first; ``--set``
gives its options, e.g. ``steps=10`` for DDIM) through `genlab.sampling.api.draw`, alternating. The first call of
each (the compilation) is timed apart. With ``--iwae-k K`` (a VAE) both copies compute the IWAE bound with K
importance samples of ``--samples`` test images instead, as `genlab eval` does (256 images decoded a pass on a CPU,
4096 on a GPU). Prints eager time / compiled time (above 1: compiling pays), in wall and CPU seconds, and the
largest difference between the two copies' outputs (float rounding: inductor sums in another order).
"""

from __future__ import annotations

import argparse
import copy
from typing import get_args

import torch

import genlab  # noqa: F401
from genlab.config import CompileMode
from genlab.configs import resolve_train_config
from genlab.data import load_dataset
from genlab.errors import InputError
from genlab.eval.latent import iwae_log_likelihood
from genlab.nn.compiled import compile_for_inference
from genlab.sampling.api import draw, sampler_options
from genlab.train.run import build_model, to_run_layout

from runs_common import run_script
from side_by_side import (alternate, describe, device_sync, load_average, ratio_summary, start, torch_device,
                          warmup_line)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="ddpm-mnist", help="a name from `genlab models --presets`")
    parser.add_argument("--samples", type=int, default=32, help="images per call, in one batch")
    parser.add_argument("--sampler", default=None, help="one of the model's samplers (default: its first)")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="a sampler option, as `genlab sample --set` (repeatable)")
    parser.add_argument("--iwae-k", type=int, default=None, help="time the IWAE bound with this k instead (a VAE)")
    parser.add_argument("--mode", default="default", choices=get_args(CompileMode), help="torch.compile's mode")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's, one per core")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    start(args.threads)
    device = torch_device(args.device)
    cfg = resolve_train_config(preset=args.preset, data_root=args.data_root)
    test = load_dataset(cfg.data.name, "test", cfg.data)
    torch.manual_seed(0)
    eager = to_run_layout(build_model(cfg, test.spec).to(device).eval(), cfg)
    compiled = copy.deepcopy(eager)
    compile_for_inference(compiled, args.mode)
    kept = {}
    if args.iwae_k and "iwae" not in eager.card.evaluators:
        raise InputError(f"--iwae-k: {args.preset} has no IWAE bound (its evaluators: "
                         f"{', '.join(eager.card.evaluators)}); give a VAE preset such as vae-binarized-mnist")
    if args.iwae_k:
        x = test.batch(torch.arange(args.samples), None)["x"].to(device)
        chunk = max(1, (4096 if device.type == "cuda" else 256) // args.samples)
        task = f"IWAE bound, k = {args.iwae_k}, {args.samples} test images a call"

        def work(model):
            with torch.no_grad():
                return iwae_log_likelihood(model, x, args.iwae_k, chunk, torch.Generator(device).manual_seed(0))
    else:
        options = sampler_options(eager, args.sampler, args.options)
        task = f"sampler {args.sampler or eager.card.samplers[0].name} {vars(options)}, {args.samples} images a call"

        def work(model):
            return draw(model, args.samples, 0, device, batch_size=args.samples, sampler=args.sampler, **vars(options))

    def timed(model, key):
        def call():
            kept[key] = work(model)
        return call

    times = alternate(timed(eager, "eager"), timed(compiled, "compiled"), args.pairs, device_sync(device))
    difference = (kept["eager"] - kept["compiled"]).abs().max().item()
    unit = "images" if args.iwae_k else "samples"
    print(f"{args.preset} ({sum(p.numel() for p in eager.parameters()):,} weights), {task} on {device}, compiled in "
          f"mode {args.mode}:")
    print(f"  eager {args.samples / min(times['first']):.1f} {unit}/s, compiled {args.samples / min(times['second']):.1f}"
          f" {unit}/s (best window); eager time / compiled time: wall {describe(ratio_summary(times['first'], times['second']))}"
          f", CPU {describe(ratio_summary(times['first_cpu'], times['second_cpu']))}; {load_average()}")
    print(f"  {warmup_line(times, 'eager', 'compiled')}; largest difference between the two copies' outputs "
          f"{difference:.2e}")


if __name__ == "__main__":
    run_script(main, "bench_compiled_inference.py")
