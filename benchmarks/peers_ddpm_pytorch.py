"""genlab's diffusion model against denoising-diffusion-pytorch's Unet and GaussianDiffusion, side by side.

    pip install "torch==2.13.0" accelerate einops "ema-pytorch>=0.4.2"
    pip install --no-deps denoising-diffusion-pytorch pytorch-fid    # their torchvision would replace the CPU torch
    python benchmarks/peers_ddpm_pytorch.py [--threads N] [--nfe 10 50] [--compile [MODE] [--peer-compile]]

denoising-diffusion-pytorch imports torchvision at import time (its Trainer's datasets and image saving, and
pytorch-fid's Inception network), none of which the U-Net, the loss or the sampler calls; where torchvision
does not import (here: its wheels pin another torch than the local CPU build), the script imports the
package with the empty stand-in of `torchvision_standin.py` and says so.

The U-Nets have the same number of weights (the script checks within 2 %): genlab's `ddpm-mnist` preset
(widths 16-32-32, one residual block per level, attention at 7x7, dropout 0.1; 280,177 weights) and the
peer's `Unet(dim=14, dim_mults=(1, 2, 2), attn_heads=4, attn_dim_head=16)` (two residual blocks per level,
linear attention at 28x28 and 14x14, full attention at 7x7, the same dropout; 278,881 weights): its own
design at the same size, not a copy of genlab's. Both train the epsilon objective on the linear DDPM schedule
(T = 1000) of the same batches of MNIST, scaled to [-1, 1], with the same Adam settings: the peer's step is
`GaussianDiffusion(objective="pred_noise", beta_schedule="linear")`'s forward (its training loss) and a
backward, genlab's `genlab.train.step.train_step` with the `diffusion` objective.

Sampling: deterministic DDIM at equal NFE with the x_0 estimate clipped to [-1, 1] in both, the same number
of images in one batch: the peer's `GaussianDiffusion.sample` with `sampling_timesteps` = NFE and eta 0
(its DDIM path), against genlab's `ddim` sampler.

`--compile [MODE]` compiles genlab's U-Net as `train.compile` does, and a copy of it for sampling as
`genlab.load(compile=)` does; `--peer-compile` compiles the peer's `Unet` in the same mode with torch.compile
(its loss and sampler loop stay eager, as genlab's do). The compilation falls in each side's untimed warm-up
call (printed).

Prints ratios (peer time / genlab time: > 1 means genlab is faster) with their range, threads and load.
"""

from __future__ import annotations

import contextlib
import io
import time

import torch

import genlab  # noqa: F401

from side_by_side import (alternate, compare, compile_as_asked, ddim_side_by_side, device_sync, diffusion_side_by_side_setup,
                          same_size, warmup_line)
from torchvision_standin import import_peer
from runs_common import run_script

INSTALL = ('pip install "torch==2.13.0" accelerate einops "ema-pytorch>=0.4.2" && '
           "pip install --no-deps denoising-diffusion-pytorch pytorch-fid")


def main():
    args, began, trainer = diffusion_side_by_side_setup(__doc__)
    (peer,), how = import_peer("denoising_diffusion_pytorch", ["denoising_diffusion_pytorch"], INSTALL)
    print(f"denoising-diffusion-pytorch: {how}")
    cfg, ours = trainer.cfg, trainer.model
    device = trainer.device
    unet = peer.Unet(14, dim_mults=(1, 2, 2), channels=1, attn_heads=4, attn_dim_head=16,
                     dropout=cfg.model.dropout).to(device)
    same_size(ours, unet, "denoising-diffusion-pytorch",
              (torch.zeros(1, 1, 28, 28, device=device), torch.full((1,), 500, device=device)))
    print(f"batch {args.batch_size}, Adam lr {cfg.optim.lr}; {compile_as_asked(args, trainer, unet)}")

    def diffusion(nfe: int | None = None):
        return peer.GaussianDiffusion(unet, image_size=28, timesteps=1000, sampling_timesteps=nfe,
                                      objective="pred_noise", beta_schedule="linear", ddim_sampling_eta=0.0).to(device)

    theirs = diffusion()
    ours.train(), theirs.train()
    # the peer's forward takes images in [0, 1] and scales them to [-1, 1] itself (auto_normalize)
    windows = trainer.window_pair(args.window, trainer.optimizer(unet.parameters()), theirs)
    times = alternate(*windows, args.pairs, device_sync(device))
    print("training:", compare(times, "genlab", "denoising-diffusion-pytorch", args.window * args.batch_size,
                               "img/s"), flush=True)
    print("  " + warmup_line(times, "genlab", "denoising-diffusion-pytorch"), flush=True)

    samplers = {nfe: diffusion(nfe).eval() for nfe in args.nfe}

    @torch.no_grad()
    def peer_sample(nfe: int):
        torch.manual_seed(0)
        with contextlib.redirect_stderr(io.StringIO()):  # the peer's sampler draws a progress bar per call
            samplers[nfe].sample(batch_size=args.samples)

    ddim_side_by_side(trainer.sampling_model, "denoising-diffusion-pytorch", peer_sample, args.nfe, args.samples,
                      args.sample_pairs, device)
    print(f"wall {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    run_script(main, "peers_ddpm_pytorch.py")
