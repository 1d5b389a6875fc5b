"""Figures for run reports: loss curves (every family) and the latent-model figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from genlab.registry import FIGURE_SETS  # noqa: E402
from genlab.reports.images import save_grid  # noqa: E402
from genlab.sampling.api import draw  # noqa: E402
from genlab.sampling.latent import interpolate, latent_means, manifold_grid, reconstruct  # noqa: E402
from genlab.train.run import read_metrics  # noqa: E402


def loss_curves(run_dir: Path, out: Path) -> Path | None:
    """Every train/* term against the step, one panel per term."""
    rows = read_metrics(run_dir)
    keys = sorted({k for r in rows for k in r if k.startswith("train/") and not k.endswith("grad_norm")})
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*pts))
        ax.set_title(key.removeprefix("train/"), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


@FIGURE_SETS.register("latent")
def latent_figures(run, out_dir: Path, device) -> list[tuple[str, str]]:
    """Samples, reconstructions, an interpolation, and for a 2-D latent the manifold and the code scatter."""
    model, figs = run.model, []
    test = run.dataset("test")
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(test), generator=g)[:32]
    x = test.batch(pick, torch.Generator().manual_seed(1))["x"].to(device)
    if model.sampler is not None:
        save_grid(draw(model, 64, seed=0, device=device), out_dir / "samples.png")
        figs.append(("Samples (decoder means, z ~ N(0, I), seed 0)", "samples.png"))
    rec = reconstruct(model, x)
    pairs = torch.stack([x.cpu(), rec.cpu()], dim=1).flatten(0, 1)  # input, reconstruction, ...
    save_grid(pairs, out_dir / "reconstructions.png", nrow=16)
    figs.append(("Test images (odd columns) and their reconstructions (even columns)", "reconstructions.png"))
    strips = torch.cat([interpolate(model, x[2 * i], x[2 * i + 1], steps=10).cpu() for i in range(4)])
    save_grid(strips, out_dir / "interpolation.png", nrow=10)
    figs.append(("Interpolation between pairs of test images in latent space", "interpolation.png"))
    if model.cfg.latent_dim == 2:
        save_grid(manifold_grid(model, 15, 15, device), out_dir / "manifold.png", nrow=15, scale=2)
        figs.append(("Decoded manifold over Gaussian quantiles of z (latent_dim=2)", "manifold.png"))
        figs.append(("Test-set latent means", _latent_scatter(model, test, device, out_dir / "latent_scatter.png")))
    return figs


@torch.no_grad()
def _latent_scatter(model, test, device, out: Path) -> str:
    n = min(len(test), 5000)
    idx = torch.arange(n)
    codes = torch.cat([latent_means(model, test.batch(idx[i:i + 500], torch.Generator().manual_seed(i))["x"]
                                    .to(device)).cpu() for i in range(0, n, 500)])
    fig, ax = plt.subplots(figsize=(5, 4.4))
    if test.labels is not None:
        sc = ax.scatter(codes[:, 0], codes[:, 1], c=test.labels[:n].cpu(), cmap="tab10", s=3)
        fig.colorbar(sc, ax=ax, label="label")
    else:
        ax.scatter(codes[:, 0], codes[:, 1], s=3)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(f"posterior means of {n} {test.name} test images", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name
