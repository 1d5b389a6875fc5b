"""`genlab classify`: classify image files with a reject option, or evaluate the classifier (`--evaluate`).

The numbers are computed in ``genlab.ood.classify_eval``; this module writes them: OUT/classify.json,
OUT/classify_rules.json (the fitted thresholds, reused by later calls with the same runs and settings),
OUT/classify_report.md with the reliability diagram and the risk-coverage curves in OUT/figures/classify/.
OUT defaults to the first run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genlab.ood.classify_eval import ClassifyOptions, classify_files, evaluate_classifier
from genlab.reports.images import save_figure, subplots
from genlab.reports.page import md_figures, md_table
from genlab.train.checkpoint import write_text_atomic
from genlab.train.run import read_run_json

RULES = "classify_rules.json"


def _write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")
    return path


def classify_images(run_dirs, images, opts: ClassifyOptions, out_dir=None, alpha_over: str = "auto",
                    log=print) -> dict:
    """Classify image files (see ``classify_files``); writes OUT/classifications.json and the fitted rules."""
    out = Path(out_dir or run_dirs[0])
    stored = read_run_json(out / RULES) if (out / RULES).exists() else None
    summary, rules = classify_files(run_dirs, images, opts, stored, alpha_over, log)
    _write_json(out / RULES, rules)
    _write_json(out / "classifications.json", summary)
    return summary


def format_classification(entry: dict) -> str:
    """One line: the label, its posterior, and accept or reject with the reason."""
    verdict = "accept" if entry["accepted"] else "REJECT (" + ", ".join(entry["reasons"]) + ")"
    line = f"{entry['path']}: label {entry['label']}  p(y|x) = {entry['posterior']:.4f}  {verdict}"
    return line + ("  [reversed polarity: invert it to classify its shape]" if entry["reversed_polarity"] else "")


def _reliability(result: dict, path: Path) -> Path:
    fig, ax = subplots(1, 1, figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    for key, colour in (("generative", "C0"), ("baseline", "C1")):
        r = result.get(key)
        if not r:
            continue
        rel = r["reliability"]
        conf, acc, count = (np.array(rel[k], dtype=float) for k in ("confidence", "accuracy", "count"))
        used = count > 0
        name = "generative" if key == "generative" else r["name"]
        ax.plot(conf[used], acc[used], "o-", color=colour, label=f"{name} (ECE {r['ece']:.3f})")
    ax.set(xlabel="confidence max_y p(y|x) (bin mean)", ylabel="accuracy in the bin", xlim=(0, 1), ylim=(0, 1.02),
           title="Reliability diagram")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


def _risk_coverage(result: dict, path: Path) -> Path:
    fig, ax = subplots(1, 1, figsize=(4.6, 4.2))
    for key, colour in (("generative", "C0"), ("baseline", "C1")):
        r = result.get(key)
        if not r:
            continue
        rc = r["risk_coverage"]
        name = "generative" if key == "generative" else r["name"]
        ax.plot(rc["coverage"], rc["risk"], color=colour, label=f"{name} (AURC {r['aurc']:.4f})")
    ax.set(xlabel="coverage (share of test images accepted)", ylabel="selective risk (error among accepted)",
           xlim=(0, 1), title="Risk-coverage")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


def summary_table(result: dict) -> tuple[list[str], list[list[str]]]:
    """(head, rows): one row per classifier with accuracy, ECE, AURC and AUROC / FPR95 per outlier set."""
    rules = result["rules"]
    sets = list(result["generative"]["ood"])
    head = ["classifier", "accuracy", "ECE", "AURC", *[f"{s} AUROC / FPR95" for s in sets],
            *[f"{s} rejected" for s in sets]]
    rows = []
    for key in ("generative", "baseline"):
        r = result.get(key)
        if not r:
            continue
        acc = r["accuracy"]
        cells = [f"{100 * acc['value']:.2f} % ± {100 * (acc['stderr'] or 0):.2f}", f"{r['ece']:.4f}", f"{r['aurc']:.4f}"]
        if key == "generative":
            name = f"generative ({r['kind']}), outlier score {rules['outlier_score']}"
            det = [r["ood"][s]["outlier"][rules["outlier_score"]] for s in sets]
            rej = [r["ood"][s]["rejected"]["either"]["value"] for s in sets]
        else:
            name = f"{r['name']} softmax confidence"
            det = [r["ood"][s]["ambiguity"] for s in sets]
            rej = [r["ood"][s]["rejected"]["value"] for s in sets]
        rows.append([name, *cells, *[f"{d['auroc']:.3f} / {d['fpr95']:.3f}" for d in det],
                     *[f"{100 * x:.1f} %" for x in rej]])
    return head, rows


def classify_evaluate(run_dirs, opts: ClassifyOptions, out_dir=None, log=print) -> dict:
    """`genlab classify RUN... --evaluate`: measure, then write classify.json, the rules, the figures and
    classify_report.md in OUT (default the first run folder)."""
    result, stored = evaluate_classifier(run_dirs, opts, log)
    out = Path(out_dir or run_dirs[0])
    _write_json(out / RULES, stored)
    _write_json(out / "classify.json", result)
    figs = [("Reliability diagram (evaluated test images)", _reliability(result, out / "figures/classify/reliability.png")),
            ("Risk-coverage curves", _risk_coverage(result, out / "figures/classify/risk_coverage.png"))]
    head, rows = summary_table(result)
    g, r = result["generative"], result["rules"]
    md = ["# Generative classifier with a reject option", "",
          f"- **classifier**: {g['likelihood']}",
          f"- **protocol**: {result['protocol']['text']}",
          f"- **ambiguity rule** (Chow): reject when max_y p(y|x) < 1 - t, t = {r['chow_t']:.3g}",
          f"- **outlier rule**: reject when {r['outlier_label']} > {r['outlier_threshold']:.4f} bits/dim",
          f"- **rejected test images**: ambiguity {100 * g['rejected_in_distribution']['ambiguity']['value']:.1f} %, "
          f"outlier {100 * g['rejected_in_distribution']['outlier']['value']:.1f} %, "
          f"either {100 * g['rejected_in_distribution']['either']['value']:.1f} %", "",
          *md_table(head, rows), "",
          *md_figures([(c, p.relative_to(out).as_posix()) for c, p in figs])]
    (out / "classify_report.md").write_text("\n".join(md))
    log(result["protocol"]["text"])
    log("\n".join(md_table(head, rows)))
    log(f"wrote {out / 'classify.json'} and {out / 'classify_report.md'}")
    return result
