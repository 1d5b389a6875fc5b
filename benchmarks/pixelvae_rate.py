"""PixelVAE: how much the latent carries (the rate) as the PixelCNN decoder's receptive field grows.

Gulrajani et al. 2017 (arXiv:1611.05013) argue that a decoder with a small receptive field
leaves the global structure to the latent z, while a large one can model the image by itself
and lets the posterior collapse towards the prior (rate -> 0). This script measures that
trade-off on statically binarized MNIST: for each decoder setting (gated layers, first window)
it trains the `pixelvae-binarized-mnist-cpu` preset for ``--steps`` steps, evaluates the ELBO
(`genlab eval RUN --only elbo`) on ``--max-examples`` random test images, and prints per setting:

* the receptive field, measured by gradients: the number of pixels the centre pixel's
  conditional p(x_i | x_<i, z) depends on (every one of them precedes it in raster order);
* the rate KL(q(z|x) || p(z)) and the distortion -E_q log p(x|z) in nats per image, and -ELBO.

Runs that exist are reused (a partial one is resumed), so an interrupted sweep continues:

    python benchmarks/pixelvae_rate.py [--runs runs/pixelvae-rate] [--settings 1x3 1x5 2x5 3x5 6x5 10x7]
        [--steps 800] [--max-examples 1000] [--no-train]

A setting LxK is L gated layers whose first window is K wide (later ones 3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import genlab  # noqa: F401  (fills the registries)
from runs_common import ensure_trained, wall_minutes

PRESET = "pixelvae-binarized-mnist-cpu"


def parse_setting(text: str) -> tuple[int, int]:
    try:
        layers, kernel = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"setting {text!r}: give LAYERSxFIRST_KERNEL, e.g. 3x5") from None
    return layers, kernel


def receptive_pixels(model) -> int:
    """Pixels of a random image that the centre pixel's decoder output depends on (by gradients), at z = 0."""
    spec = model.data
    x = torch.rand(1, spec.channels, spec.height, spec.width, requires_grad=True)
    z = torch.zeros(1, model.cfg.latent_dim)
    raw = model.decode(z, x)
    raw[0, :, spec.height // 2, spec.width // 2].sum().backward()
    return int((x.grad.abs().sum(1) > 0).sum())


def main() -> int:
    from genlab.cli import main as genlab_main
    from genlab.train.run import load_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/pixelvae-rate", help="folder of the run folders")
    parser.add_argument("--settings", nargs="+", default=["1x3", "1x5", "2x5", "3x5", "6x5", "10x7"],
                        help="decoder settings LAYERSxFIRST_KERNEL")
    parser.add_argument("--steps", type=int, default=800, help="training steps per setting (the preset's 800)")
    parser.add_argument("--max-examples", default="1000", help="test images of the ELBO, or 'all'")
    parser.add_argument("--no-train", action="store_true", help="fail instead of training or evaluating missing runs")
    args = parser.parse_args()
    settings = [parse_setting(s) for s in args.settings]
    root, train = Path(args.runs), not args.no_train
    print(f"{len(settings)} runs of {args.steps} steps ({PRESET}), ELBO on {args.max_examples} test images; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)

    rows = []
    for layers, kernel in settings:
        run = root / f"layers{layers}-k{kernel}-{args.steps}"
        argv = ["--preset", PRESET, "--set", f"train.steps={args.steps}", "--set", f"model.pixel_layers={layers}",
                "--set", f"model.first_kernel={kernel}"]
        ensure_trained(run, argv, args.steps, train)
        path = run / "eval.json"
        found = json.loads(path.read_text()) if path.exists() else None
        if found is None or found["run"]["step"] < args.steps or "rate" not in found["metrics"]:
            if not train:
                raise SystemExit(f"{run} has no ELBO: run `genlab eval {run} --only elbo --max-examples "
                                 f"{args.max_examples}`")
            began = time.perf_counter()
            if genlab_main(["eval", str(run), "--only", "elbo", "--max-examples", str(args.max_examples)]) != 0:
                raise SystemExit(f"evaluating {run} failed")
            print(f"  evaluated {run.name} in {time.perf_counter() - began:.0f} s", flush=True)
            found = json.loads(path.read_text())
        m = found["metrics"]
        model = load_run(run, device="cpu").model.float()
        rows.append(dict(layers=layers, first_kernel=kernel, receptive_pixels=receptive_pixels(model),
                         rate=m["rate"]["value"], rate_se=m["rate"]["stderr"], distortion=m["distortion"]["value"],
                         neg_elbo=m["neg_elbo"]["value"], neg_elbo_se=m["neg_elbo"]["stderr"], n=m["neg_elbo"]["n"],
                         train_minutes=wall_minutes(run), command=" ".join(["genlab", "train", *argv, "--out", str(run)])))

    print(f"\nPixelVAE on binarized MNIST, {args.steps} steps of batch 32 per setting; ELBO terms on "
          f"{rows[0]['n']} test images (nats per image, ± standard error over images):\n")
    print("| gated layers | first window | receptive field (pixels) | rate KL | distortion | -ELBO | training min |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        minutes = f"{r['train_minutes']:.1f}" if r["train_minutes"] is not None else "-"
        print(f"| {r['layers']} | {r['first_kernel']} | {r['receptive_pixels']} | {r['rate']:.2f} ± {r['rate_se']:.2f} "
              f"| {r['distortion']:.2f} | {r['neg_elbo']:.2f} ± {r['neg_elbo_se']:.2f} | {minutes} |")
    root.mkdir(parents=True, exist_ok=True)
    (root / "pixelvae_rate.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
