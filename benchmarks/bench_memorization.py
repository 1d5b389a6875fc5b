"""Can the memorization check see copying? A perfect memorizer against a model of new digits, on real MNIST.

    python benchmarks/bench_memorization.py [--data-root DIR] [--train 60000] [--test 5000] [--generated 5000]

On ``dynamic-binarized-mnist``: the "perfect memorizer" outputs fresh Bernoulli(k/255)
binarizations of random training digits; the "new digits" model outputs held-out test
digits (the seed-0 binarization) that are not among the test images the check uses.
Both go through ``genlab.eval.memorization.memorization`` in pixels and in
``mnist-lenet-v1`` features; the script prints the data-copying statistic C_T (Meehan et
al. 2020; < -3 flags copying), the old 1 %-quantile copy fraction (~0.01 for new
images) and the seconds each took. The test and generated sets split the 10,000 test
images, so --test + --generated <= 10000.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="", help="dataset folder (default $GENLAB_DATA, else ~/.cache/genlab/data)")
    parser.add_argument("--train", type=int, default=60000, help="training digits (a random subset below 60000)")
    parser.add_argument("--test", type=int, default=5000, help="test images defining 'new' (default 5000)")
    parser.add_argument("--generated", type=int, default=5000, help="samples of each model (default 5000)")
    parser.add_argument("--pixels-only", action="store_true", help="skip the feature-network space")
    args = parser.parse_args()
    if args.test + args.generated > 10000:
        parser.error("--test + --generated must be at most 10000 (they split the MNIST test set)")

    from genlab.config import DataConfig
    from genlab.data import load_dataset
    from genlab.data.base import ImageSet
    from genlab.eval.features import load_feature_net
    from genlab.eval.memorization import memorization

    cfg = DataConfig(name="dynamic-binarized-mnist", root=args.data_root)
    train = load_dataset("dynamic-binarized-mnist", "train", cfg)
    test = load_dataset("dynamic-binarized-mnist", "test", cfg)
    g = torch.Generator().manual_seed(1)
    keep = torch.randperm(len(train), generator=g)[:args.train]
    train = ImageSet(train.name, "train", train.images[keep], None, train.spec, train.transform, train.note)
    order = torch.randperm(len(test), generator=g)
    test_part = ImageSet(test.name, "test", test.images[order[:args.test]], None, test.spec, test.transform, test.note)
    sources = torch.randint(0, len(train), (args.generated,), generator=g)
    models = {
        "perfect memorizer": torch.bernoulli(train.images[sources].float() / 255, generator=g),
        "new digits": test.images[order[args.test:args.test + args.generated]].float(),
    }
    net = None if args.pixels_only else load_feature_net("mnist-lenet-v1")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(train)} training digits "
          f"(intensities), {args.test} test images, {args.generated} samples per model")
    for name, samples in models.items():
        began = time.perf_counter()
        records = memorization(samples, train, test_part, net)
        seconds = time.perf_counter() - began
        for key, rec in records.items():
            if key.startswith("data_copying_ct_"):
                space = key.removeprefix("data_copying_ct_")
                frac = records[f"copy_fraction_{space}"]["value"]
                print(f"{name:18s} {space:15s} C_T {rec['value']:+8.2f} (copying: {rec['copying']}, "
                      f"{rec['cells_used']}/{rec['cells']} cells)  copy fraction {frac:.4f}")
        print(f"{name:18s} {seconds:.1f} s")


if __name__ == "__main__":
    main()
