"""genlab's VAE against pythae's (pip install "torch==2.13.0" -e ".[peers]"), side by side in one process.

    python benchmarks/peers_pythae.py [--threads N] [--train-steps 200] [--k 100] [--images 16] [--compile [MODE]]

Both libraries run the same network: the encoder and decoder of genlab's `vae-binarized-mnist` preset
(same weights at the start), plugged into pythae's `VAE` through its documented `BaseEncoder` /
`BaseDecoder` interfaces (the decoder's Bernoulli means are the sigmoid of genlab's logits). So what is
compared is each library's own work around the network:

1. Training throughput: pythae's VAE forward (its loss) + backward + Adam, against genlab's training step
   (`genlab.train.step.train_step`, the one the loop runs, with the `elbo` objective), on the same batches
   of statically binarized MNIST, same batch size and Adam settings; alternating windows.
2. Importance-sampled NLL at equal k: pythae's `VAE.get_nll` (one image at a time, k samples in batches of
   `--nll-batch`, the encoder run again on every copy; k must be a multiple of the batch, as get_nll rounds
   k down to one) against genlab's IWAE bound (`genlab.eval.latent.iwae_log_likelihood` with the encoder as
   the proposal, as pythae's: no prior share) on the same test images of a network trained `--train-steps`
   steps first; images per second and the two means, which estimate the same bound and must agree within
   their standard errors.

`--compile [MODE]` compiles genlab's networks for training as `train.compile` does, and for the bound a copy of
them as `genlab eval --compile` does (pythae has no compile option: its twin stays eager).

Prints ratios (pythae time / genlab time: > 1 means genlab is faster) with their range over the pairs,
the threads used and the load average.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder

import genlab  # noqa: F401
from genlab.data import load_dataset
from genlab.eval.latent import iwae_log_likelihood
from genlab.nn.compiled import compile_for_inference
from genlab.stats import standard_error

from side_by_side import (GenlabTrainer, add_compile_arguments, add_timing_arguments, alternate, compare, device_sync,
                          start)
from runs_common import run_script


class SharedEncoder(BaseEncoder):
    """pythae's encoder interface over a genlab VAE's encoder: q(z|x) = N(mu, exp(logvar))."""

    def __init__(self, vae):
        BaseEncoder.__init__(self)
        self.vae = vae

    def forward(self, x):
        mu, logvar = self.vae.encode(x)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class SharedDecoder(BaseDecoder):
    """pythae's decoder interface over the same VAE's decoder: Bernoulli means (pythae's "bce" loss)."""

    def __init__(self, vae):
        BaseDecoder.__init__(self)
        self.vae = vae

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.vae.decode(z)))


