"""GAN theory on toy data: optimal discriminator, saturation, mode coverage. Prints tables, writes figures.

    python benchmarks/gan_toy_theory.py --threads 1 --seeds 3    # figures in runs/gan_toy_theory

1. Optimal discriminator (Goodfellow et al. 2014, Prop. 1 and Thm. 1): a discriminator
   trained against a frozen Gaussian generator is compared with D* = p_data / (p_data + p_g)
   on a grid, and the value V(D, G) (integrated on the grid) with 2 JSD - log 4.
2. Saturation (Goodfellow et al. 2014, Sec. 3; Arjovsky & Bottou 2017): generator gradient
   norms of the minimax and non-saturating losses as D is trained against a frozen generator.
3. Mode coverage on the 8-Gaussian ring (radius 2, std 0.02): MLP GANs trained with each loss
   of the ``gan`` objective; modes covered (>= 1% of samples within 3 std), fraction of
   high-quality samples, KL of the mode frequencies. Budgets are counted in generator updates.

Runs on CPU. ``--threads 1`` is much faster than torch's default on a busy machine (these
networks are tiny); ``--quick`` shrinks every budget for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from genlab.toy.experiments import (RingConfig, discriminator_optimality, saturation,  # noqa: E402
                                    train_ring_gan)
from genlab.toy.mixtures import ring  # noqa: E402
from genlab.toy.theory import optimal_discriminator  # noqa: E402
from genlab.reports.images import save_figure  # noqa: E402

RING_CONFIGS = [
    RingConfig("minimax"),
    RingConfig("nonsaturating"),
    RingConfig("lsgan"),
    RingConfig("hinge"),
    # WGAN-GP toy setting: small lambda, 5 critic steps, Adam(1e-4, 0.5, 0.9) (Gulrajani et al. 2017).
    RingConfig("wasserstein", "wgan-gp", penalty_weight=0.1, n_critic=5, lr=1e-4, betas=(0.5, 0.9)),
    RingConfig("nonsaturating", "r1", penalty_weight=0.1),
]


def part_optimal(out: Path, quick: bool) -> list[dict]:
    print("\n== 1. trained D vs D* = p_data / (p_data + p_g), generator frozen ==")
    rows = []
    runs = {1: dict(steps=300 if quick else 3000, hidden=64, depth=2),
            2: dict(steps=300 if quick else 4000, hidden=256, depth=2)}
    results = {}
    for dim, kw in runs.items():
        t = time.perf_counter()
        r = discriminator_optimality(dim=dim, batch_size=512, **kw)
        results[dim] = r
        rows.append({"dim": dim, "d_steps": kw["steps"], "jsd_nats": r.jsd, "2jsd_minus_log4": r.optimal_value,
                     "V_before": r.value_before, "V_after": r.value_after,
                     "mean_abs_err_before": r.error_before["mean_abs"], "mean_abs_err_after": r.error_after["mean_abs"],
                     "max_abs_err_after": r.error_after["max_abs"], "seconds": time.perf_counter() - t})
    print(f"{'dim':>3} {'D steps':>7} {'JSD':>7} {'2JSD-log4':>9} {'V(D0)':>8} {'V(D)':>8} {'gap':>7} "
          f"{'E|D0-D*|':>9} {'E|D-D*|':>8} {'max|D-D*|':>9}")
    for r in rows:
        print(f"{r['dim']:>3} {r['d_steps']:>7} {r['jsd_nats']:>7.4f} {r['2jsd_minus_log4']:>9.4f} "
              f"{r['V_before']:>8.4f} {r['V_after']:>8.4f} {r['2jsd_minus_log4'] - r['V_after']:>7.4f} "
              f"{r['mean_abs_err_before']:>9.4f} {r['mean_abs_err_after']:>8.4f} {r['max_abs_err_after']:>9.4f}")
    print("  (E|.| is the mean over (p_data + p_g)/2; max over points with mixture density >= 1e-3 of its peak)")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    r = results[1]
    x = r.grid.points
    with torch.no_grad():
        d = torch.sigmoid(r.model.discriminator(x.float())).double()
    ax = axes[0]
    ax.plot(x[:, 0], r.p_data.log_prob(x).exp(), label="p_data")
    ax.plot(x[:, 0], r.p_g.log_prob(x).exp(), label="p_g (frozen)")
    ax.plot(x[:, 0], optimal_discriminator(r.p_data, r.p_g, x), "k--", label="D* = p_data/(p_data+p_g)")
    ax.plot(x[:, 0], d, "r", alpha=0.8, label="trained D")
    ax.set_xlim(-6, 6)
    ax.set_title(f"1-D: V(D)={r.value_after:.4f}, 2JSD-log4={r.optimal_value:.4f}")
    ax.legend(fontsize=8)
    r2 = results[2]
    side = r2.grid.shape[0]
    pts = r2.grid.points
    with torch.no_grad():
        d2 = torch.sigmoid(r2.model.discriminator(pts.float())).reshape(side, side).T
    d_star = optimal_discriminator(r2.p_data, r2.p_g, pts).reshape(side, side).T
    extent = [float(r2.grid.axes[0][0]), float(r2.grid.axes[0][-1])] * 2
    for ax, img, title in ((axes[1], d_star, "2-D: D*"), (axes[2], d2, f"2-D: trained D (V gap "
                                                                   f"{r2.optimal_value - r2.value_after:.4f})")):
        im = ax.imshow(img, origin="lower", extent=extent, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(title)
        ax.set_xlim(-4, 4), ax.set_ylim(-4, 4)
    fig.colorbar(im, ax=axes[1:], shrink=0.8)
    save_figure(fig, out / "optimal_discriminator.png", dpi=120, bbox_inches="tight")
    return rows


def part_saturation(out: Path, quick: bool) -> list[dict]:
    print("\n== 2. generator gradient norm as D wins (p_data = N(2, 0.5^2), G frozen at N(-2, 0.5^2)) ==")
    checkpoints = (0, 10, 25, 50, 100) if quick else (0, 5, 10, 25, 50, 100, 200, 400, 800, 1600)
    rows = saturation(checkpoints=checkpoints)
    print(f"{'D steps':>7} {'mean D(G(z))':>12} {'|grad| minimax':>14} {'|grad| non-sat':>14} {'ratio':>9}")
    for r in rows:
        print(f"{r['d_steps']:>7} {r['p_fake']:>12.2e} {r['grad_minimax']:>14.3e} {r['grad_nonsaturating']:>14.3e} "
              f"{r['grad_minimax'] / r['grad_nonsaturating']:>9.2e}")
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [max(r["d_steps"], 1) for r in rows]
    ax.loglog(steps, [r["grad_minimax"] for r in rows], "o-", label="minimax: log(1 - D(G(z)))")
    ax.loglog(steps, [r["grad_nonsaturating"] for r in rows], "s-", label="non-saturating: -log D(G(z))")
    ax.loglog(steps, [r["p_fake"] for r in rows], "k:", label="mean D(G(z))")
    ax.set_xlabel("discriminator steps (0 drawn at 1)")
    ax.set_ylabel("generator gradient norm")
    ax.legend(fontsize=8)
    ax.set_title("Saturation of the minimax generator loss")
    save_figure(fig, out / "saturation.png", dpi=120, bbox_inches="tight")
    return rows


def part_ring(out: Path, quick: bool, g_updates: int, seeds: list[int]) -> list[dict]:
    print(f"\n== 3. mode coverage on the 8-Gaussian ring ({g_updates} generator updates, 2500 samples) ==")
    rows, scatter = [], {}
    for cfg in RING_CONFIGS:
        for seed in seeds:
            t = time.perf_counter()
            steps = g_updates * cfg.n_critic
            res, x, _ = train_ring_gan(cfg, steps=steps, seed=seed)
            row = {"objective": cfg.name, "seed": seed, "steps": steps, **res, "seconds": time.perf_counter() - t}
            rows.append(row)
            scatter.setdefault(cfg.name, x)
            print(f"  {cfg.name:<34} seed {seed}: modes {res['modes_covered']}/8, high quality "
                  f"{res['high_quality']:.3f}, mode KL {res['mode_kl']:.3f} ({row['seconds']:.0f} s)", flush=True)
    print(f"\n{'objective':<34} {'modes (mean)':>12} {'high quality':>12} {'mode KL':>8}  per seed")
    for cfg in RING_CONFIGS:
        mine = [r for r in rows if r["objective"] == cfg.name]
        mean = lambda k: sum(r[k] for r in mine) / len(mine)  # noqa: E731
        per_seed = ", ".join(str(r["modes_covered"]) for r in mine)
        print(f"{cfg.name:<34} {mean('modes_covered'):>12.2f} {mean('high_quality'):>12.3f} "
              f"{mean('mode_kl'):>8.3f}  [{per_seed}]")
    data = ring()
    fig, axes = plt.subplots(1, len(scatter), figsize=(3 * len(scatter), 3.2))
    for ax, (name, x) in zip(axes, scatter.items()):
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        ax.scatter(data.means[:, 0], data.means[:, 1], c="r", marker="x", s=20)
        ax.set_xlim(-3, 3), ax.set_ylim(-3, 3), ax.set_aspect("equal")
        ax.set_title(name, fontsize=8)
    save_figure(fig, out / "ring_samples.png", dpi=120, bbox_inches="tight")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/gan_toy_theory", help="folder for figures and results.json")
    ap.add_argument("--g-updates", type=int, default=3000, help="generator updates per ring GAN")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per ring objective")
    ap.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 1,2")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets, for a smoke run")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = {int(p) for p in args.parts.split(",")}
    g_updates = 200 if args.quick else args.g_updates
    began = time.perf_counter()
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "quick": args.quick}
    if 1 in parts:
        results["optimal_discriminator"] = part_optimal(out, args.quick)
    if 2 in parts:
        results["saturation"] = part_saturation(out, args.quick)
    if 3 in parts:
        results["ring"] = part_ring(out, args.quick, g_updates, list(range(args.seeds)))
    (out / "results.json").write_text(json.dumps(results, indent=1, default=lambda v: None
                                                 if isinstance(v, float) and not math.isfinite(v) else v))
    print(f"\nfigures and results.json in {out} ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
