"""Does a model copy its training images? Nearest-training-neighbour distances of
generated samples, judged against those of held-out test images.

For each generated sample and each test image we find the nearest training image, in
pixels (Euclidean on the [0, 1] scale) and in a feature network's space. Test images are
what "new images from the data distribution" look like: if a model generalizes, its
samples are no closer to the training set than test images are.

The training images are what the model could copy. For a dynamically binarized set
(transform "bernoulli") that is the intensity image k/255, the mean of every
binarization the model trained on: a model that outputs fresh binarizations of a
training digit copies it, yet is no closer to any one fixed binarization of the training
set than a test image is. So samples and (binary) test images are compared with the
intensities.

The verdict is the data-copying test of Meehan, Chaudhuri & Dasgupta 2020, "A
Non-Parametric Test to Detect Data-Copying in Generative Models" (arXiv:2004.05675):
the training set is partitioned into cells by k-means; in each cell the nearest-train
distances (to the training images of that cell) of the samples and of the test images
are compared by a Mann-Whitney U test, z-scored under the null hypothesis that both
come from one distribution; C_T is the average of the cells' z-scores weighted by their
share of test images, over cells holding at least ``MIN_CELL_SAMPLES`` samples. C_T
much below 0 means samples are closer to the training set than new data is (copying;
we flag C_T < ``COPYING_Z``), much above 0 that they are farther (underfitting). Unlike
the paper's code the variance of U is corrected for ties, which discrete (binary-pixel)
distances make common.

Also reported, as before: the fraction of samples closer to a training image than the
1st percentile of the test images' nearest-train distances (about 0.01 for a model that
does not copy), the medians of both distance distributions, and a figure of the samples
nearest to the training set with their nearest neighbours.

Nearest-neighbour search is chunked over both sets (``torch.cdist`` on blocks of
``QUERY_CHUNK`` x ``REFERENCE_CHUNK``), so 10k samples x 60k training images runs in a
few tens of MB whatever the set sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from genlab.config import DataConfig
from genlab.data import load_dataset
from genlab.data.base import ImageSet, scale
from genlab.errors import InputError
from genlab.eval.features import FeatureNet, domain_feature_net, extract
from genlab.eval.metric import metric
from genlab.eval.sample_metrics import model_samples
from genlab.registry import EVALUATORS
from genlab.rng import random_subset

QUERY_CHUNK = 1024
REFERENCE_CHUNK = 8192  # a block of distances is QUERY_CHUNK x REFERENCE_CHUNK float32 = 32 MiB
PERCENTILE = 0.01
CELLS = 50  # k-means cells of the training set (Meehan et al. use tens of cells on MNIST)
MIN_CELL_SAMPLES = 20  # a cell's U test counts only with this many samples in it (their tau = 20 / m)
COPYING_Z = -3.0  # C_T below this flags data copying


@torch.no_grad()
def nearest_neighbours(query: torch.Tensor, reference: torch.Tensor, query_chunk: int = QUERY_CHUNK,
                       reference_chunk: int = REFERENCE_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance to, and index of, the nearest reference row of every query row.

    Args:
        query: (N, ...) flattened to (N, D).
        reference: (M, ...) flattened to (M, D).
    Returns:
        (distances (N,) float32, indices (N,) int64). Ties go to the lowest index.
    """
    q = query.reshape(len(query), -1).float()
    r = reference.reshape(len(reference), -1).float()
    if q.shape[1] != r.shape[1]:
        raise InputError(f"query and reference have different sizes per row: {q.shape[1]} vs {r.shape[1]}")
    if len(r) == 0:
        raise InputError("the reference set is empty")
    best_d = torch.full((len(q),), float("inf"))
    best_i = torch.zeros(len(q), dtype=torch.int64)
    for qs in range(0, len(q), query_chunk):
        qc = q[qs:qs + query_chunk]
        d_best = torch.full((len(qc),), float("inf"))
        i_best = torch.zeros(len(qc), dtype=torch.int64)
        for rs in range(0, len(r), reference_chunk):
            d, i = torch.cdist(qc, r[rs:rs + reference_chunk]).min(1)  # (chunk,)
            better = d < d_best  # strict: an earlier block keeps ties
            d_best = torch.where(better, d, d_best)
            i_best = torch.where(better, i + rs, i_best)
        best_d[qs:qs + len(qc)] = d_best
        best_i[qs:qs + len(qc)] = i_best
    return best_d, best_i


