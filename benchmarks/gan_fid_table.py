"""FID of DCGAN for each GAN objective, and transposed vs upsample-then-convolve generators, over seeds.

For each dataset (MNIST, Fashion-MNIST), the script trains the `dcgan-<data>`
preset (Radford et al. 2016 optimiser, minibatch 64, a CPU budget of 2,500
steps) once per seed for

  * each objective (minimax, non-saturating, LSGAN, hinge) with the paper's
    transposed-convolution generator, and
  * the non-saturating objective with a nearest-neighbour upsample + 3x3
    convolution generator (the comparison the lecture asks for),

evaluates every run with `genlab eval RUN --only sample-quality` (FID, KID,
precision/recall in the dataset's shipped feature network, generated samples
against the official test split), and prints one row per configuration: mean
and sample standard deviation over the seeds, the per-seed FIDs, and the
command. It also saves one figure of samples per dataset (seed 0 of each
configuration, the same latent draws in every panel).

Runs that exist are reused (a partial run is resumed), so the script can be
re-run after an interruption or with the runs trained elsewhere:

    python benchmarks/gan_fid_table.py [--runs runs/gan-fid] [--data mnist fashion-mnist]
        [--seeds 0 1 2] [--n-samples 10000] [--figures docs/figures] [--no-train]

The run folders are named <data>-<loss>-<upsample>-s<seed>.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import NamedTuple

import torch

import genlab  # noqa: F401  (fills the registries)
from genlab.configs import PRESETS
from runs_common import ensure_evaluated, ensure_trained, eval_argv, metric, spread, wall_minutes

LOSSES = ("minimax", "nonsaturating", "lsgan", "hinge")
UPSAMPLING_COMPARED = ("nonsaturating", "nearest-conv")  # transposed is the baseline, already among LOSSES
METRICS = ("fid", "kid", "precision", "recall")
# Logged by the `gan` objective at the generator step: sigma(D(G(z))) and the norm of G's gradient. sigma(D) is
# D's probability that a sample is real only for the two cross-entropy games (minimax, non-saturating).
END_OF_TRAINING = ("train/G/p_fake", "optim/G/grad_norm")


def configurations() -> list[tuple[str, str]]:
    """(loss, upsample) pairs of the table, in row order."""
    return [(loss, "transposed") for loss in LOSSES] + [UPSAMPLING_COMPARED]


class Row(NamedTuple):
    """One configuration of the table, over its seeds."""
    data: str
    loss: str
    upsample: str
    per_seed: dict[str, list[float]]
    command: str
    test_period2: float


def run_name(data: str, loss: str, upsample: str, seed: str) -> str:
    return f"{data}-{loss}-{upsample}-s{seed}"


def train_argv(data: str, loss: str, upsample: str, seed: str) -> list[str]:
    return ["--preset", f"dcgan-{data}", "--set", f"loss={loss}", "--set", f"upsample={upsample}", "--seed", seed]


def end_of_training(run: Path) -> dict[str, float]:
    """The generator-step statistics of the last logged step."""
    from genlab.train.run import read_metrics

    last = [row for row in read_metrics(run) if "optim/G/grad_norm" in row][-1]
    return {key: last.get(key, math.nan) for key in END_OF_TRAINING}  # p_fake is logged for cross-entropy games


def period2_energy(images: torch.Tensor) -> float:
    """Mean share of an image's spectral energy (constant term left out) at the period-2 frequencies.

    Those are the row stripes (H/2, 0), column stripes (0, W/2) and checkerboard (H/2, W/2) that a stride-2
    transposed convolution leaves when its kernel overlaps unevenly (Odena, Dumoulin & Olah 2016, "Deconvolution
    and Checkerboard Artifacts", Distill); upsample-then-convolve should bring the share to that of real images.
    """
    power = torch.fft.fft2(images.double()).abs().square()
    h, w = images.shape[-2:]
    period2 = power[..., h // 2, 0] + power[..., 0, w // 2] + power[..., h // 2, w // 2]
    varying = power.sum((-2, -1)) - power[..., 0, 0]
    return (period2 / varying.clamp_min(1e-12)).mean().item()


def samples_of(run: Path, n: int = 2000) -> torch.Tensor:
    """Samples 0..n-1 of seed 0: the period-2 energy uses them all, the figure the first 64 (the same images)."""
    from genlab.sampling.api import draw
    from genlab.train.run import load_run

    return draw(load_run(run, "cpu").model, n, seed=0, device="cpu")


def reference_period2_energy(run: Path) -> float:
    """Period-2 energy of the test images of the run's dataset."""
    from genlab.data import load_dataset
    from genlab.data.base import scale
    from genlab.train.run import read_config

    data = read_config(run).data
    return period2_energy(scale(load_dataset(data.name, "test", data).images))


def sample_figure(data: str, samples: dict[tuple[str, str], torch.Tensor], fids: dict[tuple[str, str], float],
                  out: Path) -> Path:
    """One panel of samples per configuration (same sample seed everywhere), titled with its FID."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genlab.reports.images import grid_array, save_figure

    fig, axes = plt.subplots(1, len(samples), figsize=(2.6 * len(samples), 3.2), layout="constrained")
    for ax, (key, images) in zip(axes, samples.items()):
        ax.imshow(grid_array(images, nrow=8), cmap="gray", vmin=0, vmax=1)
        loss, upsample = key
        ax.set_title(f"{loss}, {upsample}\nFID {fids[key]:.1f} (seed 0)", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"DCGAN on {data}: samples of each objective and generator upsampling", fontsize=10)
    return save_figure(fig, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/gan-fid", help="folder of the run folders (default runs/gan-fid)")
    parser.add_argument("--data", nargs="+", default=["mnist", "fashion-mnist"], choices=["mnist", "fashion-mnist"])
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="training seeds (at least 3 for a spread)")
    parser.add_argument("--n-samples", type=int, default=10000, help="generated and real images for the metrics")
    parser.add_argument("--figures", default=None, help="folder for the sample figures (default: the runs folder)")
    parser.add_argument("--no-train", action="store_true", help="fail instead of training or evaluating missing runs")
    args = parser.parse_args()
    runs_root = Path(args.runs)
    figures = Path(args.figures or runs_root)
    train = not args.no_train

    rows, minutes, summary = [], [], {}
    for data in args.data:
        target = int(PRESETS.get(f"dcgan-{data}")()["train.steps"])
        first_seed_samples, first_seed_fids = {}, {}
        test_period2 = None
        for loss, upsample in configurations():
            per_seed = {m: [] for m in METRICS + END_OF_TRAINING + ("period2",)}
            for seed in args.seeds:
                run = runs_root / run_name(data, loss, upsample, seed)
                ensure_trained(run, train_argv(data, loss, upsample, seed), target, train)
                found = ensure_evaluated(run, args.n_samples, target, train)
                for m in METRICS:
                    per_seed[m].append(metric(found, m))
                for key, value in end_of_training(run).items():
                    per_seed[key].append(value)
                samples = samples_of(run)
                per_seed["period2"].append(period2_energy(samples))
                if (w := wall_minutes(run)) is not None:
                    minutes.append(w)
                if test_period2 is None:
                    test_period2 = reference_period2_energy(run)
                if seed == args.seeds[0]:
                    first_seed_samples[(loss, upsample)] = samples[:64]
                    first_seed_fids[(loss, upsample)] = per_seed["fid"][-1]
            each = runs_root / run_name(data, loss, upsample, "$s")  # one shell loop over the seeds
            command = (f"for s in {' '.join(args.seeds)}; do genlab train {' '.join(train_argv(data, loss, upsample, '$s'))}"
                       f" --out {each} && genlab {' '.join(eval_argv(each, args.n_samples))}; done")
            rows.append(Row(data, loss, upsample, per_seed, command, test_period2))
            summary[f"{data}/{loss}/{upsample}"] = {"seeds": args.seeds, **per_seed, "command": command}
        figure = sample_figure(data, first_seed_samples, first_seed_fids, figures / f"dcgan_{data}_samples.png")
        print(f"wrote {figure}")

    feature_net = {"mnist": "mnist-lenet-v1", "fashion-mnist": "fashion-mnist-lenet-v1"}
    print(f"\nDCGAN, {target} steps of minibatch 64, {len(args.seeds)} seeds; metrics of {args.n_samples} samples "
          f"against the {args.n_samples} official test images in the dataset's feature network "
          f"({', '.join(f'{d}: {feature_net[d]}' for d in args.data)}); mean ± sample std over seeds.\n")
    head = ("data", "loss", "G upsampling", "FID", "KID", "precision", "recall", "FID per seed")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for data, loss, upsample, per_seed, *_ in rows:
        print(f"| {data} | {loss} | {upsample} | {spread(per_seed['fid'])} | {spread(per_seed['kid'], '.3f')} | "
              f"{spread(per_seed['precision'], '.3f')} | {spread(per_seed['recall'], '.3f')} | "
              f"{', '.join(f'{v:.2f}' for v in per_seed['fid'])} |")
    print("\nDiagnostics (mean ± std over seeds): sigma(D(G(z))) and the generator's gradient norm at the last logged "
          "generator step (logged for the cross-entropy games only, where sigma(D) is a probability); period-2 energy = share of "
          "the spectral energy of 2,000 samples (seed 0) at the stripe/checkerboard frequencies, test images in "
          "brackets:\n")
    print("| data | loss | G upsampling | sigma(D(G(z))) | generator gradient norm | period-2 energy (test) |")
    print("|---|---|---|---|---|---|")
    for data, loss, upsample, per_seed, _, test_period2 in rows:
        p_fake, grad = (per_seed[k] for k in END_OF_TRAINING)
        print(f"| {data} | {loss} | {upsample} | {'-' if math.isnan(p_fake[0]) else spread(p_fake, '.2g')} | {spread(grad, '.3g')} | "
              f"{spread(per_seed['period2'], '.2e')} ({test_period2:.2e}) |")
    if minutes:
        print(f"\nTraining wall time per run (file times): {min(minutes):.1f} to {max(minutes):.1f} min")
    print(f"\nCommands (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"python {sys.version.split()[0]}):")
    for row in rows:
        print(f"  {row.command}")
    (runs_root / "gan_fid_table.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
