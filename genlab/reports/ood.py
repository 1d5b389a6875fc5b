"""`genlab ood` and `genlab score`: the OOD report (RUN_DIR/ood_report.md and .html) with its figures, and
the surprise-map figures and scores.json of the user's own images.

The scores themselves are computed in ``genlab.ood`` (``score_ood``, ``score_user_images``); this module
only draws and writes them, so that ood/ never imports reports/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genlab.data.base import to_model_input
from genlab.ood.run import OODOptions, score_ood
from genlab.ood.user import score_user_images
from genlab.reports.autoregressive import save_surprise_figure
from genlab.reports.images import grid_array, save_figure, save_panels, subplots
from genlab.reports.page import e, html_figures, html_start, html_table, md_figures, md_table, numbers_after
from genlab.train.checkpoint import write_text_atomic

EXTREMES = 8  # images shown at each end of a score's range
BATCHES = "Typicality test on batches (Nalisnick et al. 2019, arXiv:1906.02994)"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def histograms(sets: dict, names: list[str], out: Path) -> Path:
    """One panel per score: the distribution of the in-distribution scores and of each OOD set's."""
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = subplots(rows, cols, figsize=(4.3 * cols, 3.1 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        values = {key: s["scores"][name] for key, s in sets.items()}
        lo = min(float(np.percentile(v, 0.5)) for v in values.values())
        hi = max(float(np.percentile(v, 99.5)) for v in values.values())
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 60)
        for key, v in values.items():
            ax.hist(np.clip(v, lo, hi), bins=bins, density=True, histtype="step", linewidth=1.4, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("bits/dim (higher = more outlying)", fontsize=8)
        ax.tick_params(labelsize=7)
    return save_panels(fig, axes, len(names), out)


def extremes_figure(sets: dict, name: str, out: Path) -> Path:
    """For each set, the EXTREMES images with the lowest score (most typical) and the highest (least typical)."""
    fig, axes = subplots(len(sets), 1, figsize=(9, 0.75 * len(sets) + 0.4), squeeze=False)
    for ax, (key, s) in zip(axes[:, 0], sets.items()):
        order = np.argsort(s["scores"][name], kind="stable")
        k = min(EXTREMES, len(order) // 2) or 1
        pick = torch.as_tensor(np.r_[order[:k], order[-k:]])
        x = to_model_input(s["levels"][pick], s["transform"])
        ax.imshow(grid_array(x, nrow=2 * k, scale=1), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(key, fontsize=7, rotation=0, ha="right", va="center")
    axes[0, 0].set_title(f"{name}: {EXTREMES} most typical (lowest score, left) | {EXTREMES} least typical "
                         "(highest score, right)", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out, dpi=130)


def save_surprise(image: torch.Tensor, pixel_map: torch.Tensor, path: str | Path, map_label: str,
                  title: str) -> Path:
    """The image as the model sees it beside its per-pixel surprise map (nats), with what the map is."""
    return save_surprise_figure(image, pixel_map, path, title=title, map_label=map_label)


def _tables(result: dict) -> tuple[list[str], list[list[str]], list[list[str]]]:
    head = ["OOD data", "score", "AUROC", "AUPR (OOD +)", "AUPR-in", "FPR95", "n in / n OOD"]
    rows, batch_rows = [], []
    for name, o in result["ood"].items():
        for score, m in o["metrics"].items():
            rows.append([name, score, _fmt(m["auroc"]), _fmt(m["aupr"]), _fmt(m["aupr_in"]), _fmt(m["fpr95"]),
                         f"{m['n_in']} / {m['n_ood']}"])
        t = o.get("typicality_batches") or {}
        if t:
            batch_rows.append([name, f"typicality, batches of M={t['m']}", _fmt(t["auroc"]), _fmt(t["aupr"]),
                               _fmt(t["aupr_in"]), _fmt(t["fpr95"]), f"{t['n_in']} / {t['n_ood']} batches"])
    return head, rows, batch_rows


def write_ood_report(run_dir: Path, result: dict, sets: dict) -> tuple[Path, Path]:
    """RUN_DIR/ood_report.md and ood_report.html, figures under RUN_DIR/figures/ood/.

    Args:
        run_dir: the run folder.
        result: the dict of ood.json.
        sets: set name -> {"scores": {score: (N,)}, "levels": uint8 images, "transform": ...}.
    """
    run_dir = Path(run_dir)
    fig_dir = run_dir / "figures" / "ood"
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = list(result["scores"])
    in_name = result["in_distribution"]["name"]
    shown = {(f"{in_name} (in-distribution)" if key == "in-distribution" else f"{key} (OOD)"): s
             for key, s in sets.items()}
    figures = [("Score distributions: in-distribution test set vs each OOD set",
                histograms(shown, names, fig_dir / "histograms.png"))]
    for name in names:
        figures.append((f"Most and least typical images by {name} ({result['scores'][name]['label']})",
                        extremes_figure(shown, name, fig_dir / f"extremes_{name}.png")))
    r, p = result["run"], result["protocol"]
    title = f"Out-of-distribution detection: {r['model']} on {r['data']}"
    facts = [("run", f"{r['dir']} (step {r['step']}, {r['weights']} weights)"),
             ("likelihood", f"{r['likelihood']} [{r['likelihood_kind']}]"),
             ("in-distribution", f"{result['in_distribution']['name']}/test, {result['in_distribution']['n']} of "
                                 f"{result['in_distribution']['n_split']} images"),
             ("subset", p["subset"]),
             ("typicality reference", f"H_hat = {p['reference']['mean_bpd']:.4f} bits/dim: "
                                      f"{p['reference']['protocol']}"),
             ("complexity", "L(x) from " + ", ".join(p["compressors"]) + " of the image as the model sees it"),
             ("transparency", f"composited over {p['background_colour']} (the border colour of the test images)"),
             ("seed", str(p["seed"])), ("convention", p["convention"])]
    if result.get("background"):
        b = result["background"]
        facts.insert(2, ("background model",
                         f"{b['dir']} ({b['model']}, objective {b['objective']}, mutation rate "
                         f"{b.get('mutation_rate', '?')}, step {b['step']}) [{b['likelihood_kind']}]"))
    for name, o in result["ood"].items():
        facts.append((f"OOD {name}", f"{o['n']} of {o['n_split']} images; {o['note']}"))
    head, rows, batch_rows = _tables(result)
    score_lines = [f"- `{n}`: {s['label']} ({s['paper']})" for n, s in result["scores"].items()]
    md = [f"# {title}", "", *[f"- **{k}**: {v}" for k, v in facts], "", "## Scores", "", *score_lines, "",
          "## Detection metrics (per image)", "", *md_table(head, rows), ""]
    if batch_rows:
        md += [f"## {BATCHES}", "", *md_table(head, batch_rows), ""]
    summaries = {"in-distribution": result["in_distribution"]["summary"],
                 **{k: o["summary"] for k, o in result["ood"].items()}}
    means = [[key, *(f"{summ[n]['mean']:.3f} ± {summ[n]['std']:.3f}" for n in names)] for key, summ in summaries.items()]
    md += ["## Mean score per set (bits/dim)", "", *md_table(["set", *names], means), ""]
    shown_figures = [(caption, path.relative_to(run_dir).as_posix()) for caption, path in figures]
    md += md_figures(shown_figures)
    md_path = run_dir / "ood_report.md"
    md_path.write_text("\n".join(md))

    h = html_start(title, width=1100) + ["<ul>"]
    h += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in facts] + ["</ul><h2>Scores</h2><ul>"]
    h += [f"<li><code>{e(n)}</code>: {e(s['label'])} ({e(s['paper'])})</li>" for n, s in result["scores"].items()]
    h.append("</ul>")
    h += ["<h2>Detection metrics (per image)</h2>", html_table(head, rows, numbers_after(2))]
    if batch_rows:
        h += [f"<h2>{e(BATCHES)}</h2>", html_table(head, batch_rows, numbers_after(2))]
    h += html_figures(shown_figures)
    html_path = run_dir / "ood_report.html"
    html_path.write_text("\n".join(h))
    return md_path, html_path


def ood_run(run_dir: str | Path, opts: OODOptions, log=print) -> dict:
    """`genlab ood`: score the run's test set and each OOD set (``genlab.ood.run.score_ood``: ood.json and
    ood_scores.npz), then write the report unless ``opts.report`` is false.

    Returns:
        The dict written to RUN_DIR/ood.json.
    """
    result, sets = score_ood(run_dir, opts, log)
    if opts.report:
        md, html_path = write_ood_report(Path(run_dir), result, sets)
        log(f"wrote {md} and {html_path}")
    return result


def _out_names(paths: list[Path]) -> list[str]:
    """A distinct file stem per image (two photo.png from different folders get photo, photo-2)."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        seen[p.stem] = seen.get(p.stem, 0) + 1
        names.append(p.stem if seen[p.stem] == 1 else f"{p.stem}-{seen[p.stem]}")
    return names


def score_images(run_dir: str | Path, images: list[str | Path], out_dir: str | Path | None = None,
                 background: str | Path | None = None, alpha_over: str = "auto", iwae_k: int | None = None,
                 seed: int = 0, device: str = "auto", data_root: str | None = None, use_ema: bool = True,
                 log=print) -> list[dict]:
    """`genlab score`: score image files with a run (``genlab.ood.user.score_user_images``), save one
    surprise-map PNG per image and OUT_DIR/scores.json (OUT_DIR defaults to RUN_DIR/surprise).

    Returns:
        One dict per image: path, scores {name: {value, percentile, outlier}}, surprise figure path.
    """
    summary, maps = score_user_images(run_dir, images, background, alpha_over, iwae_k, seed, device, data_root,
                                      use_ema, log)
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "surprise"
    results = summary["images"]
    for entry, m, stem in zip(results, maps, _out_names([Path(r["path"]) for r in results])):
        fig = save_surprise(m.image, m.pixel_map, out_dir / f"{stem}_surprise.png", m.map_label, m.title)
        entry["surprise_figure"] = str(fig)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "scores.json", json.dumps(summary, indent=1) + "\n")
    return results


def format_result(entry: dict) -> str:
    """One line per image: each score, its percentile among the test images and the 95%-TPR verdict."""
    cells = []
    for name, s in entry["scores"].items():
        cell = f"{name}={s['value']:.4f}"
        extra = [f"p{s['percentile']:.1f}"] if "percentile" in s else []
        if "outlier_at_tpr95" in s:
            extra.append("OUTLIER" if s["outlier_at_tpr95"] else "typical")
        cells.append(cell + (f" ({', '.join(extra)})" if extra else ""))
    return f"{entry['path']}: " + "  ".join(cells) + f"  surprise map: {entry['surprise_figure']}"
