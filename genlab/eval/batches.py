"""The batch loop of the per-image evaluators: which images, a time estimate, and resumable progress.

Every finished batch is recorded in ``opts.state_dir`` (sums, count, and the state of the random
generators), so an evaluation stopped by Ctrl-C or SIGTERM continues where it stopped when the
same command runs again, with the numbers an uninterrupted run gives. A stopped evaluator raises
``EvalInterrupted`` carrying its partial results (marked partial, with their count).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from genlab.errors import InputError
from genlab.rng import random_subset
from genlab.stats import RunningMean
from genlab.timing import duration_text
from genlab.train.checkpoint import write_text_atomic


class EvalInterrupted(Exception):
    """An evaluation was stopped; ``records`` holds the partial results of the evaluator that was running."""

    def __init__(self, message: str, records: dict | None = None):
        super().__init__(message)
        self.records = records or {}


def image_order(n_all: int, max_examples: int | None, seed: int) -> tuple[torch.Tensor, str]:
    """The images to evaluate, in order, and the words saying which they are.

    Always a seeded permutation, also of the whole split: the binarized-MNIST test file is sorted
    by digit, so a prefix (a subset, or the finished part of an interrupted run) would be biased.
    """
    n = n_all if max_examples is None else min(n_all, int(max_examples))
    if n < 1:
        raise InputError("nothing to evaluate: the split is empty or --max-examples < 1")
    order = random_subset(n_all, n, seed)
    which = f"all {n_all} images" if n == n_all else f"a random subset of {n} of {n_all} images (seed {seed})"
    return order, which


class Sums:
    """A ``RunningMean`` per named per-image quantity, added batch by batch; ``n`` images so far."""

    def __init__(self, state: dict | None = None):
        self.acc = {name: RunningMean.from_state(v) for name, v in (state or {}).items()}

    @property
    def n(self) -> int:
        return next(iter(self.acc.values())).n if self.acc else 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        """values: name -> (B,) per-image numbers of one batch."""
        for name, v in values.items():
            self.acc.setdefault(name, RunningMean()).add(v)

    def state(self) -> dict:
        return {name: acc.state() for name, acc in self.acc.items()}


def _generator_state(g: torch.Generator) -> str:
    return base64.b64encode(bytes(g.get_state().tolist())).decode()


def _set_generator_state(g: torch.Generator, text: str) -> None:
    g.set_state(torch.tensor(list(base64.b64decode(text)), dtype=torch.uint8))


def state_key(name: str, opts) -> dict:
    """Everything that changes an evaluator's numbers: a saved state is reused only when it matches."""
    skip = {"data", "figure_dir", "state_dir", "cache_dir", "log", "examples"}
    key = {"evaluator": name, **{f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)
                                 if f.name not in skip}}
    return json.loads(json.dumps(key))  # as it reads back from a state file


def run_batches(name: str, opts, order: torch.Tensor, step: Callable[[torch.Tensor], dict],
                finish: Callable[[Sums], dict], generators: Iterable[torch.Generator] = ()) -> dict:
    """Run ``step`` on each batch of image indices and turn the sums into records with ``finish``.

    Args:
        name: the evaluator's name (state file, messages).
        opts: needs ``batch_size``; ``state_dir`` (None: nothing is kept) and ``log`` (default print).
        order: (n,) image indices, in evaluation order.
        step: (B,) indices -> {quantity: (B,) per-image values}.
        finish: the evaluator's records from the sums (also called on the partial sums when stopped).
        generators: every generator ``step`` draws from; their states are kept with the sums.
    Returns:
        finish(sums) over all images.
    Raises:
        EvalInterrupted: on Ctrl-C or SIGTERM, after the finished batches were kept, with
            finish(partial sums) marked partial.
    """
    log = getattr(opts, "log", None) or print
    noun = getattr(opts, "examples", "images")
    generators = list(generators)
    starts = list(range(0, len(order), opts.batch_size))
    path = Path(opts.state_dir) / f"{name}.json" if getattr(opts, "state_dir", None) else None
    key, sums, done = (state_key(name, opts) if path is not None else None), Sums(), 0
    if path is not None and path.exists():
        state = json.loads(path.read_text())
        if state.get("key") == key:
            sums, done = Sums(state["sums"]), state["done"]
            for g, text in zip(generators, state["generators"]):
                _set_generator_state(g, text)
            log(f"  {name}: continuing after {sums.n} of {len(order)} {noun} (kept in {path})")
        else:
            log(f"  {name}: options or checkpoint changed since the interrupted evaluation; starting over")
    began, timed = time.perf_counter(), 0
    bar = tqdm(total=len(order), initial=sums.n, desc=name, unit="img", leave=False,
               disable=None)  # a terminal only; logs get the rate and time-left line
    try:
        for i in range(done, len(starts)):
            idx = order[starts[i]:starts[i] + opts.batch_size]
            sums.add(step(idx))
            bar.update(len(idx))
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                state = {"key": key, "done": i + 1, "sums": sums.state(),
                         "generators": [_generator_state(g) for g in generators]}
                write_text_atomic(path, json.dumps(state) + "\n")
            timed += len(idx)
            if i == done and i + 1 < len(starts):
                rate = timed / (time.perf_counter() - began)
                log(f"  {name}: {rate:.1f} {noun}/s after the first batch; about "
                    f"{duration_text((len(order) - sums.n) / rate)} left for this evaluator")
    except KeyboardInterrupt:
        bar.close()
        where = f"; the finished batches are kept in {path}" if path is not None else ""
        records = finish(sums) if sums.n else {}
        for record in records.values():
            record.update(partial=True, n_done=sums.n, n_planned=len(order))
        raise EvalInterrupted(f"{name} stopped after {sums.n} of {len(order)} images{where}; run the same "
                              "command again to continue", records) from None
    bar.close()
    if path is not None and path.exists():
        path.unlink()
    return finish(sums)


