"""CycleGAN over domain pairs and seeds: the translation evaluator's figures as mean ± spread.

For each pair (MNIST <-> inverted, thick-stroked or rotated MNIST, the 8x8
`digits` upsampled to 28x28, coloured MNIST, Fashion-MNIST) the script trains the
`cyclegan-mnist-<pair>` preset once per seed for ``--steps`` steps (default 300, a shared-CPU budget;
``--steps preset`` gives each pair its preset's length: 800 steps, and 4,000 for the colour pair, which
grey -> colour needs),
runs `genlab eval RUN` (the `translation` evaluator, quick protocol: 1,000 test images) and
prints one row per pair and direction: label preservation (or the purity of the class map when
the domains' classes differ), cycle L1 and the hidden-information ratio, LeNet FID and L1 to
the ground truth, each as mean ± sample standard deviation over the seeds, with the identity
map's (and the true map's) figure beside it.

Runs that exist are reused (a partial one is resumed), so the script can be re-run after an
interruption or on runs trained elsewhere:

    python benchmarks/translation_table.py [--runs runs/translation] [--pairs inverted thick rot90 fashion]
        [--seeds 0 1 2] [--steps 300 | --steps preset] [--no-train]

Run folders are named <pair>-<steps>-s<seed>.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import genlab  # noqa: F401  (fills the registries)
from genlab.configs import PRESETS
from runs_common import ensure_trained, spread, wall_minutes

PAIRS = ("inverted", "thick", "rot90", "digits", "colour", "fashion")
DIRECTIONS = ("a2b", "b2a")


def steps_arg(text: str) -> int | str:
    """--steps: a positive step count, or 'preset' for each pair's own length."""
    if text == "preset":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a positive step count nor 'preset'")
    return int(text)


def pair_steps(pair: str, steps: int | str) -> int:
    """The steps a pair trains: the count given, or for 'preset' its preset's own length."""
    return int(PRESETS.get(f"cyclegan-mnist-{pair}")()["train.steps"]) if steps == "preset" else steps


def train_argv(pair: str, steps: int, seed: str) -> list[str]:
    return ["--preset", f"cyclegan-mnist-{pair}", "--set", f"train.steps={steps}", "--seed", seed]


def ensure_evaluated(run: Path, target_step: int, train: bool) -> dict:
    """The run's eval.json (quick protocol), evaluating the final checkpoint when it is missing or older."""
    from genlab.cli import main

    path = run / "eval.json"
    if path.exists():
        found = json.loads(path.read_text())
        if found["run"]["step"] >= target_step and any(k.startswith("cycle_l1_") for k in found["metrics"]):
            return found
    if not train:
        raise SystemExit(f"{run} has no matching eval.json: run `genlab eval {run}`")
    if main(["eval", str(run)]) != 0:
        raise SystemExit(f"evaluating {run} failed")
    return json.loads(path.read_text())


def pick(metrics: dict, prefix: str, direction: str, suffix: str = "") -> float | None:
    """The value of e.g. fid_<net>_a2b_identity, matched by prefix, direction and suffix; None when absent."""
    hits = [m["value"] for k, m in metrics.items()
            if k.startswith(prefix) and k.endswith(f"_{direction}{suffix}")]
    return hits[0] if hits else None


def cell(values: list[float | None], fmt: str, baselines: list[float | None] = ()) -> str:
    """mean ± std over seeds, then the baselines (identity / true map) in brackets; '-' when not measured."""
    if not values or values[0] is None:
        return "-"
    text = spread(values, fmt)
    shown = [f"{b:{fmt}}" for b in baselines if b is not None]
    return text + (f" ({' / '.join(shown)})" if shown else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/translation", help="folder of the run folders (default runs/translation)")
    parser.add_argument("--pairs", nargs="+", default=["inverted", "thick", "rot90", "fashion"], choices=PAIRS)
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="training seeds (at least 3 for a spread)")
    parser.add_argument("--steps", type=steps_arg, default=300,
                        help="training steps per run, or 'preset': each pair's own length (800; colour: 4000)")
    parser.add_argument("--no-train", action="store_true", help="fail instead of training or evaluating missing runs")
    args = parser.parse_args()
    root, train = Path(args.runs), not args.no_train

    rows, summary, minutes, commands = [], {}, [], []
    for pair in args.pairs:
        preset = PRESETS.get(f"cyclegan-mnist-{pair}")()
        steps = pair_steps(pair, args.steps)
        found = {}
        for seed in args.seeds:
            run = root / f"{pair}-{steps}-s{seed}"
            started = time.time()
            ensure_trained(run, train_argv(pair, steps, seed), steps, train)
            found[seed] = ensure_evaluated(run, steps, train)["metrics"]
            if (w := wall_minutes(run)) is not None:
                minutes.append(w)
            print(f"{run.name}: done ({time.time() - started:.0f} s including eval)", flush=True)
        each = root / f"{pair}-{steps}-s$s"
        command = (f"for s in {' '.join(args.seeds)}; do genlab train {' '.join(train_argv(pair, steps, '$s'))} "
                   f"--out {each} && genlab eval {each}; done")
        for d in DIRECTIONS:
            per = {name: [pick(m, prefix, d) for m in found.values()] for name, prefix in (
                ("label", "label_preservation"), ("purity", "purity"), ("cycle", "cycle_l1"),
                ("ratio", "hidden_info_ratio"), ("fid", "fid_"), ("gt", "gt_l1"))}
            first = next(iter(found.values()))  # baselines do not depend on the model: seed 0's
            label_cell = cell(per["label"], ".1f", [pick(first, "label_preservation", d, s) for s in ("_identity", "_true_map")])
            if label_cell == "-" and per["purity"][0] is not None:
                label_cell = "purity " + cell(per["purity"], ".1f")
            rows.append((f"MNIST <-> {preset['data.domain_b']}", d, label_cell,
                         cell(per["cycle"], ".4f"), cell(per["ratio"], ".3f"),
                         cell(per["fid"], ".2f", [pick(first, "fid_", d, s) for s in ("_identity", "_true_map")]),
                         cell(per["gt"], ".4f", [pick(first, "gt_l1", d, "_identity")])))
            summary[f"{pair}/{d}"] = {"seeds": args.seeds, "steps": steps, **per, "command": command}
        commands.append(command)

    at = "each preset's own length of" if args.steps == "preset" else args.steps
    print(f"\nCycleGAN, presets cyclegan-mnist-<pair> at {at} steps (batch 16), {len(args.seeds)} seeds; "
          "`genlab eval` quick protocol (1,000 test images, 10,000 reference images); mean ± sample std over "
          "seeds, (identity / true map) in brackets.\n")
    head = ("pair", "direction", "label preservation %", "cycle L1", "hidden-info ratio", "LeNet FID", "L1 to truth")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nCommands:\n" + "\n".join(f"  {c}" for c in commands))
    if minutes:
        print(f"\nTraining wall time per run (file times): {min(minutes):.1f} to {max(minutes):.1f} min, "
              f"{sum(minutes):.1f} min in all (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    root.mkdir(parents=True, exist_ok=True)
    (root / "translation_table.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
