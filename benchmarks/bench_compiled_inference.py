"""Sampling with the networks compiled (`genlab.load(compile=)`, `genlab sample --compile`) against eager, in one process.

    python benchmarks/bench_compiled_inference.py --preset ddpm-mnist --samples 32 --set steps=10 --pairs 3
                                                  [--mode default] [--threads 1] [--device cpu]

Two copies of the preset's network (same weights; untrained, as speed does not depend on them): one eager, one
compiled by `genlab.nn.compiled.compile_for_inference`, the function behind `genlab.load(compile=MODE)`. Both draw
the same ``--samples`` images in one batch with the model's sampler (``--sampler``, default its first; ``--set``
gives its options, e.g. ``steps=10`` for DDIM) through `genlab.sampling.api.draw`, alternating. The first call of
each (the compilation) is timed apart. Prints eager time / compiled time (above 1: compiling pays), in wall and CPU
seconds, and checks that both copies drew the same images (within float rounding: inductor reorders sums).
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
from genlab.nn.compiled import compile_for_inference
from genlab.sampling.api import draw, sampler_options
from genlab.train.run import build_model, to_run_layout

from runs_common import run_script
from side_by_side import alternate, describe, load_average, ratio_summary, start, torch_device, warmup_line


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="ddpm-mnist", help="a name from `genlab models --presets`")
    parser.add_argument("--samples", type=int, default=32, help="images per call, in one batch")
    parser.add_argument("--sampler", default=None, help="one of the model's samplers (default: its first)")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="a sampler option, as `genlab sample --set` (repeatable)")
    parser.add_argument("--mode", default="default", choices=get_args(CompileMode), help="torch.compile's mode")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's, one per core")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    start(args.threads)
    device = torch_device(args.device)
    cfg = resolve_train_config(preset=args.preset, data_root=args.data_root)
    spec = load_dataset(cfg.data.name, "test", cfg.data).spec
    torch.manual_seed(0)
    eager = to_run_layout(build_model(cfg, spec).to(device).eval(), cfg)
    compiled = copy.deepcopy(eager)
    compile_for_inference(compiled, args.mode)
    options = sampler_options(eager, args.sampler, args.options)
    kept = {}

    def sampling(model, key):
        def call():
            kept[key] = draw(model, args.samples, 0, device, batch_size=args.samples, sampler=args.sampler,
                             **vars(options))
        return call

    times = alternate(sampling(eager, "eager"), sampling(compiled, "compiled"), args.pairs,
                      torch.cuda.synchronize if device.type == "cuda" else (lambda: None))
    difference = (kept["eager"] - kept["compiled"]).abs().max().item()
    print(f"{args.preset} ({sum(p.numel() for p in eager.parameters()):,} weights), sampler "
          f"{args.sampler or eager.card.samplers[0].name} {vars(options)}, {args.samples} images a call on {device}, "
          f"compiled in mode {args.mode}:")
    print(f"  eager {args.samples / min(times['first']):.1f} img/s, compiled {args.samples / min(times['second']):.1f}"
          f" img/s (best window); eager time / compiled time: wall {describe(ratio_summary(times['first'], times['second']))}"
          f", CPU {describe(ratio_summary(times['first_cpu'], times['second_cpu']))}; {load_average()}")
    print(f"  {warmup_line(times, 'eager', 'compiled')}; largest difference between the two copies' images "
          f"{difference:.2e}")


if __name__ == "__main__":
    run_script(main, "bench_compiled_inference.py")
