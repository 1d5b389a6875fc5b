"""genlab's FID and KID against torch-fidelity's, from the same features: the numbers must agree; time compared.

    pip install --no-deps torch-fidelity     # its torchvision requirement cannot install beside the CPU torch here
    python benchmarks/peers_fidelity.py [--data mnist] [--n 10000] [--fake train|RUN_DIR] [--pairs 5]

Features: the dataset's domain feature network (`mnist-lenet-v1` for MNIST, the one genlab's sample-quality
protocol uses), of ``--n`` real test images and as many "fake" images: training images by default (a second
sample of the same distribution, so FID is small but not 0), or samples of a run (``--fake RUN_DIR``: its
default sampler, seed 0). Both libraries get the same float64 feature arrays, so any difference is in the
formulas, not in the features.

torch-fidelity computes its metrics from feature arrays in `torch_fidelity.metric_fid`
(`fid_features_to_statistics`, `fid_statistics_to_metric`) and `torch_fidelity.metric_kid`
(`kid_features_to_metric`), with numpy only; but importing the package imports torchvision (its dataset
and feature-extractor modules), which does not import beside the local CPU build of torch. Where
torchvision cannot be imported, this script puts an empty stand-in module in its place for the import
(`torchvision_standin.py`: nothing on this path calls into it) and says so; a working torchvision is used as it is.

What it checks and prints:
- FID of the same features: genlab's (the covariance square root by symmetric eigendecompositions) and
  torch-fidelity's (the eigenvalues of the product of the covariances); they must agree to 1e-6 relative.
- KID over one "subset" of all n features: both then compute the full unbiased MMD^2 with the cubic kernel
  (x.y / D + 1)^3, which no random draw changes; they must agree to 1e-9 relative.
- KID with the usual 100 subsets of 1,000 (both libraries' defaults): each draws its own subsets, so the
  means agree within the spread of the subsets (the script prints the difference in standard errors).
- Time: each metric computed from the features, alternating windows (peer time / genlab time; above 1
  genlab is faster).
"""

from __future__ import annotations

import argparse
import importlib
import math
import time

import torch

import genlab  # noqa: F401
from genlab.config import DataConfig
from genlab.data import load_dataset
from genlab.eval.features import domain_feature_net, extract
from genlab.eval.sample_metrics import KID_SUBSET_SIZE, KID_SUBSETS, fid, kid, reference_images

from side_by_side import alternate, compare, start
from torchvision_standin import import_peer
from runs_common import run_script


def fake_images(source: str, data: str, n: int, data_root: str | None) -> tuple[torch.Tensor, str]:
    """The images compared with the test set, float in [0, 1]: training images, or a run's samples."""
    if source == "train":
        images, _, seed = reference_images(load_dataset(data, "train", DataConfig(name=data, root=data_root or "")), n,
                                           seed=1)
        return images, f"{len(images)} {data} training images ({'all' if seed < 0 else f'random, seed {seed}'})"
    run = genlab.load(source, device="cpu", data_root=data_root)
    return run.sample(n, seed=0), f"{n} samples of {source} (its default sampler, seed 0)"


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--n", type=int, default=10000, help="real and fake images each")
    parser.add_argument("--fake", default="train", help="'train' (training images) or a run folder to sample")
    parser.add_argument("--full-kid-n", type=int, default=2000,
                        help="features per side for the one-subset KID check (its kernel matrices are n x n)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch's and numpy's BLAS threads (default: theirs)")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    began = start(args.threads)
    if args.threads:  # numpy's BLAS (torch-fidelity's) too, not only torch's threads
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    (metric_fid, metric_kid), how = import_peer("torch_fidelity", ["torch_fidelity.metric_fid", "torch_fidelity.metric_kid"],
                                                "pip install --no-deps torch-fidelity")
    print(f"torch-fidelity {importlib.import_module('torch_fidelity').__version__}: {how}")

    net = domain_feature_net(args.data, None)
    if net is None:
        raise SystemExit(f"{args.data} has no domain feature network: use mnist or fashion-mnist")
    test = load_dataset(args.data, "test", DataConfig(name=args.data, root=args.data_root or ""))
    real_images, _, seed = reference_images(test, args.n, seed=0)  # as genlab's sample-quality protocol draws them
    fake, what = fake_images(args.fake, args.data, args.n, args.data_root)
    extracted = time.perf_counter()
    real = extract(net, real_images).features.double()
    fake = extract(net, fake).features.double()
    drawn = "all, in file order" if seed < 0 else f"random, seed {seed}"
    print(f"features: {net.name}, {real.shape[1]} dimensions; {len(real)} {args.data} test images ({drawn}) against "
          f"{what}; extracted in {time.perf_counter() - extracted:.1f} s")

    def peer_fid() -> float:
        stats = [metric_fid.fid_features_to_statistics(f) for f in (real, fake)]
        return metric_fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]

    def peer_kid(a, b, subsets: int, size: int) -> tuple[float, float]:
        out = metric_kid.kid_features_to_metric(a, b, kid_subsets=subsets, kid_subset_size=size, verbose=False,
                                                rng_seed=2020)
        return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]

    ours, theirs = fid(real, fake), peer_fid()
    print(f"FID: genlab {ours:.9g}, torch-fidelity {theirs:.9g}, relative difference {relative(ours, theirs):.1e} "
          f"({'agree' if relative(ours, theirs) < 1e-6 else 'DISAGREE'} at 1e-6)")

    m = min(args.full_kid_n, len(real), len(fake))
    ours_full = kid(real[:m], fake[:m], subsets=1, subset_size=m)[0]
    theirs_full = peer_kid(real[:m], fake[:m], 1, m)[0]
    print(f"KID, one subset of all {m} (the full unbiased MMD^2): genlab {ours_full:.9g}, torch-fidelity "
          f"{theirs_full:.9g}, relative difference {relative(ours_full, theirs_full):.1e} "
          f"({'agree' if relative(ours_full, theirs_full) < 1e-9 else 'DISAGREE'} at 1e-9)")

    size = min(KID_SUBSET_SIZE, len(real), len(fake))
    (ours_mean, ours_std), (theirs_mean, theirs_std) = (kid(real, fake, KID_SUBSETS, size),
                                                        peer_kid(real, fake, KID_SUBSETS, size))
    se = math.hypot(ours_std, theirs_std) / math.sqrt(KID_SUBSETS)
    print(f"KID, {KID_SUBSETS} subsets of {size}: genlab {ours_mean:.6f} +- {ours_std:.6f}, torch-fidelity "
          f"{theirs_mean:.6f} +- {theirs_std:.6f} (spread over subsets); difference "
          f"{(ours_mean - theirs_mean) / se:+.2f} standard errors (each draws its own subsets)")

    print("time from the features, genlab first:")
    times = alternate(lambda: fid(real, fake), peer_fid, args.pairs)
    print("  FID: " + compare(times, "genlab", "torch-fidelity", 1, "computations/s"))
    times = alternate(lambda: kid(real, fake, KID_SUBSETS, size), lambda: peer_kid(real, fake, KID_SUBSETS, size),
                      args.pairs)
    print(f"  KID ({KID_SUBSETS} x {size}): " + compare(times, "genlab", "torch-fidelity", 1, "computations/s"))
    print(f"wall {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    run_script(main, "peers_fidelity.py")
