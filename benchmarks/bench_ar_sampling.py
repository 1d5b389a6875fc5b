"""Time autoregressive sampling: cached (incremental) versus full recomputation at every pixel.

Draws n binarized-MNIST-shaped images (1x28x28, Bernoulli pixels) from UNTRAINED
models of the default size: sampling cost does not depend on the weights, only
on the architecture. For each model, in one run:

* cached: ``sample(..., cache=True)``, the whole image;
* naive: ``sample(..., cache=False)``, which runs the full network on the whole
  canvas at every pixel. Its cost per pixel is constant, so by default it is timed
  on the first ``--naive-rows`` rows and scaled to 28 rows (printed as such);
  ``--naive-rows 28`` measures it all.

Both use the same generators, so the rows drawn by both must be identical: the
script checks it.

    python benchmarks/bench_ar_sampling.py                       # n=64, naive timed on 1 row
    python benchmarks/bench_ar_sampling.py --naive-rows 28 --n 8  # everything measured
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genlab.models.autoregressive.gated_pixelcnn import GatedPixelCNN  # noqa: E402
from genlab.models.autoregressive.pixel_transformer import PixelTransformer  # noqa: E402
from genlab.models.autoregressive.pixelcnn import PixelCNN  # noqa: E402
from genlab.nn.spec import DataSpec  # noqa: E402
from genlab.sampling.autoregressive import sample  # noqa: E402
from genlab.rng import make_generators  # noqa: E402

MODELS = {"pixel-transformer": PixelTransformer, "gated-pixelcnn": GatedPixelCNN, "pixelcnn": PixelCNN}
SPEC = DataSpec(1, 28, 28, bits=1)


def timed(fn):
    began = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="samples per draw (default 64)")
    parser.add_argument("--naive-rows", type=int, default=1, help="rows over which the naive sampler is timed")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = max(1, min(args.naive_rows, SPEC.height))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"load average {load:.1f}; n={args.n} samples of 1x28x28, untrained default-size models")
    print(f"{'model':18s} {'params':>9s} {'cached (s)':>11s} {'naive (s)':>11s} {'naive/cached':>13s}  "
          f"{'rows equal':10s}  naive timing")
    for name in args.models:
        cls = MODELS[name]
        torch.manual_seed(args.seed)
        model = cls(cls.Config(), SPEC).to(args.device).eval()
        params = sum(p.numel() for p in model.parameters())
        gens = make_generators(args.seed, args.n, args.device)
        cached, t_cached = timed(lambda: sample(model, args.n, gens, args.device, cache=True))
        gens = make_generators(args.seed, args.n, args.device)
        naive, t_part = timed(lambda: sample(model, args.n, gens, args.device, cache=False, until_row=rows))
        t_naive = t_part * SPEC.height / rows
        same = torch.equal(cached[:, :, :rows], naive[:, :, :rows])
        how = "measured" if rows == SPEC.height else f"{t_part:.1f} s for {rows} row(s), x {SPEC.height}/{rows}"
        print(f"{name:18s} {params:9d} {t_cached:11.2f} {t_naive:11.1f} {t_naive / t_cached:13.1f}  "
              f"{str(same):10s}  {how}", flush=True)


if __name__ == "__main__":
    main()
