"""`genlab compare RUN_DIR ...`: one Markdown and one HTML page comparing runs.

For each run it reads ``RUN_DIR/eval.json`` (metric name -> record with value, unit,
kind, protocol; either at the top level or under "metrics" as ``genlab eval`` writes
it), ``RUN_DIR/samples.png`` (or ``RUN_DIR/figures/samples.png``) and
``RUN_DIR/metrics.jsonl`` (one JSON object per line with "step" and numeric fields).
The page has a table of every metric across the runs with its unit and kind (bound,
exact or estimate: a bound is not comparable with an exact value, so the kind is shown
in every cell where the runs disagree), the sample grids side by side, and every
training curve shared by the runs on one figure.
"""

from __future__ import annotations

import base64
import json
import math
import os
from pathlib import Path

from genlab.errors import InputError
from genlab.reports.images import save_panels, subplots
from genlab.reports.page import e, html_start, html_table, md_table
from genlab.train.run import read_metrics

KIND_MARK = {"exact": " (exact)", "bound": " (bound)", "estimate": " (estimate)"}


def read_eval(run_dir: Path) -> dict[str, dict]:
    """name -> record from RUN_DIR/eval.json; {} when absent."""
    path = Path(run_dir) / "eval.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err}); re-run `genlab eval {run_dir}`") from None
    if isinstance(data.get("metrics"), dict):
        data = data["metrics"]
    return {k: v for k, v in data.items() if isinstance(v, dict) and "value" in v}


def run_label(run_dir: Path, taken: set[str]) -> str:
    """A short unique column name: the folder name, prefixed by its parent when needed."""
    label = run_dir.name or str(run_dir)
    if label in taken:
        label = f"{run_dir.parent.name}/{run_dir.name}"
    while label in taken:
        label += "'"
    taken.add(label)
    return label


def samples_image(run_dir: Path) -> Path | None:
    for candidate in (run_dir / "samples.png", run_dir / "figures" / "samples.png"):
        if candidate.exists():
            return candidate
    return None


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return str(value)
    a = abs(value)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4f}"