def pythae_twin(vae, latent_dim: int):
    """A pythae VAE running ``vae``'s own modules (shared, not copied)."""
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=latent_dim, reconstruction_loss="bce")
    return VAE(config, encoder=SharedEncoder(vae), decoder=SharedDecoder(vae))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(parser, batch_size=128, window=10)
    parser.add_argument("--train-steps", type=int, default=200, help="train genlab's VAE this long before the NLL part")
    parser.add_argument("--k", type=int, default=100, help="importance samples per image, both libraries")
    parser.add_argument("--nll-batch", type=int, default=100, help="pythae get_nll's batch_size (samples per pass)")
    parser.add_argument("--images", type=int, default=16, help="test images per NLL window")
    parser.add_argument("--nll-pairs", type=int, default=3)
    parser.add_argument("--same-layout", action="store_true",
                        help="run pythae's copy NHWC too: the libraries' own work alone, not genlab's preset layout")
    add_compile_arguments(parser, peer=None)  # pythae's trainer has no compile option: its copy stays eager
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    began = start(args.threads)
    ours = GenlabTrainer("vae-binarized-mnist", args.data_root, [
        ("train.batch_size", str(args.batch_size)), ("optim.warmup_steps", "0"), ("objective.kl_warmup_steps", "0")],
        args.device)
    device = ours.device
    cfg, vae = ours.cfg, ours.model
    # The same initial weights, its own parameters and Adam state, in PyTorch's default layout: pythae's
    # trainer keeps it, while genlab's preset trains NHWC (train.channels_last); --same-layout gives it NHWC too.
    theirs_net = copy.deepcopy(vae).to(memory_format=torch.channels_last if args.same_layout
                                       else torch.contiguous_format)
    theirs = pythae_twin(theirs_net, cfg.model.latent_dim)
    evaluated = copy.deepcopy(vae) if args.compile else vae  # the bound's copy: compiled as genlab eval --compile does
    if args.compile:
        ours.compile(args.compile)  # after the copies: pythae's twin stays eager
    params = sum(p.numel() for p in vae.parameters())
    print(f"network: vae-binarized-mnist encoder + decoder, {params / 1e6:.3f}M parameters, batch {args.batch_size}, "
          f"Adam lr {cfg.optim.lr}; layout genlab {'NHWC' if cfg.train.channels_last else 'NCHW'}, pythae "
          f"{'NHWC' if args.same_layout else 'NCHW'}; genlab {f'compiled ({args.compile})' if args.compile else 'eager'}, "
          "pythae eager")
    vae.train(), theirs.train()
    genlab_window, pythae_window = ours.window_pair(args.window, ours.optimizer(theirs.parameters()),
                                                    lambda x: theirs({"data": x}).loss)

    if args.compile:
        compiled = time.perf_counter()
        genlab_window()
        print(f"compilation: genlab's first window of {args.window} steps took {time.perf_counter() - compiled:.1f} s",
              flush=True)
    times = alternate(genlab_window, pythae_window, args.pairs, device_sync(device))
    print("training:", compare(times, "genlab", "pythae", args.window * args.batch_size, "img/s"), flush=True)

    # --- the NLL: train genlab's network a little, give pythae the same weights, estimate the same bound
    ours.steps(1000, args.train_steps)
    theirs_net.load_state_dict(vae.state_dict())
    if args.compile:
        evaluated.load_state_dict(vae.state_dict())
        compile_for_inference(evaluated, args.compile)
    evaluated.eval(), theirs.eval()
    test = load_dataset(cfg.data.name, "test", cfg.data)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
    values = {"genlab": [], "pythae": []}
    window = {"i": 0}
    # get_nll draws batch_size samples when k <= batch_size, else (k // batch_size) * batch_size: exactly k here.
    nll_batch = min(args.k, args.nll_batch)
    if args.k % nll_batch:
        raise SystemExit(f"--k {args.k} must be a multiple of --nll-batch {nll_batch} (pythae rounds k down to one)")
    # genlab's defaults: 256 decoded images per pass on a CPU, 4096 on a GPU
    chunk = max(1, (4096 if device.type == "cuda" else 256) // args.images)

    def images_of(i):
        idx = order[i * args.images:(i + 1) * args.images]
        return test.batch(idx, None)["x"].to(device)

    def genlab_nll():
        x = images_of(window["i"])
        g = torch.Generator(device=device).manual_seed(window["i"])
        values["genlab"] += (-iwae_log_likelihood(evaluated, x, args.k, chunk, g, prior_fraction=0.0)).tolist()

    def pythae_nll():
        x = images_of(window["i"])
        torch.manual_seed(window["i"])
        with torch.no_grad():
            values["pythae"] += [-theirs.get_nll(x[j:j + 1], n_samples=args.k, batch_size=nll_batch)
                                 for j in range(len(x))]
        window["i"] += 1  # the next pair takes new images

    times = alternate(genlab_nll, pythae_nll, args.nll_pairs, device_sync(device))
    ours_v, theirs_v = torch.tensor(values["genlab"]), torch.tensor(values["pythae"])
    diff = theirs_v - ours_v
    print(f"IWAE k={args.k} on {len(ours_v)} test images (after {args.train_steps} training steps): genlab "
          f"{ours_v.mean():.2f} +- {standard_error(ours_v):.2f} nats, pythae get_nll {theirs_v.mean():.2f} +- "
          f"{standard_error(theirs_v):.2f}; paired difference {diff.mean():.3f} +- {standard_error(diff):.3f}")
    print(f"IWAE k={args.k}:", compare(times, "genlab", "pythae", args.images, "images/s"))
    print(f"wall {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    run_script(main, "peers_pythae.py")
