"""Figures for run reports: loss curves (every family), the latent-model and the adversarial-model figures."""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.card import conditioning
from genlab.eval.adversarial import reconstruct_all
from genlab.registry import FIGURE_SETS
from genlab.rng import make_generators
from genlab.reports.images import save_figure, save_gif, save_grid, save_strip, subplots
from genlab.rng import random_subset
from genlab.reports.translation import translation_figures
from genlab.sampling.adversarial import interpolations, nearest_neighbours
from genlab.sampling.api import draw
from genlab.sampling.hierarchical import resample_below
from genlab.sampling.latent import interpolate, latent_means, manifold_grid, reconstruct
from genlab.train.run import read_metrics


def loss_curves(run_dir: Path, out: Path) -> Path | None:
    """Every train/* term against the step, one panel per term."""
    rows = read_metrics(run_dir)
    keys = sorted({k for r in rows for k in r if k.startswith("train/") and not k.endswith("grad_norm")})
    if not keys:
        return None
    fig, axes = subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*pts))
        ax.set_title(key.removeprefix("train/"), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return save_figure(fig, out)


@FIGURE_SETS.register("latent")
def latent_figures(run, out_dir: Path, device) -> list[tuple[str, str]]:
    """Samples, reconstructions, an interpolation, and for a 2-D latent the manifold and the code scatter."""
    model, figs = run.model, []
    test = run.dataset("test")
    pick = random_subset(len(test), 32, seed=0)
    x = test.batch(pick, torch.Generator().manual_seed(1))["x"].to(device)
    if model.card.decoder == "autoregressive":  # PixelVAE: no mean image; one z per row, pixels drawn
        save_grid(draw(model, 32, seed=0, device=device, batch_size=32, pixel_samples_per_latent=8),
                  out_dir / "samples.png", nrow=8)
        figs.append(("Samples: each row shares one z ~ N(0, I) (the global shape), each column draws its own "
                     "pixels from the PixelCNN decoder (the strokes); seed 0", "samples.png"))
        return figs
    classes = conditioning(model).num_classes
    if classes:  # a conditional VAE: every picture is given its labels
        return figs + _conditional_latent_figures(model, test, pick, device, out_dir)
    if model.card.samplers:
        save_grid(draw(model, 64, seed=0, device=device), out_dir / "samples.png")
        prior = ("token grids z ~ p_prior(z) from the autoregressive prior" if model.card.first_stage
                 else "z ~ N(0, I)")
        figs.append((f"Samples (decoder means, {prior}, seed 0)", "samples.png"))
    rec = reconstruct(model, x)
    pairs = torch.stack([x.cpu(), rec.cpu()], dim=1).flatten(0, 1)  # input, reconstruction, ...
    save_grid(pairs, out_dir / "reconstructions.png", nrow=16)
    figs.append(("Test images (odd columns) and their reconstructions (even columns)", "reconstructions.png"))
    strips = torch.cat([interpolate(model, x[2 * i], x[2 * i + 1], steps=10).cpu() for i in range(4)])
    save_grid(strips, out_dir / "interpolation.png", nrow=10)
    figs.append(("Interpolation between pairs of test images in latent space", "interpolation.png"))
    if "hvae" in model.card.sampler_names:
        figs.extend(_hierarchy_figures(model, out_dir, device))
    if latent_means(model, x[:1]).shape[1:] == (2,):  # a 2-D vector latent
        save_grid(manifold_grid(model, 15, 15, device), out_dir / "manifold.png", nrow=15, scale=2)
        figs.append(("Decoded manifold over Gaussian quantiles of z (latent_dim=2)", "manifold.png"))
        figs.append(("Test-set latent means", _latent_scatter(model, test, device, out_dir / "latent_scatter.png")))
    return figs


@torch.no_grad()
def _conditional_latent_figures(model, test, pick, device, out_dir: Path) -> list[tuple[str, str]]:
    """A conditional VAE: samples per label, reconstructions given the true labels, and the analogy grid of
    Kingma et al. 2014 (arXiv:1406.5298, Fig. 1): one test image's z = E[z | x, y] decoded with every label."""
    classes = conditioning(model).num_classes
    batch = test.batch(pick, torch.Generator().manual_seed(1))
    x, y = batch["x"].to(device), batch["y"].to(device)
    labels = torch.arange(6 * classes, device=device) % classes
    save_grid(draw(model, len(labels), seed=0, device=device, label=labels), out_dir / "samples.png", nrow=classes)
    figs = [("Samples (decoder means, z ~ N(0, I)); column k is drawn for label k, seed 0", "samples.png")]
    rec = reconstruct(model, x, y)
    save_grid(torch.stack([x.cpu(), rec.cpu()], dim=1).flatten(0, 1), out_dir / "reconstructions.png", nrow=16)
    figs.append(("Test images (odd columns) and their reconstructions given their labels (even columns)",
                 "reconstructions.png"))
    rows = min(8, len(x))
    z = latent_means(model, x[:rows], y[:rows])  # (rows, latent): each image's style
    grid = model.distribution(model.decode(z.repeat_interleave(classes, 0),
                                           torch.arange(classes, device=device).repeat(rows))).mean()
    save_grid(torch.cat([x[:rows, None].cpu(), grid.view(rows, classes, *x.shape[1:]).cpu()], dim=1).flatten(0, 1),
              out_dir / "analogies.png", nrow=classes + 1)
    figs.append(("Analogies: each row is a test image (first column) whose posterior mean z = E[z | x, y] is "
                 f"decoded with every label 0..{classes - 1}: z carries the style, y the class", "analogies.png"))
    return figs


def _hierarchy_figures(model, out_dir: Path, device) -> list[tuple[str, str]]:
    """What each level encodes: rows fix the top groups of one prior sample, columns redraw the groups below."""
    n_groups, figs = len(model.group_shapes), []
    for keep in sorted({1, n_groups - 1} - {0}):
        name = f"resample_below_{keep}.png"
        save_grid(resample_below(model, rows=6, cols=8, keep=keep, seed=0, device=device), out_dir / name, nrow=8)
        figs.append((f"Each row keeps the top {keep} of {n_groups} latent groups of one prior sample; each column "
                     "redraws the groups below (decoder means, seed 0)", name))
    return figs


@torch.no_grad()
def _latent_scatter(model, test, device, out: Path) -> str:
    n = min(len(test), 5000)
    idx = torch.arange(n)
    codes = torch.cat([latent_means(model, test.batch(idx[i:i + 500], torch.Generator().manual_seed(i))["x"]
                                    .to(device)).cpu() for i in range(0, n, 500)])
    fig, ax = subplots(figsize=(5, 4.4))
    if test.labels is not None:
        sc = ax.scatter(codes[:, 0], codes[:, 1], c=test.labels[:n].cpu(), cmap="tab10", s=3)
        fig.colorbar(sc, ax=ax, label="label")
    else:
        ax.scatter(codes[:, 0], codes[:, 1], s=3)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(f"posterior means of {n} {test.name} test images", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out).name


def save_nearest_neighbour_figure(samples: torch.Tensor, train: torch.Tensor, path: str | Path,
                                  k: int = 3) -> tuple[Path, torch.Tensor]:
    """A row per sample: the sample, then its k nearest training images (pixel L2).

    Returns:
        (the PNG path, the (N, k) RMS pixel distances, for the caption or a report).
    """
    dist, idx = nearest_neighbours(samples, train, k)
    if train.dtype == torch.uint8:
        train = train.float() / 255
    rows = torch.cat([samples.cpu().float()[:, None], train[idx.flatten()].view(*idx.shape, *train.shape[1:])], 1)
    return save_strip(rows, path), dist


@FIGURE_SETS.register("adversarial")
def adversarial_figures(run, out_dir: Path, device) -> list[tuple[str, str]]:
    """Samples (a row per class for conditional models), latent walks (PNG and GIF), nearest training images."""
    model, figs = run.model, []
    if conditioning(model).source_image:  # an image-to-image model: translations of test images, no prior to sample
        return translation_figures(run, out_dir, device)
    classes = conditioning(model).num_classes
    if classes:
        rows = torch.cat([draw(model, 10, seed=0, device=device, label=c) for c in range(classes)])
        save_grid(rows, out_dir / "samples.png", nrow=10)
        figs.append(("Samples, one row per class label (seed 0)", "samples.png"))
    else:
        save_grid(draw(model, 64, seed=0, device=device), out_dir / "samples.png")
        figs.append(("Samples (seed 0)", "samples.png"))
    label = 0 if classes else None
    paths = interpolations(model, pairs=6, steps=10, seed=1, device=device, label=label).cpu()
    save_strip(paths, out_dir / "interpolation.png")
    save_gif(paths, out_dir / "interpolation.gif")
    figs.append(("Latent interpolation between random z (animated: interpolation.gif)", "interpolation.png"))
    train = run.dataset("train")
    _, dist = save_nearest_neighbour_figure(draw(model, 8, seed=2, device=device), train.images,
                                            out_dir / "nearest_train.png", k=5)
    figs.append((f"Samples (left) and their 5 nearest training images in pixel space; median RMS distance "
                 f"{dist[:, 0].median():.3f}", "nearest_train.png"))
    if model.card.encoder != "none":
        test = run.dataset("test")
        x = test.batch(torch.arange(32), torch.Generator().manual_seed(0))["x"].to(device)
        rec = reconstruct_all(model, x)
        save_grid(torch.stack([x.cpu(), rec], 1).flatten(0, 1), out_dir / "reconstructions.png", nrow=16)
        figs.append(("Test images x (odd columns) and G(E(x)) (even columns)", "reconstructions.png"))
    if model.card.growing:
        figs.append(resolution_figure(model, out_dir / "resolutions.png", device))
    return figs


@torch.no_grad()
def resolution_figure(model, out: Path, device, n: int = 10) -> tuple[str, str]:
    """The same n latents drawn at every resolution of a progressively grown generator, one row each."""
    z = model.sample_latent(n, device, make_generators(0, n, device))
    rows = [model.generate(z, level=lv).cpu() for lv in range(model.schedule.levels)]
    save_grid(torch.cat(rows), out, nrow=n)
    sides = " -> ".join(str(model.schedule.start * 2**lv) for lv in range(model.schedule.levels))
    return (f"The same 10 latents (seed 0) at each resolution ({sides}; one row each, upsampled and cropped to "
            "the data's size), through that level's toRGB layer of the final networks", out.name)
