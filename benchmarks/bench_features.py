"""Time feature extraction and sample-quality statistics for 10,000 MNIST images on this machine.

    python benchmarks/bench_features.py [--data-root DIR] [--n 10000]

Prints seconds for: loading the feature network (with its sha256 check), extracting
features + logits of n test images, mean/covariance, FID against n train-image
features, KID (100 subsets of 1000), precision/recall (k=3), density/coverage (k=5),
the classifier score, and the nearest-training-neighbour search of n images against
the 60,000 training images in pixels (memorization). Target on 2 CPU cores: features
and statistics (everything but the memorization search) under a minute.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="", help="dataset folder (default $GENLAB_DATA, else ~/.cache/genlab/data)")
    parser.add_argument("--n", type=int, default=10000, help="images on each side (default 10000)")
    parser.add_argument("--skip-memorization", action="store_true", help="skip the 60k nearest-neighbour search")
    args = parser.parse_args()

    from genlab.config import DataConfig
    from genlab.data import load_dataset
    from genlab.eval import sample_metrics as sm
    from genlab.eval.features import extract, load_feature_net
    from genlab.eval.memorization import nearest_neighbours

    cfg = DataConfig(name="mnist", root=args.data_root)
    train, test = load_dataset("mnist", "train", cfg), load_dataset("mnist", "test", cfg)
    n = min(args.n, len(test))
    g = torch.Generator().manual_seed(0)
    real_x = train.batch(torch.randperm(len(train), generator=g)[:n])["x"]
    fake_x = test.batch(torch.arange(n))["x"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; n = {n} images per side")

    timings = {}

    def timed(label, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[label] = time.perf_counter() - t0
        print(f"{label:44s} {timings[label]:7.2f} s")
        return out

    net = timed("load mnist-lenet-v1 (+ sha256 check)", lambda: load_feature_net("mnist-lenet-v1"))
    real = timed(f"features of {n} train images", lambda: extract(net, real_x))
    fake = timed(f"features + logits of {n} test images", lambda: extract(net, fake_x))
    stats = timed("mean and covariance (float64)", lambda: sm.gaussian_stats(fake.features))
    mu_r, sigma_r = sm.gaussian_stats(real.features)
    value = timed("FID from statistics", lambda: sm.frechet_distance(mu_r, sigma_r, *stats))
    kid = timed("KID, 100 subsets of 1000", lambda: sm.kid(real.features, fake.features))
    pr = timed("precision/recall, k=3", lambda: sm.precision_recall(real.features, fake.features))
    dc = timed("density/coverage, k=5", lambda: sm.density_coverage(real.features, fake.features))
    score = timed("classifier score, 10 splits", lambda: sm.classifier_score(fake.logits))
    total = sum(timings.values())
    print(f"{'total: features + statistics':44s} {total:7.2f} s")
    print(f"FID(test vs train) = {value:.3f}, KID = {kid[0]:.5f} ± {kid[1]:.5f}, precision/recall = "
          f"{pr[0]:.3f}/{pr[1]:.3f}, density/coverage = {dc[0]:.3f}/{dc[1]:.3f}, score = {score[0]:.3f}")
    if not args.skip_memorization:
        all_train = train.batch(torch.arange(len(train)))["x"]
        d, _ = timed(f"nearest of {len(train)} train images, pixels", lambda: nearest_neighbours(fake_x, all_train))
        print(f"median nearest-train pixel distance of test images: {d.median():.3f}")


if __name__ == "__main__":
    main()