def _images(data: ImageSet, n: int | None, seed: int) -> torch.Tensor:
    """Float images of a split (a seeded subset when n < len); a seeded binarization if dynamic."""
    data = data.to("cpu")
    if n is None or n >= len(data):
        index = torch.arange(len(data))
    else:
        index = random_subset(len(data), n, seed)
    return data.batch(index, generator=torch.Generator().manual_seed(seed))["x"].cpu()


def copy_targets(train: ImageSet, seed: int) -> torch.Tensor:
    """The training images a model could copy, (N, C, H, W) in [0, 1]: the intensities k/255
    of a dynamically binarized set (the mean of all its binarizations), else the images as seen."""
    if train.transform == "bernoulli":
        return scale(train.images.cpu())
    return _images(train, None, seed)


def mann_whitney_z(test_d: np.ndarray, sample_d: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of samples against test values under H0 (one distribution).

    U counts the pairs (sample, test) where the sample's value is the larger (ties count
    1/2); its null mean is n m / 2 and its variance n m / 12 ((N + 1) - sum(t^3 - t) / (N (N - 1)))
    with t the sizes of groups of tied values and N = n + m. Negative: samples tend to be
    smaller. 0 when every value is tied.
    """
    n, m = len(test_d), len(sample_d)
    ranks = rankdata(np.concatenate([sample_d, test_d]))  # mid-ranks for ties
    u = ranks[:m].sum() - m * (m + 1) / 2
    total = n + m
    _, ties = np.unique(np.concatenate([sample_d, test_d]), return_counts=True)
    tie_term = (ties.astype(np.float64) ** 3 - ties).sum() / (total * (total - 1)) if total > 1 else 0.0
    var = n * m / 12 * ((total + 1) - tie_term)
    return float((u - n * m / 2) / np.sqrt(var)) if var > 0 else 0.0


def data_copying_test(train: torch.Tensor, test: torch.Tensor, samples: torch.Tensor, cells: int = CELLS,
                      seed: int = 0, min_cell_samples: int = MIN_CELL_SAMPLES) -> dict:
    """The C_T statistic of Meehan et al. 2020 for row vectors (flattened) of three sets.

    Args:
        train: (L, ...) what the model was trained on (the copy targets).
        test: (n, ...) held-out data, the model of "not copied".
        samples: (m, ...) generated data.
        cells: k-means cells of ``train`` (fewer when the sets are small: a cell holds
            3 x ``min_cell_samples`` test and generated points on average).
        seed: k-means initialisation.
    Returns:
        dict(ct, cells (k), cells_used, z (per cell, NaN where unused), weights (test share)).
    """
    from sklearn.cluster import KMeans

    tr, te, sa = (x.reshape(len(x), -1).float().numpy() for x in (train, test, samples))
    # About 3 x min_cell_samples points per cell on average, so most cells have enough to count.
    k = max(1, min(cells, len(te) // (3 * min_cell_samples), len(sa) // (3 * min_cell_samples), len(tr)))
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(tr)
    tr_c, te_c, sa_c = km.labels_, km.predict(te), km.predict(sa)
    z = np.full(k, np.nan)
    weights = np.bincount(te_c, minlength=k) / len(te)
    for c in range(k):
        t_in, s_in, r_in = te_c == c, sa_c == c, tr_c == c
        if s_in.sum() < min_cell_samples or t_in.sum() == 0 or r_in.sum() == 0:
            continue  # too few samples for the normal approximation; no test share to weigh it
        ref = torch.from_numpy(tr[r_in])
        t_d = nearest_neighbours(torch.from_numpy(te[t_in]), ref)[0].double().numpy()
        s_d = nearest_neighbours(torch.from_numpy(sa[s_in]), ref)[0].double().numpy()
        z[c] = mann_whitney_z(t_d, s_d)
    used = ~np.isnan(z)
    ct = float((weights[used] * z[used]).sum() / weights[used].sum()) if used.any() else float("nan")
    return {"ct": ct, "cells": k, "cells_used": int(used.sum()), "z": z.tolist(), "weights": weights.tolist()}


def copy_statistics(sample_d: torch.Tensor, test_d: torch.Tensor, q: float = PERCENTILE) -> dict:
    """Compare nearest-train distances of samples with those of test images.

    Returns:
        threshold (the q-quantile of test distances), fraction of samples strictly below
        it, and the median distance of each set.
    """
    threshold = torch.quantile(test_d.double(), q).item()
    return {
        "threshold": threshold,
        "fraction_below": (sample_d.double() < threshold).double().mean().item(),
        "median_samples": sample_d.double().median().item(),
        "median_test": test_d.double().median().item(),
    }


def memorization(samples: torch.Tensor, train: ImageSet, test: ImageSet, net: FeatureNet | None = None,
                 n_test: int | None = None, seed: int = 0, figure: str | Path | None = None,
                 figure_count: int = 12, samples_note: str = "", cells: int = CELLS) -> dict:
    """Memorization records for generated samples (M, C, H, W) in [0, 1].

    Args:
        samples: generated images.
        train: the training split the model saw.
        test: held-out images defining what "not copied" looks like.
        net: feature network for the feature-space check (None: pixels only).
        n_test: test images to use (None: all).
        seed: seed of test subsets and of any binarization of dynamic data.
        figure: PNG path of the figure of samples and their nearest training images.
        figure_count: how many samples the figure shows (the closest to the training set).
        samples_note: how the samples were drawn, for the protocol.
        cells: k-means cells of the data-copying test.
    Returns:
        ``metric`` records per space (pixels, and the network's): ``data_copying_ct_*``
        (Meehan et al.'s C_T, flagged ``copying`` below ``COPYING_Z``), ``copy_fraction_*``,
        ``nn_train_median_*`` and ``nn_train_median_test_*``.
    """
    if samples.shape[1:] != train.images.shape[1:]:
        raise InputError(f"samples are {tuple(samples.shape[1:])} but training images are {tuple(train.images.shape[1:])}")
    train_x = copy_targets(train, seed)
    test_x = _images(test, n_test, seed)
    samples = samples.float().cpu()
    spaces = {"pixels": (samples, test_x, train_x)}
    if net is not None:
        spaces[net.name] = tuple(extract(net, x).features for x in (samples, test_x, train_x))
    what = " intensities k/255 (the mean of its binarizations)" if train.transform == "bernoulli" else ""
    proto = (f"nearest {train.name}/{train.split} image{what} ({len(train_x)}) of {len(samples)} generated samples"
             f"{' (' + samples_note + ')' if samples_note else ''} vs of {len(test_x)} {test.name}/{test.split} images")
    records, neighbours = {}, {}
    for space, (s, t, tr) in spaces.items():
        s_d, s_i = nearest_neighbours(s, tr)
        t_d, _ = nearest_neighbours(t, tr)
        neighbours[space] = (s_d, s_i)
        stats = copy_statistics(s_d, t_d)
        unit = "L2, [0,1] pixels" if space == "pixels" else f"L2 in {space} features"
        where = "Euclidean in pixel space" if space == "pixels" else f"Euclidean in {net.description}"
        common = dict(space=space, n_generated=len(samples), n_test=len(test_x), n_train=len(train_x), seed=seed)
        test_result = data_copying_test(tr, t, s, cells, seed)
        records[f"data_copying_ct_{space}"] = metric(
            test_result["ct"], "z", "estimate",
            f"data-copying test C_T (Meehan et al. 2020): Mann-Whitney z of samples' vs test images' nearest-train "
            f"distances ({where}) in {test_result['cells_used']} of {test_result['cells']} k-means cells of the "
            f"training set (cells with >= {MIN_CELL_SAMPLES} samples; tie-corrected), averaged with the cells' "
            f"test shares; ~0 for new data, < {COPYING_Z:g} flags copying, > 0 underfitting; {proto}",
            copying=bool(test_result["ct"] < COPYING_Z), cells=test_result["cells"],
            cells_used=test_result["cells_used"], **common)
        records[f"copy_fraction_{space}"] = metric(
            stats["fraction_below"], "fraction", "estimate",
            f"fraction of samples closer to a training image than the {PERCENTILE:.0%} quantile "
            f"({stats['threshold']:.4g}) of test images' nearest-train distances ({where}); ~{PERCENTILE} when "
            f"samples are as novel as test images; {proto}", threshold=stats["threshold"], **common)
        records[f"nn_train_median_{space}"] = metric(
            stats["median_samples"], unit, "estimate", f"median nearest-train distance of samples ({where}); {proto}",
            test_median=stats["median_test"], **common)
        records[f"nn_train_median_test_{space}"] = metric(
            stats["median_test"], unit, "estimate",
            f"median nearest-train distance of held-out test images ({where}); {proto}", **common)
    if figure is not None:
        neighbour_figure(samples, train_x, neighbours, figure, figure_count)
    return records


def neighbour_figure(samples: torch.Tensor, train_x: torch.Tensor, neighbours: dict, path: str | Path,
                     count: int = 12) -> Path:
    """PNG: the ``count`` samples closest to the training set (in pixels), one per column,
    above their nearest training image in each space (with the distance)."""
    # matplotlib's Figure without pyplot: the user's backend is left alone (imported here: matplotlib is slow)
    from matplotlib.figure import Figure

    pixel_d, _ = neighbours["pixels"]
    order = pixel_d.argsort()[:count].tolist()
    rows = [("sample", None)] + [(space, nb) for space, nb in neighbours.items()]
    fig = Figure(figsize=(1.1 * len(order) + 0.8, 1.25 * len(rows)))
    axes = fig.subplots(len(rows), len(order), squeeze=False)
    for c, j in enumerate(order):
        for r, (space, nb) in enumerate(rows):
            ax = axes[r][c]
            img = samples[j] if nb is None else train_x[nb[1][j]]
            ax.imshow(_to_hwc(img), cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if nb is not None:
                ax.set_title(f"{nb[0][j]:.2f}", fontsize=7)
            if c == 0:
                ax.set_ylabel("sample" if nb is None else f"NN {space}", fontsize=7)
    fig.suptitle("samples closest to the training set and their nearest training images (distance above)", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return Path(path)


def _to_hwc(img: torch.Tensor):
    img = img.clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


@EVALUATORS.register("memorization")
@torch.no_grad()
def evaluate_memorization(model, objective, test: ImageSet, device, opts) -> dict[str, dict]:
    """Nearest-training-neighbour check of ``opts.n_samples`` (10000) model samples.

    Loads the train split of ``test``'s dataset with ``opts.data`` (a ``DataConfig``;
    default: the standard data root), compares in pixels and, when the dataset has one,
    in its feature network, and writes ``opts.figure_dir/memorization.png`` when
    ``opts.figure_dir`` is set.
    """
    seed = int(getattr(opts, "seed", 0))
    train = load_dataset(test.name, "train", getattr(opts, "data", None) or DataConfig(name=test.name))
    net = domain_feature_net(test.name, opts, device)
    samples, _, note = model_samples(model, device, opts)
    figure_dir = getattr(opts, "figure_dir", None)
    return memorization(samples, train, test, net, seed=seed, samples_note=note,
                        figure=Path(figure_dir) / "memorization.png" if figure_dir else None)
