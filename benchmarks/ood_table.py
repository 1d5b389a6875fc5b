"""The Fashion-MNIST <-> MNIST out-of-distribution table: the known failure of likelihood, then the fixes.

Nalisnick et al. 2019 (arXiv:1810.09136): a generative model trained on
Fashion-MNIST gives MNIST digits a *higher* likelihood than its own test set, so
the raw likelihood detects MNIST as outliers with AUROC well below 0.5. The
corrected scores (input complexity, Serra et al. 2020; likelihood ratio against
a background model, Ren et al. 2019; typicality, Nalisnick et al. 2019) should
reach AUROC >= 0.95 in both directions.

For each model family (VAE; PixelCNN when --models includes it) and each
direction, the script trains the preset runs it needs (the in-distribution model
and its background twin trained on mutated inputs, `genlab/configs/ood.py`)
unless they exist, runs `genlab ood` on them, and prints one row per score:

    model | train data | OOD data | score | AUROC | AUPR | FPR95

then the commands that produced the runs and the scores. Run from the repository root:

    python benchmarks/ood_table.py [--runs runs/ood] [--models vae pixelcnn] [--max-examples 2000]
        [--iwae-k 16] [--directions fashion-mnist:mnist mnist:fashion-mnist] [--no-train]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import genlab  # noqa: F401  (fills the registries)
import genlab.configs.ood  # noqa: F401  (the OOD presets)
import genlab.eval.exact  # noqa: F401
import genlab.models.autoregressive  # noqa: F401  (pixelcnn, in case the package does not import it yet)
import genlab.objectives.autoregressive  # noqa: F401
from genlab.ood.run import OODOptions, ood_run
from runs_common import ensure_trained, trained_steps, wall_minutes


def _preset(model: str, data: str, background: bool) -> str:
    return f"ood-{model}-{data}" + ("-background" if background else "")


def ensure_run(preset: str, runs: Path, train: bool, log) -> tuple[Path, str]:
    """The preset's run folder, trained (or resumed) to its full length when ``train``."""
    from genlab.configs import PRESETS

    out = runs / preset
    ensure_trained(out, ["--preset", preset], int(PRESETS.get(preset)()["train.steps"]), train, log)
    return out, f"genlab train --preset {preset} --out {out}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/ood", help="folder of the run folders (default runs/ood)")
    parser.add_argument("--models", nargs="+", default=["vae"], choices=["vae", "pixelcnn"])
    parser.add_argument("--directions", nargs="+", default=["fashion-mnist:mnist", "mnist:fashion-mnist"],
                        help="TRAIN:OOD dataset pairs")
    parser.add_argument("--max-examples", type=int, default=2000, help="images per set (seeded random subset)")
    parser.add_argument("--reference-examples", type=int, default=1000, help="training images for H_hat")
    parser.add_argument("--iwae-k", type=int, default=16, help="importance samples per image (VAE)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-train", action="store_true", help="fail instead of training missing runs")
    args = parser.parse_args()
    runs = Path(args.runs)
    log = print
    commands, rows, timings = [], [], []
    for model in args.models:
        for pair in args.directions:
            train_data, ood_data = pair.split(":")
            run, cmd_run = ensure_run(_preset(model, train_data, False), runs, not args.no_train, log)
            bg, cmd_bg = ensure_run(_preset(model, train_data, True), runs, not args.no_train, log)
            for c, d in ((cmd_run, run), (cmd_bg, bg)):
                if c not in commands:
                    commands.append(c)
                    timings.append((d.name, trained_steps(d), wall_minutes(d)))
            opts = OODOptions(ood=[ood_data], background=str(bg), max_examples=args.max_examples,
                              reference_examples=args.reference_examples, iwae_k=args.iwae_k, seed=args.seed,
                              device=args.device)
            began = time.perf_counter()
            result = ood_run(run, opts, log=lambda *_: None)
            seconds = time.perf_counter() - began
            commands.append(f"genlab ood {run} --ood {ood_data} --background {bg} --max-examples "
                            f"{args.max_examples} --reference-examples {args.reference_examples}"
                            + (f" --iwae-k {args.iwae_k}" if result["run"]["likelihood_kind"] == "bound" else "")
                            + f" --seed {args.seed} --device {args.device}   # {seconds:.0f} s")
            kind = result["run"]["likelihood_kind"]
            for score, m in result["ood"][ood_data]["metrics"].items():
                label = f"{score} [{kind}]" if score in ("bpd", "typicality", "complexity-png", "complexity-zlib") \
                    else f"{score} [{kind}/{result['background']['likelihood_kind']}]"
                rows.append((model, train_data, ood_data, label, m["auroc"], m["aupr"], m["fpr95"], m["n_in"],
                             m["n_ood"]))
            t = result["ood"][ood_data]["typicality_batches"]
            if t:
                rows.append((model, train_data, ood_data, f"typicality, batches of {t['m']} [{kind}]", t["auroc"],
                             t["aupr"], t["fpr95"], t["n_in"], t["n_ood"]))

    head = ("model", "train data", "OOD data", "score", "AUROC", "AUPR", "FPR95", "n in/OOD")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.3f} | {r[5]:.3f} | {r[6]:.3f} | {r[7]}/{r[8]} |")
    print("\nAUPR: OOD positive; FPR95: share of OOD images under the threshold keeping 95% of in-distribution "
          "test images. [bound] = IWAE bound, [exact] = exact NLL; per-image rows count images, batch rows count "
          "batches.")
    print("\nTraining runs (steps, wall time from the run folder's file times, on this machine):")
    for name, steps, minutes in timings:
        print(f"  {name}: {steps} steps, " + (f"{minutes:.1f} min" if minutes is not None else "?"))
    print(f"\nCommands (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"python {sys.version.split()[0]}):")
    for c in commands:
        print(f"  {c}")
    summary = runs / "ood_table.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"rows": rows, "commands": commands}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
