"""Report figures of diffusion models.

The same seeds at several NFE, a row per class when conditional, the denoising trajectory of a few
samples, completion by replacement, DDIM interpolation between test images, and FID against NFE (and
against the guidance scale) when ``benchmarks/diffusion_sweeps.py`` has stored its rows in the run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.card import conditioning
from genlab.eval.diffusion_sweeps import read_sweeps
from genlab.registry import FIGURE_SETS
from genlab.reports.autoregressive import pick_images, save_completion_figure
from genlab.reports.images import save_figure, save_grid, save_strip, subplots
from genlab.rng import make_generators
from genlab.sampling.api import draw
from genlab.sampling.autoregressive import complete
from genlab.sampling.diffusion import ddim_trajectory, interpolate

NFE_ROWS = (5, 10, 20, 50)  # DDIM steps: one row each, the same 10 seeds in every row
TRAJECTORY_STEPS = 20  # DDIM steps of the trajectory strip: 21 states per sample
TRAJECTORY_SAMPLES = 4


def _trajectory_figure(model, label, device, out: Path) -> tuple[str, str]:
    states = ddim_trajectory(model, TRAJECTORY_SAMPLES, make_generators(2, TRAJECTORY_SAMPLES, device), device,
                             label=label, steps=TRAJECTORY_STEPS)  # (S, n, C, H, W)
    save_strip(states.transpose(0, 1).cpu(), out / "trajectory.png")
    return (f"Denoising trajectories of {TRAJECTORY_SAMPLES} samples (one row each): x_t after each of "
            f"{TRAJECTORY_STEPS} DDIM steps (eta 0), from the noise x_T (left) to the sample (right), "
            "[-1, 1] shown as black to white", "trajectory.png")


def _completion_figure(run, device, out: Path) -> tuple[str, str]:
    rows = run.spec.height // 2
    images, labels = pick_images(run.dataset("test"), 4, 0, device)
    label = labels if conditioning(run.model).class_conditional else None
    save_completion_figure(images, complete(run.model, images, rows, 3, 0, label=label), rows,
                           out / "completions.png")
    return (f"Completion by replacement (not RePaint: no resampling): the top {rows} rows of 4 random test "
            "images, noised to each step's level, replace those of x_t before every DDIM step (50 steps); "
            "3 completions each", "completions.png")


def _interpolation_figure(run, device, out: Path, pairs: int = 3, frames: int = 8) -> tuple[str, str]:
    images, labels = pick_images(run.dataset("test"), 2 * pairs, 1, device)
    conditional = conditioning(run.model).class_conditional
    paths = [interpolate(run.model, images[2 * k], images[2 * k + 1], frames, steps=50,
                         label=labels[2 * k].item() if conditional else None) for k in range(pairs)]
    save_strip(torch.stack(paths).cpu(), out / "interpolation.png")
    return (f"DDIM interpolation (50 steps): {pairs} pairs of random test images encoded to x_T by the "
            f"deterministic DDIM map, {frames} points on the spherical path between the codes, decoded"
            + (" with the first image's label" if conditional else ""), "interpolation.png")


def _sweep_figure(sweeps: dict, out: Path) -> list[tuple[str, str]]:
    figs = []
    nfe = sweeps.get("nfe", {}).get("rows", [])
    if nfe:
        fig, axes = subplots(1, 1, figsize=(5, 3.5), squeeze=False)
        ax = axes[0][0]
        counts = sorted({r["n_samples"] for r in nfe})
        # One line per sampler and sample count: FID at 1,000 samples reads higher than at 10,000.
        for sampler, n in dict.fromkeys((r["sampler"], r["n_samples"]) for r in nfe):
            rows = sorted((r for r in nfe if (r["sampler"], r["n_samples"]) == (sampler, n)), key=lambda r: r["nfe"])
            label = sampler if len(counts) == 1 else f"{sampler}, {n} samples"
            ax.plot([r["nfe"] for r in rows], [r["fid"] for r in rows], marker="o", label=label)
        ax.set_xscale("log")
        ticks = []
        for t in sorted({r["nfe"] for r in nfe}, reverse=True):  # Heun's 2N - 1 sits beside the others' N
            if not ticks or ticks[-1] > 1.15 * t:
                ticks.append(t)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("NFE (network evaluations)")
        ax.set_ylabel("FID (LeNet features)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save_figure(fig, out / "fid_vs_nfe.png")
        figs.append((f"FID against NFE per sampler ({'/'.join(map(str, counts))} samples per point against the "
                     f"10,000 test images; checkpoint step {sweeps['nfe']['checkpoint_step']}, "
                     f"{sweeps['nfe']['weights']} weights; benchmarks/diffusion_sweeps.py)", "fid_vs_nfe.png"))
    guided = sorted(sweeps.get("guidance", {}).get("rows", []), key=lambda r: r["guidance"])
    if guided:
        fig, axes = subplots(1, 2, figsize=(8, 3.2), squeeze=False)
        s = [r["guidance"] for r in guided]
        axes[0][0].plot(s, [r["fid"] for r in guided], marker="o")
        axes[0][0].set_ylabel("FID")
        axes[0][1].plot(s, [r["label_accuracy"] for r in guided], marker="o", label="label accuracy (%)")
        axes[0][1].plot(s, [100 * r["precision"] for r in guided], marker="s", label="precision (%)")
        axes[0][1].plot(s, [100 * r["recall"] for r in guided], marker="^", label="recall (%)")
        axes[0][1].legend(fontsize=7)
        for ax in axes[0]:
            ax.set_xlabel("guidance s (eps_u + s (eps_c - eps_u))")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        save_figure(fig, out / "guidance_sweep.png")
        figs.append((f"Guidance sweep ({guided[0]['n_samples']} samples per scale, {guided[0]['sampler']} "
                     f"NFE {guided[0]['nfe']}): s = 0 is the unconditional model, 1 the conditional one "
                     "(Ho & Salimans's w = s - 1); label accuracy is the share the shipped LeNet gives the "
                     "requested label", "guidance_sweep.png"))
    return figs


@FIGURE_SETS.register("diffusion")
def diffusion_figures(run, out_dir: Path, device) -> list[tuple[str, str]]:
    model, figs = run.model, []
    out_dir = Path(out_dir)
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
    figs.append(_trajectory_figure(model, label, device, out_dir))
    figs.append(_completion_figure(run, device, out_dir))
    figs.append(_interpolation_figure(run, device, out_dir))
    figs += _sweep_figure(read_sweeps(run.run_dir), out_dir)
    return figs
