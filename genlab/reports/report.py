"""`genlab report`: one Markdown and one HTML page per run, with its figures."""

from __future__ import annotations

from pathlib import Path

from genlab.registry import FIGURE_SETS
from genlab.reports.figures import loss_curves
from genlab.reports.page import e, html_figures, html_start, html_table, md_figures, md_table
from genlab.train.distributed import resolve_device
from genlab.train.run import LoadedRun, load_run, read_metrics, read_run_json


def metrics_table(eval_json: dict) -> list[list[str]]:
    rows = [["metric", "value", "unit", "kind", "protocol"]]
    for name, m in eval_json.get("metrics", {}).items():
        kind = {"bound": "bound (upper bound on NLL)" if "nll" in name or "elbo" in name else "bound"}.get(
            m["kind"], m["kind"])
        rows.append([name, f"{m['value']:.4f}", m["unit"], kind, m["protocol"]])
    return rows


def write_report(run_dir: str | Path, device: str = "auto", data_root: str | None = None) -> tuple[Path, Path]:
    """RUN_DIR/report.md and report.html: facts, eval.json's table, the family's figures, the config."""
    dev = resolve_device(device)
    return report_loaded(load_run(run_dir, dev, data_root=data_root), dev)


def report_loaded(run: LoadedRun, dev) -> tuple[Path, Path]:
    """``write_report`` for a run already loaded on ``dev``."""
    run_dir = run.run_dir
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures: list[tuple[str, str]] = []
    kind = "audio" if run.spec.is_signal else run.model.card.family  # 1-D signals: players, spectrograms
    if kind in FIGURE_SETS:
        figures = [(t, f"figures/{f}") for t, f in FIGURE_SETS.get(kind)(run, fig_dir, dev)]
    if loss_curves(run_dir, fig_dir / "loss_curves.png"):
        figures.append(("Training curves", "figures/loss_curves.png"))
    eval_path = run_dir / "eval.json"
    table = metrics_table(read_run_json(eval_path)) if eval_path.exists() else []
    rows = read_metrics(run_dir)
    last = rows[-1] if rows else {}
    title = f"{run.cfg.model_name} on {run.cfg.data.name}"
    facts = [("steps trained", str(run.step)), ("weights", "EMA" if run.used_ema else "raw"),
             ("git revision", (run_dir / "git.txt").read_text().strip() if (run_dir / "git.txt").exists() else "?"),
             ("command", (run_dir / "command.txt").read_text().strip() if (run_dir / "command.txt").exists() else "?")]
    if run.ema_warning:
        facts.append(("EMA warning", run.ema_warning))
    if "images_per_s" in last:
        facts.append(("throughput at the end", f"{last['images_per_s']:.0f} images/s"))
    md = [f"# {title}", "", *[f"- **{k}**: `{v}`" for k, v in facts], ""]
    if table:
        md += ["## Evaluation (eval.json)", "", *md_table(table[0], table[1:]), ""]
    else:
        md += ["No eval.json yet: run `genlab eval " + str(run_dir) + "`.", ""]
    md += md_figures(figures)
    md += ["## Configuration", "", "```json", run.cfg.to_json(), "```", ""]
    md_path = run_dir / "report.md"
    md_path.write_text("\n".join(md))
    h = html_start(title) + ["<ul>"]
    h += [f"<li><b>{e(k)}</b>: <code>{e(v)}</code></li>" for k, v in facts] + ["</ul>"]
    if table:
        h += ["<h2>Evaluation</h2>", html_table(table[0], table[1:])]
    h += html_figures(figures)
    h.append(f"<h2>Configuration</h2><pre>{e(run.cfg.to_json())}</pre>")
    html_path = run_dir / "report.html"
    html_path.write_text("\n".join(h))
    return md_path, html_path
