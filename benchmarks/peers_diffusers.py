"""genlab's diffusion model against diffusers' UNet2DModel (pip install "torch==2.13.0" -e ".[peers]"), side by side.

    python benchmarks/peers_diffusers.py [--threads N] [--nfe 10 50] [--compile [MODE] [--peer-compile]]

The U-Nets have the same size: genlab's `ddpm-mnist` preset (widths 16-32-32, one residual block per
level, attention at 7x7, dropout 0.1) and diffusers' `UNet2DModel` with block_out_channels (16, 32, 32),
layers_per_block 1, attention in the 7x7 blocks and 8 normalization groups both have 280,177 weights
(the script checks the counts are within 2 %). Both train with the same Adam settings on the same batches
of MNIST scaled to [-1, 1] (genlab's objective does the scaling), with the linear DDPM schedule (T = 1000)
and the epsilon loss; diffusers' step is the one of its training examples (add_noise with the
DDPMScheduler, the U-Net, mean squared error), genlab's is `genlab.train.step.train_step` with the
`diffusion` objective.

Sampling: deterministic DDIM at equal NFE, the same number of images in one batch: diffusers' DDIMScheduler
loop (set_timesteps, U-Net, scheduler.step) against genlab's `ddim` sampler through `genlab.sampling.api.draw`
(which also draws each image's noise from its own generator, so image i is the same in any batch).

`--compile [MODE]` compiles genlab's U-Net as `train.compile` does for training, and a copy of it as
`genlab.load(compile=)` does for sampling; `--peer-compile` compiles diffusers' `UNet2DModel` in the same mode
with torch.compile, as its documentation suggests to its users. The compilation falls in each side's untimed
warm-up call (printed).

Prints ratios (diffusers time / genlab time: > 1 means genlab is faster) with their range, threads and
load average.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

import genlab  # noqa: F401

from side_by_side import (alternate, compare, compile_as_asked, ddim_side_by_side, device_sync, diffusion_side_by_side_setup,
                          same_size, warmup_line)
from runs_common import run_script

SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def peer_unet(dropout: float) -> UNet2DModel:
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(16, 32, 32),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                       dropout=dropout)


def main():
    args, began, trainer = diffusion_side_by_side_setup(__doc__)
    cfg, ours = trainer.cfg, trainer.model
    device = trainer.device
    theirs = peer_unet(cfg.model.dropout).to(device)
    same_size(ours, theirs, "diffusers", (torch.zeros(1, 1, 28, 28, device=device), torch.full((1,), 500, device=device)))
    print(f"batch {args.batch_size}, Adam lr {cfg.optim.lr}; {compile_as_asked(args, trainer, theirs)}")
    noise_schedule = DDPMScheduler(**SCHEDULE)
    ours.train(), theirs.train()

    def diffusers_loss(x):
        x0 = x * 2 - 1  # in [-1, 1], as genlab's objective scales it
        noise = torch.randn_like(x0)
        t = torch.randint(0, SCHEDULE["num_train_timesteps"], (x0.shape[0],), device=x0.device)
        return F.mse_loss(theirs(noise_schedule.add_noise(x0, noise, t), t).sample, noise)

    windows = trainer.window_pair(args.window, trainer.optimizer(theirs.parameters()), diffusers_loss)
    times = alternate(*windows, args.pairs, device_sync(device))
    print("training:", compare(times, "genlab", "diffusers", args.window * args.batch_size, "img/s"), flush=True)
    print("  " + warmup_line(times, "genlab", "diffusers"), flush=True)

    theirs.eval()
    sampler = DDIMScheduler(**SCHEDULE, clip_sample=True)

    @torch.no_grad()
    def diffusers_sample(nfe: int):
        x = torch.randn(args.samples, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
        sampler.set_timesteps(nfe)
        for t in sampler.timesteps:
            x = sampler.step(theirs(x, t).sample, t, x, eta=0.0).prev_sample

    ddim_side_by_side(trainer.sampling_model, "diffusers", diffusers_sample, args.nfe, args.samples, args.sample_pairs,
                      device)
    print(f"wall {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    run_script(main, "peers_diffusers.py")
