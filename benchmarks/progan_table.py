"""Progressive growing against DCGAN at an equal number of images shown, and the ablation of its three tricks.

For each dataset (MNIST, Fashion-MNIST) and seed the script trains

  * ``progan``: the `progan-<data>` preset (4 -> 8 -> 16 -> 32, ``fade`` steps per fade-in and per
    stabilization at batch 32, non-saturating loss);
  * ``dcgan``: the `dcgan-<data>` preset (batch 64) for as many steps as show the same number of
    images (progan's steps x 32 / 64);
  * ``no-mbstd``, ``no-equalized-lr``, ``no-pixel-norm``: progan with each trick off in turn;
  * ``wgan-gp``: progan with the paper's loss (WGAN-GP, lambda 10, drift 0.001; Adam lr 1e-3,
    betas 0 / 0.99 from the model card), about twice the time per step;

evaluates each with `genlab eval RUN --only sample-quality --n-samples N --n-reference N` (LeNet
features of the dataset's shipped network, samples against the official test images), and prints
one row per configuration: FID, KID, precision, recall, the LeNet classifier score (an
Inception-score analogue, at most 10) as mean ± sample std over seeds, the per-seed FIDs, and how
many seeds collapsed. A seed counts as collapsed when its classifier score is below
``--collapse-below`` (default 5: the samples look like fewer than about five of the ten classes;
2,000 real test images score 9.60 on MNIST and 8.30 on Fashion-MNIST).

    python benchmarks/progan_table.py [--runs runs/progan-table] [--data mnist fashion-mnist] [--seeds 0 1 2]
        [--configs progan dcgan no-mbstd no-equalized-lr no-pixel-norm wgan-gp] [--n-samples 10000]
        [--quick] [--no-train] [--estimate]

``--quick`` shrinks everything for a smoke run of the whole protocol: 50 steps per fade and per
stabilization (350 steps, 11,200 images; DCGAN 175 steps), 2,000 samples, MNIST only.
``--estimate`` prints the number of runs and the images each shows, and stops. Runs that exist are
reused (a partial run is resumed). Run folders are named <data>-<config>-f<fade>-s<seed>.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import genlab  # noqa: F401  (fills the registries)
from genlab.configs import PRESETS
from runs_common import ensure_evaluated, ensure_trained, eval_argv, metric, spread, wall_minutes

# Configuration -> extra overrides of the progan preset (dcgan has its own preset).
PROGAN_VARIANTS = {
    "progan": [],
    "no-mbstd": ["mbstd=false"],
    "no-equalized-lr": ["equalized_lr=false"],
    "no-pixel-norm": ["pixel_norm=false"],
    "wgan-gp": ["loss=wasserstein", "penalty=wgan-gp", "drift=0.001"],
}
CONFIGS = ("progan", "dcgan", *[c for c in PROGAN_VARIANTS if c != "progan"])
METRICS = ("fid", "kid", "precision", "recall", "is")


def progan_steps(fade: int) -> int:
    """Steps of the whole schedule: a stabilization at each resolution, a fade-in into each but the first."""
    levels = 4  # 4, 8, 16, 32: 28x28 padded to 32x32
    return levels * fade + (levels - 1) * fade


def train_argv(data: str, config: str, fade: int, seed: str) -> tuple[list[str], int]:
    """`genlab train` arguments of a configuration and the steps it trains for."""
    progan = PRESETS.get(f"progan-{data}")()
    steps = progan_steps(fade)
    if config == "dcgan":
        dcgan = PRESETS.get(f"dcgan-{data}")()
        images = steps * int(progan["train.batch_size"])
        dcgan_steps = images // int(dcgan["train.batch_size"])
        return ["--preset", f"dcgan-{data}", "--set", f"train.steps={dcgan_steps}", "--seed", seed], dcgan_steps
    sets = [f"model.fade_steps={fade}", f"model.stable_steps={fade}", f"train.steps={steps}",
            *PROGAN_VARIANTS[config]]
    return ["--preset", f"progan-{data}", *[a for s in sets for a in ("--set", s)], "--seed", seed], steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/progan-table", help="folder of the run folders")
    parser.add_argument("--data", nargs="+", default=None, choices=["mnist", "fashion-mnist"])
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="training seeds (at least 3 for a spread)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--fade", type=int, default=None, help="steps per fade-in and per stabilization (preset: 200)")
    parser.add_argument("--n-samples", type=int, default=None, help="generated and real images for the metrics")
    parser.add_argument("--collapse-below", type=float, default=5.0, help="classifier score under which a seed collapsed")
    parser.add_argument("--quick", action="store_true", help="50 steps per phase, 2,000 samples, MNIST only")
    parser.add_argument("--no-train", action="store_true", help="fail instead of training or evaluating missing runs")
    parser.add_argument("--estimate", action="store_true", help="print the runs and images shown, then stop")
    args = parser.parse_args()
    fade = args.fade or (50 if args.quick else int(PRESETS.get("progan-mnist")()["model.fade_steps"]))
    n_samples = args.n_samples or (2000 if args.quick else 10000)
    datasets = args.data or (["mnist"] if args.quick else ["mnist", "fashion-mnist"])
    root, train = Path(args.runs), not args.no_train

    plan = [(d, c, s) for d in datasets for c in args.configs for s in args.seeds]
    steps = {c: train_argv(datasets[0], c, fade, "0")[1] for c in args.configs}
    print(f"{len(plan)} runs: {len(datasets)} dataset(s) x {len(args.configs)} configuration(s) x {len(args.seeds)} "
          f"seed(s); steps per run: {', '.join(f'{c} {n}' for c, n in steps.items())} "
          f"({progan_steps(fade) * 32:,} images shown each); {n_samples} samples per evaluation", flush=True)
    if args.estimate:
        return 0

    rows, summary, minutes = [], {}, []
    for data in datasets:
        for config in args.configs:
            per_seed = {m: [] for m in METRICS}
            for seed in args.seeds:
                run = root / f"{data}-{config}-f{fade}-s{seed}"
                argv, target = train_argv(data, config, fade, seed)
                ensure_trained(run, argv, target, train)
                found = ensure_evaluated(run, n_samples, target, train)
                for m in METRICS:
                    per_seed[m].append(metric(found, m))
                if (w := wall_minutes(run)) is not None:
                    minutes.append(w)
            collapsed = sum(v < args.collapse_below for v in per_seed["is"])
            each = root / f"{data}-{config}-f{fade}-s$s"
            command = (f"for s in {' '.join(args.seeds)}; do genlab train {' '.join(train_argv(data, config, fade, '$s')[0])}"
                       f" --out {each} && genlab {' '.join(eval_argv(each, n_samples))}; done")
            rows.append((data, config, per_seed, collapsed, command))
            summary[f"{data}/{config}"] = {"seeds": args.seeds, "fade": fade, **per_seed, "collapsed": collapsed,
                                           "command": command}

    print(f"\nprogan ({fade} steps per fade-in and per stabilization, batch 32) against DCGAN (batch 64) at "
          f"{progan_steps(fade) * 32:,} images shown, {len(args.seeds)} seeds; {n_samples} samples against "
          f"{n_samples} test images in the dataset's LeNet features; mean ± sample std over seeds; collapsed: "
          f"seeds whose LeNet classifier score < {args.collapse_below}.\n")
    head = ("data", "configuration", "FID", "KID", "precision", "recall", "classifier score", "collapsed", "FID per seed")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for data, config, per_seed, collapsed, _ in rows:
        print(f"| {data} | {config} | {spread(per_seed['fid'])} | {spread(per_seed['kid'], '.3f')} | "
              f"{spread(per_seed['precision'], '.3f')} | {spread(per_seed['recall'], '.3f')} | "
              f"{spread(per_seed['is'])} | {collapsed}/{len(args.seeds)} | "
              f"{', '.join(f'{v:.2f}' for v in per_seed['fid'])} |")
    if minutes:
        print(f"\nTraining wall time per run (file times): {min(minutes):.1f} to {max(minutes):.1f} min, "
              f"{sum(minutes):.1f} min in all (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    print("\nCommands:\n" + "\n".join(f"  {row[-1]}" for row in rows))
    root.mkdir(parents=True, exist_ok=True)
    (root / "progan_table.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
