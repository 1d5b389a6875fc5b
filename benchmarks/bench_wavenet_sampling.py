"""Time WaveNet generation: the queue cache (Paine et al. 2016, arXiv:1611.09482) versus the naive sampler.

Draws n clips of ``--length`` samples from an UNTRAINED class-conditional WaveNet (sampling cost does
not depend on the weights): the sizes of the ``wavenet-fsdd-cpu`` preset by default, ``--size default``
for the model's default Config. In one run, with the same generators:

* cached: ``sample(..., cache=True)``: one column per dilated layer per sample, O(layers);
* naive: ``sample(..., cache=False)``: the whole network over the clip so far at every sample, O(t).

The naive cost per sample grows with t, so both are timed over the same prefix of ``--length``
samples; the script checks that both drew identical samples and prints audio samples per second
(clips x samples / wall seconds) for each.

    python benchmarks/bench_wavenet_sampling.py                 # n=8 clips, 1000 samples each
    python benchmarks/bench_wavenet_sampling.py --length 4000    # a whole 0.5 s FSDD clip
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genlab.configs.autoregressive import wavenet_fsdd_cpu  # noqa: E402
from genlab.models.autoregressive.wavenet import WaveNet  # noqa: E402
from genlab.nn.spec import DataSpec  # noqa: E402
from genlab.rng import make_generators  # noqa: E402
from genlab.sampling.sequence import sample  # noqa: E402


def preset_config(size: str) -> WaveNet.Config:
    if size == "default":
        return WaveNet.Config()
    knobs = {k.removeprefix("model."): int(v) for k, v in wavenet_fsdd_cpu().items() if k.startswith("model.")}
    return WaveNet.Config(**knobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="clips per draw (default 8)")
    parser.add_argument("--length", type=int, default=1000, help="samples drawn per clip (default 1000)")
    parser.add_argument("--size", choices=("preset", "default"), default="preset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    spec = DataSpec(1, 1, args.length, bits=8, num_classes=10, sample_rate=8000)
    model = WaveNet(preset_config(args.size), spec).eval()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, load average {load:.1f}; "
          f"{args.n} clips x {args.length} samples, untrained wavenet ({args.size} size, "
          f"{len(model.layers)} layers, receptive field {model.receptive_field()} samples)")
    labels = torch.arange(args.n) % 10
    results = {}
    for name, cache in (("cached (queues)", True), ("naive (full pass)", False)):
        began = time.perf_counter()
        clips = sample(model, args.n, make_generators(args.seed, args.n), "cpu", label=labels, cache=cache)
        seconds = time.perf_counter() - began
        results[name] = clips
        print(f"{name:18s} {args.n * args.length / seconds:10.1f} samples/s  ({seconds:.1f} s)")
    same = torch.equal(*results.values())
    print("identical samples:", same)
    if not same:
        sys.exit("the queue cache and the full pass drew different samples")


if __name__ == "__main__":
    main()