def metric_table(evals: dict[str, dict[str, dict]]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows and footnotes of the metric-by-run table.

    Each row is a metric: its unit, its kind, then one cell per run ("-" when the run
    lacks it). When runs give the same metric with different units or kinds, each cell
    carries its own, and a footnote says so. Protocols that differ between runs are
    listed in the footnotes too, since the numbers may then not be comparable.
    """
    labels = list(evals)
    names = sorted({name for records in evals.values() for name in records})
    header = ["metric", "unit", "kind", *labels]
    rows, notes = [], []
    for name in names:
        present = {lab: evals[lab][name] for lab in labels if name in evals[lab]}
        units = {r.get("unit", "") for r in present.values()}
        kinds = {r.get("kind", "?") for r in present.values()}
        protocols = {r.get("protocol", "") for r in present.values()}
        same = len(units) == 1 and len(kinds) == 1
        cells = []
        for lab in labels:
            r = present.get(lab)
            if r is None:
                cells.append("-")
                continue
            cell = _fmt(r["value"])
            if "std" in r:
                cell += f" ± {_fmt(r['std'])}"
            elif r.get("stderr") is not None:
                cell += f" ± {_fmt(r['stderr'])} (s.e.)"
            if not same:
                cell += f" {r.get('unit', '')}{KIND_MARK.get(r.get('kind'), ' (' + str(r.get('kind')) + ')')}"
            cells.append(cell)
        if not same:
            notes.append(f"{name}: runs report different units or kinds ({', '.join(sorted(units))}; "
                         f"{', '.join(sorted(kinds))}): compare with care")
        if len(protocols) > 1:
            notes.append(f"{name}: protocols differ: " + " | ".join(
                f"{lab}: {present[lab].get('protocol', '')}" for lab in labels if lab in present))
        rows.append([name, next(iter(units)) if len(units) == 1 else "mixed",
                     next(iter(kinds)) if len(kinds) == 1 else "mixed", *cells])
    return header, rows, notes


def curves_figure(histories: dict[str, list[dict]], out: Path) -> Path | None:
    """One panel per numeric field (other than step) logged by any run; one line per run."""
    keys = sorted({k for rows in histories.values() for r in rows for k, v in r.items()
                   if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if not keys:
        return None
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for label, rows in histories.items():
            pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r
                   and isinstance(r[key], (int, float)) and math.isfinite(r[key])]
            if pts:
                ax.plot(*zip(*pts), label=label, linewidth=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    return save_panels(fig, axes, len(keys), out)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def compare_runs(run_dirs: list[str | Path], out_path: str | Path) -> tuple[Path, Path]:
    """Write ``<out>.md`` and ``<out>.html`` (plus ``<out>_curves.png``) comparing runs.

    Args:
        run_dirs: run folders; each may have eval.json, samples.png, metrics.jsonl.
        out_path: the output stem; a ``.md`` or ``.html`` suffix is dropped.
    Returns:
        (markdown path, html path). The HTML embeds its images and stands alone; the
        Markdown links to them relative to its own folder.
    """
    if not run_dirs:
        raise InputError("compare needs at least one RUN_DIR")
    dirs = [Path(d) for d in run_dirs]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"not a run folder: {', '.join(missing)}")
    out = Path(out_path)
    if out.suffix in (".md", ".html"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out.with_suffix(".md"), out.with_suffix(".html")

    taken: set[str] = set()
    labels = [run_label(d, taken) for d in dirs]
    evals = {lab: read_eval(d) for lab, d in zip(labels, dirs)}
    histories = {lab: read_metrics(d) for lab, d in zip(labels, dirs)}
    grids = {lab: samples_image(d) for lab, d in zip(labels, dirs)}
    curves = curves_figure(histories, out.parent / f"{out.name}_curves.png")
    header, rows, notes = metric_table(evals)

    def rel(p: Path) -> str:
        return os.path.relpath(p.resolve(), md_path.parent.resolve())

    title = "Comparison of " + ", ".join(labels)
    md = [f"# {title}", "", *md_table(["run", "folder"], [[lab, f"`{d}`"] for lab, d in zip(labels, dirs)]), ""]
    md += ["## Metrics", "", "kind: exact = computed exactly; bound = a bound (e.g. an upper bound on NLL), "
           "not an exact value; estimate = sample-based, see the protocol.", ""]
    if rows:
        md += [*md_table(header, rows), ""]
        md += [f"- {n}" for n in notes] + ([""] if notes else [])
        md += ["### Protocols", ""]  # what each number was computed on, so no cell is read out of context
        for lab in labels:
            for name, record in sorted(evals[lab].items()):
                md.append(f"- {lab} / `{name}`: {record.get('protocol', '(not stated)')}")
        md.append("")
    else:
        md += ["No run has an eval.json yet: run `genlab eval RUN_DIR`.", ""]
    md += ["## Samples", ""]
    present = [(lab, g) for lab, g in grids.items() if g is not None]
    if present:
        md += [*md_table([lab for lab, _ in present], [[f"![{lab}]({rel(g)})" for lab, g in present]]), ""]
    absent = [lab for lab, g in grids.items() if g is None]
    if absent:
        md += [f"No samples.png in: {', '.join(absent)}.", ""]
    md += ["## Training curves", ""]
    md += [f"![training curves]({rel(curves)})", ""] if curves else ["No metrics.jsonl in any run.", ""]
    md_path.write_text("\n".join(md))

    h = html_start(title, width=1200)
    h.append(html_table(["run", "folder"], [[lab, str(d)] for lab, d in zip(labels, dirs)],
                        lambda i, text: f"<td><code>{e(text)}</code></td>" if i else f"<td>{e(text)}</td>"))
    h += ["<h2>Metrics</h2><p>kind: <b>exact</b> = computed exactly; <b class='kind-bound'>bound</b> = "
          "a bound, not an exact value; <b class='kind-estimate'>estimate</b> = sample-based (hover a cell for "
          "its protocol).</p>"]
    if rows:
        h.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in header) + "</tr>")
        for r in rows:
            name = r[0]
            cells = []
            for lab, cell in zip(labels, r[3:]):
                proto = evals[lab].get(name, {}).get("protocol", "")
                cells.append(f"<td class='num' title='{e(proto)}'>{e(cell)}</td>")
            h.append(f"<tr><td>{e(name)}</td><td>{e(r[1])}</td><td class='kind-{e(r[2])}'>{e(r[2])}</td>"
                     + "".join(cells) + "</tr>")
        h.append("</table>")
        if notes:
            h.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    else:
        h.append("<p>No run has an eval.json yet: run <code>genlab eval RUN_DIR</code>.</p>")
    h.append("<h2>Samples</h2>")
    if present:
        names = [lab for lab, _ in present]
        h.append(html_table(names, [[_data_uri(g) for _, g in present]],
                            lambda i, uri: f"<td><img src='{uri}' alt='{e(names[i])}'></td>"))
    if absent:
        h.append(f"<p>No samples.png in: {e(', '.join(absent))}.</p>")
    h.append("<h2>Training curves</h2>")
    h.append(f"<img src='{_data_uri(curves)}' alt='training curves'>" if curves else "<p>No metrics.jsonl in any run.</p>")
    html_path.write_text("\n".join(h))
    return md_path, html_path
