"""FID against NFE per sampler, the guidance sweep and sampling throughput of a trained diffusion run.

For each sampler and NFE budget, draws --n samples (seed 0; a conditional model draws label i mod 10 at
guidance 1) and prints FID, precision and recall against the 10,000 test images in genlab's LeNet
features, with the sampling throughput (images/s, sampling alone). With --guidance, a conditional run is
also swept over the guidance scale s (eps_u + s (eps_c - eps_u): s = 0 the unconditional model, s = 1 the
conditional one; Ho & Salimans write w = s - 1), adding the share of samples the LeNet classifies as the
requested label. Rows are stored in RUN_DIR/diffusion_sweeps.json, which `genlab report RUN` plots.

    python benchmarks/diffusion_sweeps.py runs/ddpm-mnist --n 1000 --nfe 10 20 50
    python benchmarks/diffusion_sweeps.py runs/ddpm-mnist-cond --n 1000 --nfe 20 --samplers ddim \\
        --guidance 0 1 2 3 5

10,000 samples is the protocol of the GAN table (README); fewer bias FID upwards, so say the count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genlab.eval.diffusion_sweeps import fid_vs_nfe, guidance_sweep, write_sweep  # noqa: E402
from genlab.train.distributed import resolve_device  # noqa: E402
from genlab.train.run import load_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--n", type=int, default=1000, help="samples per set (protocol: 10000)")
    parser.add_argument("--samplers", nargs="+", default=["ddim", "euler", "heun", "dpmpp-2m"])
    parser.add_argument("--nfe", nargs="*", type=int, default=[10, 20, 50], help="NFE budgets (none: skip)")
    parser.add_argument("--guidance", nargs="*", type=float, default=[], help="guidance scales s to sweep")
    parser.add_argument("--guidance-sampler", default="ddim")
    parser.add_argument("--guidance-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--no-ema", action="store_true", help="the raw weights instead of the EMA")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    dev = resolve_device(args.device)
    run = load_run(args.run_dir, dev, use_ema=not args.no_ema)
    weights = "EMA" if run.used_ema else "raw"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.run_dir}: step {run.step}, {weights} weights; torch {torch.__version__}, device {dev}, "
          f"{torch.get_num_threads()} threads, load average {load:.1f}; {args.n} samples per set")
    test = run.dataset("test").to(dev)
    began = time.perf_counter()
    # Row by row, smallest NFE first, each stored as soon as it is measured: a stopped sweep keeps its rows.
    for budget in args.nfe:
        for sampler in args.samplers:
            rows = fid_vs_nfe(run.model, test, dev, [sampler], [budget], args.n, batch_size=args.batch_size)
            write_sweep(args.run_dir, "nfe", rows, run.step, weights)
    for s in args.guidance:
        rows = guidance_sweep(run.model, test, dev, [s], args.n, args.guidance_sampler, args.guidance_steps,
                              batch_size=args.batch_size)
        write_sweep(args.run_dir, "guidance", rows, run.step, weights)
    print(f"rows in {Path(args.run_dir) / 'diffusion_sweeps.json'}")
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
