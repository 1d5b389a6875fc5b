"""`genlab quickstart`: a VAE on the bundled 8x8 digits, end to end, with no download."""

from __future__ import annotations

from pathlib import Path

from genlab.api import load
from genlab.configs import resolve_train_config
from genlab.eval.options import EvalOptions
from genlab.eval.run import evaluate_run
from genlab.reports.images import save_grid
from genlab.reports.report import write_report
from genlab.train.loop import train


def quickstart(out: str | Path, steps: int = 2000, device: str = "auto") -> Path:
    out = Path(out)
    cfg = resolve_train_config(preset="vae-digits", steps=steps, seed=0, device=device)
    if (out / "checkpoints" / "latest").exists():
        print(f"{out} already holds a run: continuing it")
        result = train(None, out, resume=True, total_steps=steps)
    else:
        result = train(cfg, out)
    print(f"trained {result.step} steps in {result.seconds:.0f} s")
    evaluate_run(out, EvalOptions(iwae_k=500), device)
    save_grid(load(out, device).sample(64), out / "samples.png")
    md, html = write_report(out, device)
    print(f"samples: {out / 'samples.png'}\nreport:  {md}\n         {html}")
    return out
