"""One ranked table per dataset from the probe.json files that `genlab probe` writes.

    python benchmarks/probe_table.py NAME=PROBE_JSON [NAME=PROBE_JSON ...] [--rank linear@100]

A NAME may be given several times (for instance the 10 / 100 / 1000-label probe in RUN/probe.json and an
all-label probe written with --out): its results are merged, and a figure found twice must agree, since the
probe is deterministic for a given run, seed and label count. Cells are accuracy in % as mean +- sample std
over the label subsets' seeds (the all-label column is one fit); "-" where a file has no such figure. Rows
are ranked by the --rank column (a row without it goes last), and the best figure of each column is bold.
Every file's protocol line must be the same apart from the label counts, or the table would mix protocols.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the sibling module below
from runs_common import mean_std_text  # noqa: E402

PROBES = ("linear", "knn")


def _protocol_without_counts(text: str) -> str:
    # The label counts and the protocol's name differ between files that measure different columns.
    text = re.sub(r"probe protocol '\w+'( with sizes set explicitly)?", "probe protocol", text)
    return re.sub(r"(\d+|all)(, (\d+|all))* labelled train images per class", "N labelled train images per class", text)


def load(pairs: list[str]) -> tuple[dict[str, dict], str]:
    """{name: {(data, labels, probe): (mean, std, n_seeds)}} and the one protocol line they share."""
    rows: dict[str, dict] = {}
    protocols = set()
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{pair!r}: give NAME=PROBE_JSON")
        try:
            found = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"{path}: not a readable probe.json ({e}); run `genlab probe RUN` first")
        fields = ("data", "labels_per_class", "probe", "mean", "std", "accuracy")
        if not isinstance(found, dict) or "protocol" not in found or not all(
                isinstance(r, dict) and all(f in r for f in fields) for r in found.get("results", [None])):
            raise SystemExit(f"{path}: not a probe.json written by `genlab probe` (it needs 'protocol' and "
                             f"'results' with {', '.join(fields)}); give the file `genlab probe RUN` wrote")
        protocols.add(_protocol_without_counts(found["protocol"]))
        cells = rows.setdefault(name, {})
        for r in found["results"]:
            key = (r["data"], str(r["labels_per_class"]), r["probe"])
            value = (100 * r["mean"], 100 * r["std"], len(r["accuracy"]))
            if key in cells and abs(cells[key][0] - value[0]) > 1e-9:
                raise SystemExit(f"{name}: two files disagree on {key} ({cells[key][0]:.2f} vs {value[0]:.2f} %): "
                                 "are they probes of the same run?")
            cells[key] = value
    if len(protocols) > 1:
        raise SystemExit("the files state different probe protocols:\n  " + "\n  ".join(sorted(protocols)))
    return rows, protocols.pop() if protocols else ""


def table(rows: dict[str, dict], data: str, rank: tuple[str, str]) -> str:
    counts = {k[1] for cells in rows.values() for k in cells if k[0] == data}
    ordered = sorted(counts, key=lambda n: float("inf") if n == "all" else int(n))
    present = [(n, p) for n in ordered for p in PROBES if any((data, n, p) in cells for cells in rows.values())]
    best = {c: max((cells[(data, *c)][0] for cells in rows.values() if (data, *c) in cells), default=None)
            for c in present}
    names = [name for name, cells in rows.items() if any(k[0] == data for k in cells)]
    names.sort(key=lambda name: -rows[name].get((data, *rank), (float("-inf"),))[0])
    head = "| features | " + " | ".join(f"{p.replace('knn', 'k-NN')}, {n}{' / class' if n != 'all' else ''}"
                                         for n, p in present) + " |"
    lines = [head, "|" + "---|" * (len(present) + 1)]
    for name in names:
        cells = []
        for c in present:
            got = rows[name].get((data, *c))
            if got is None:
                cells.append("-")
                continue
            mean, std, seeds = got
            text = mean_std_text(mean, std, ".2f", "+-") if seeds > 1 else f"{mean:.2f}"
            cells.append(f"**{text}**" if abs(mean - best[c]) < 1e-9 else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", metavar="NAME=PROBE_JSON")
    parser.add_argument("--rank", default="linear@100", help="column to rank by: PROBE@LABELS, e.g. knn@all or linear@1000")
    args = parser.parse_args(argv)
    probe, sep, labels = args.rank.partition("@")
    if not sep or probe not in PROBES or not (labels == "all" or labels.isdigit()):
        raise SystemExit(f"--rank {args.rank!r}: give PROBE@LABELS with PROBE in {PROBES} and LABELS a count or 'all'")
    rows, protocol = load(args.pairs)
    print(protocol)
    for data in sorted({k[0] for cells in rows.values() for k in cells}):
        print(f"\n{data} (ranked by {probe} at {labels} labels per class):\n")
        print(table(rows, data, (labels, probe)))


if __name__ == "__main__":
    main()
