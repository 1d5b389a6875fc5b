"""What the benchmark scripts share about run folders: how far a run trained, how long it took, training and
evaluating it, and the mean ± spread of a figure over seeds; and how a script reports a user's error."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Callable, Sequence


def trained_steps(run_dir: Path) -> int | None:
    """Step of the newest readable checkpoint, or None when there is no run (or no checkpoint) yet."""
    from genlab.train.checkpoint import load_latest

    try:
        return int(load_latest(run_dir)["state"]["step"])
    except Exception:  # no run or no readable checkpoint yet
        return None


def wall_minutes(run_dir: Path) -> float | None:
    """Training wall time from the files' times: command.txt (written at the start) to the newest checkpoint.

    A run that was resumed counts the pause too; the benchmarks that print it say it is file-time based.
    """
    ckpts = sorted((run_dir / "checkpoints").glob("step_*"))
    if not ckpts or not (run_dir / "command.txt").exists():
        return None
    return (ckpts[-1].stat().st_mtime - (run_dir / "command.txt").stat().st_mtime) / 60


def ensure_trained(out: Path, train_argv: Sequence[str], target_steps: int, train: bool,
                   log: Callable[[str], None] = print) -> None:
    """Train ``genlab train *train_argv --out out`` to ``target_steps``, resuming a partial run, unless done.

    With ``train`` false a missing or partial run is an error that names the command to run.
    """
    from genlab.cli import main

    done = trained_steps(out)
    if done is not None and done >= target_steps:
        return
    command = " ".join(["genlab", "train", *train_argv, "--out", str(out)])
    if not train:
        raise SystemExit(f"{out} is not trained ({done or 0}/{target_steps} steps): run `{command}` or drop --no-train")
    log(f"training {out.name} ({target_steps} steps) ...")
    argv = ["train", "--resume", str(out)] if done is not None else \
        ["train", *train_argv, "--out", str(out), "--set", "train.progress=false"]
    if main(argv) != 0:
        raise SystemExit(f"`{command}` failed")


def mean_std_text(mean: float, std: float, fmt: str = ".2f", sep: str = "±") -> str:
    """"mean ± std" in one format (``sep``: the README's probe tables write "+-")."""
    return f"{mean:{fmt}} {sep} {std:{fmt}}"


def spread(values: list[float], fmt: str = ".2f") -> str:
    """mean ± sample standard deviation over seeds (nan for a single seed)."""
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return mean_std_text(mean, sd, fmt)


def eval_argv(run: Path, n_samples: int) -> list[str]:
    return ["eval", str(run), "--only", "sample-quality", "--n-samples", str(n_samples), "--n-reference",
            str(n_samples)]


def ensure_evaluated(run: Path, n_samples: int, target_step: int, train: bool) -> dict:
    """Sample-quality metrics of the run's final checkpoint with n_samples each side (evaluating if needed)."""
    from genlab.cli import main

    path = run / "eval.json"
    if path.exists():
        found = json.loads(path.read_text())
        fid = next((m for k, m in found["metrics"].items() if k.startswith("fid_")), None)
        if fid and fid["n_generated"] == n_samples and fid["checkpoint_step"] >= target_step:
            return found
    if not train:
        raise SystemExit(f"{run} has no matching eval.json: run `genlab {' '.join(eval_argv(run, n_samples))}`")
    if main(eval_argv(run, n_samples)) != 0:
        raise SystemExit(f"evaluating {run} failed")
    return json.loads(path.read_text())


def metric(found: dict, name: str) -> float:
    (value,) = [m["value"] for k, m in found["metrics"].items() if k.startswith(name + "_")]
    return value


def run_script(main: Callable[[], object], name: str) -> None:
    """Run a benchmark script's ``main`` as genlab's commands run theirs: an error the user can fix (a bad
    override, a missing dataset or folder) is one line on stderr and exit status 2; anything else is a bug and
    keeps its traceback."""
    from genlab.errors import USER_ERRORS

    try:
        main()
    except USER_ERRORS as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(2)
