"""Throughput of the likelihood evaluators against what this machine's matrix unit can do.

For the IWAE bound of a VAE: importance samples per second (one sample = one decoder
pass of one image plus its log-weight); for the exact NLL of an autoregressive model:
test images per second. Each is converted to achieved FLOP/s with the network's
forward-pass FLOPs (counted by torch.utils.flop_counter, 2 per multiply-add) and
divided by the rate of a large torch.mm measured here, in the same process, with the
same number of threads. A ratio near 1 means the evaluator runs as fast as dense
matrix products allow; convolutions on few channels usually reach less.

    python benchmarks/bench_eval.py [--device cpu] [--iwae-k 100] [--images 256] [--repeats 3]
    python benchmarks/bench_eval.py --iwae-decodes 4096 --batch-size 256   # the sizes genlab eval used before

Weights are random (throughput does not depend on them); the sizes are the presets'.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import genlab  # noqa: F401  (fills the registries)
from genlab.config import RunConfig, apply_overrides
from genlab.configs import PRESETS
from genlab.eval.latent import iwae_log_likelihood
from genlab.eval.options import EvalOptions, resolve_device_sizes
from genlab.nn.spec import DataSpec
from genlab.train.run import build_model, build_objective

from side_by_side import device_sync

BINARY_MNIST = DataSpec(1, 28, 28, bits=1)


def best_seconds(fn, device, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls, after one untimed warm-up call."""
    fn()
    times, sync = [], device_sync(device)
    for _ in range(repeats):
        sync()
        began = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - began)
    return min(times)


def matmul_flops_per_s(device, n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of an (n x n) @ (n x n) float32 product: 2 n^3 FLOPs per call."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / best_seconds(lambda: torch.mm(a, b), device, repeats)


def forward_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def preset_model(name: str, device):
    values = dict(PRESETS.get(name)())
    model_name = values.pop("model")
    cfg = RunConfig.create(model_name, values.pop("objective", None))
    apply_overrides(cfg, [f"{k}={v}" for k, v in values.items()])
    torch.manual_seed(0)
    return build_model(cfg, BINARY_MNIST).to(device).eval(), build_objective(cfg, BINARY_MNIST)


def binary_images(n: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 28, 28, generator=g) < 0.15).float().to(device)


def bench_iwae(device, k: int, images: int, batch: int, decodes: int, repeats: int) -> tuple[str, float]:
    """Importance samples per second of the IWAE bound, batched as `genlab eval` batches it."""
    model, _ = preset_model("vae-binarized-mnist", device)
    x = binary_images(images, device)
    chunk = max(1, decodes // min(batch, images))
    per_sample = forward_flops(lambda: model.decode(torch.zeros(1, model.cfg.latent_dim, device=device)))
    g = torch.Generator(device=device)

    def run():
        g.manual_seed(0)
        for i in range(0, images, batch):
            iwae_log_likelihood(model, x[i:i + batch], k, chunk, g)

    seconds = best_seconds(run, device, repeats)
    rate = images * k / seconds
    return (f"IWAE bound, vae-binarized-mnist: {images} images x k={k}, {batch} images per batch, {chunk} samples "
            f"per decoder pass: {seconds:.2f} s\n  {rate:,.0f} importance samples/s x {per_sample / 1e6:.2f} MFLOP "
            f"per decoder pass = {rate * per_sample / 1e9:.2f} GFLOP/s"), rate * per_sample


def bench_exact(device, preset: str, images: int, batch: int, repeats: int) -> tuple[str, float]:
    """Test images per second of the exact NLL."""
    model, objective = preset_model(preset, device)
    x = binary_images(images, device)
    batches = [{"x": x[i:i + batch]} for i in range(0, images, batch)]
    per_image = forward_flops(lambda: objective(model, {"x": x[:1]}, "eval", 0))

    def run():
        with torch.inference_mode():
            for b in batches:
                objective(model, b, "eval", 0)

    seconds = best_seconds(run, device, repeats)
    rate = images / seconds
    return (f"exact NLL, {preset}: {images} images in batches of {batch}: {seconds:.2f} s\n"
            f"  {rate:,.1f} images/s x {per_image / 1e6:.1f} MFLOP per image = {rate * per_image / 1e9:.2f} GFLOP/s"), \
        rate * per_image


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iwae-k", type=int, default=100)
    parser.add_argument("--images", type=int, default=256, help="test images per timed call")
    parser.add_argument("--iwae-decodes", type=int, default=None,
                        help="images per decoder pass in the IWAE bound (default: genlab eval's for the device)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per forward pass of the exact NLL (default: genlab eval's for the device)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = resolve_device_sizes(EvalOptions(batch_size=args.batch_size, iwae_decodes=args.iwae_decodes), device)
    # On a shared machine the rate varies: the hardware rate is the best one seen, before or after.
    first = matmul_flops_per_s(device)
    rows = [bench_iwae(device, args.iwae_k, args.images, sizes.batch_size, sizes.iwae_decodes, args.repeats)]
    for preset in ("gated-pixelcnn-binarized-mnist", "pixelcnn-binarized-mnist"):
        rows.append(bench_exact(device, preset, args.images, sizes.batch_size, args.repeats))
    peak = max(first, matmul_flops_per_s(device))
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; torch.mm 1024x1024 "
          f"float32: {first / 1e9:.1f} GFLOP/s before, best {peak / 1e9:.1f} GFLOP/s (the hardware rate below)")
    for text, achieved in rows:
        print(f"{text}; measured/hardware = {achieved / peak:.3f}")

if __name__ == "__main__":
    main()
