"""Report figures of diffusion models: the same seeds at several NFE, and a row per class when conditional."""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.card import conditioning
from genlab.registry import FIGURE_SETS
from genlab.reports.images import save_grid
from genlab.sampling.api import draw

NFE_ROWS = (5, 10, 20, 50)  # DDIM steps: one row each, the same 10 seeds in every row


@FIGURE_SETS.register("diffusion")
def diffusion_figures(run, out_dir: Path, device) -> list[tuple[str, str]]:
    model, figs = run.model, []
    classes = conditioning(model).num_classes
    label = 0 if classes else None
    rows = torch.cat([draw(model, 10, seed=0, device=device, label=label, sampler="ddim", steps=s) for s in NFE_ROWS])
    save_grid(rows, out_dir / "samples_by_nfe.png", nrow=10)
    figs.append((f"DDIM samples (eta 0), the same seeds at NFE {', '.join(map(str, NFE_ROWS))} (one row each)"
                 + (", label 0" if classes else ""), "samples_by_nfe.png"))
    if classes:
        grid = torch.cat([draw(model, 10, seed=1, device=device, label=c, sampler="ddim", steps=50)
                          for c in range(classes)])
        save_grid(grid, out_dir / "samples_by_class.png", nrow=10)
        figs.append(("DDIM samples (50 steps), one row per class label, guidance 1 (the conditional model)",
                     "samples_by_class.png"))
    return figs
