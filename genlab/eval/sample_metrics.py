"""Sample-quality metrics on feature arrays, reference statistics, and the
``sample-quality`` evaluator.

Every metric is a function on feature arrays (torch tensors or numpy arrays, (N, D)):

* ``frechet_distance`` / ``fid``: Heusel et al. 2017, "GANs Trained by a Two Time-Scale
  Update Rule Converge to a Local Nash Equilibrium" (arXiv:1706.08500);
* ``kid``: Bińkowski et al. 2018, "Demystifying MMD GANs" (arXiv:1801.01401): the
  unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged
  over random subsets (torchmetrics' ``poly_mmd`` computes each subset's estimate);
* ``precision_recall``: Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
  for Assessing Generative Models" (arXiv:1904.06991), k = 3 as in the paper;
* ``density_coverage``: Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
  Generative Models" (arXiv:2002.09797), k = 5 as in the paper;
* ``classifier_score``: the Inception Score of Salimans et al. 2016 (arXiv:1606.03498)
  computed with the domain classifier instead of Inception-v3, and ``label_accuracy``,
  that classifier's accuracy on samples of a class-conditional model.

``sample_quality`` extracts features from images and returns ``metric`` records whose
protocol names the feature network and its weights, the reference (dataset, split,
number of images, subset seed), the number of generated samples, k and the seed.
Reference features and statistics are cached per (dataset, split, feature network and
weights, n, seed, image content) under ``~/.cache/genlab/reference-stats`` (or
``$GENLAB_CACHE/reference-stats``, or a given folder), keyed by a sha256 of all of these.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genlab.card import conditioning
from genlab.config import DataConfig
from genlab.data import load_dataset
from genlab.data.base import ImageSet, images_sha256
from genlab.data.download import cache_home
from genlab.errors import InputError
from genlab.eval.features import FeatureNet, FeatureNetError, domain_feature_net, extract, load_inception
from genlab.eval.metric import metric
from genlab.registry import EVALUATORS, SAMPLER_OPTIONS
from genlab.rng import make_generators, random_subset
from genlab.sampling.api import sampler_of

PR_K = 3  # Kynkäänniemi et al. 2019, Sec. 3 and all their experiments
DC_K = 5  # Naeem et al. 2020, Sec. 4 (their recommended default)
KID_SUBSETS = 100  # Bińkowski et al. 2018; also the StyleGAN/torch-fidelity default
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10  # Salimans et al. 2016
DISTANCE_CHUNK = 1000  # query rows per torch.cdist call: memory ~ DISTANCE_CHUNK * N floats


def _as_f64(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.detach().to("cpu", torch.float64)


def _check_pair(real: torch.Tensor, fake: torch.Tensor, min_n: int = 2) -> None:
    if real.dim() != 2 or fake.dim() != 2:
        raise InputError(f"features must be 2-D (N, D); got shapes {tuple(real.shape)} and {tuple(fake.shape)}")
    if real.shape[1] != fake.shape[1]:
        raise InputError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]} (same network for both?)")
    if len(real) < min_n or len(fake) < min_n:
        raise InputError(f"need at least {min_n} real and {min_n} generated feature vectors, "
                         f"got {len(real)} and {len(fake)}")


# ----------------------------------------------------------------------------------------------
# FID


def gaussian_stats(features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    f = _as_f64(features)
    if f.dim() != 2 or len(f) < 2:
        raise InputError(f"need features (N >= 2, D), got shape {tuple(f.shape)}")
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a PSD matrix; tiny negative eigenvalues (round-off) become 0."""
    evals, evecs = torch.linalg.eigh(sigma)
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2):

        ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

    tr((S1 S2)^(1/2)) is computed as tr((S1^(1/2) S2 S1^(1/2))^(1/2)): the two matrices
    are similar, and the second is symmetric PSD, so a symmetric eigendecomposition is
    exact and stable even when the covariances are singular (fewer samples than
    dimensions, dead ReLU units), where sqrtm of the non-symmetric product is not.
    """
    mu1, mu2, s1, s2 = (_as_f64(a) for a in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise InputError(f"mismatched statistics: means {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
                         f"covariances {tuple(s1.shape)}, {tuple(s2.shape)}")
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    inner = (inner + inner.T) / 2  # symmetric up to round-off; make it exactly so for eigvalsh
    tr_cross = torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * tr_cross
    return float(value.clamp_min(0))


def fid(real, fake) -> float:
    """FID between two feature sets (N1, D) and (N2, D)."""
    real, fake = _as_f64(real), _as_f64(fake)
    _check_pair(real, fake)
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


# ----------------------------------------------------------------------------------------------
# KID


def kid(real, fake, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and standard deviation over random subsets.

    Each subset estimate is the unbiased MMD^2 (U-statistic) between ``subset_size``
    real and as many generated features, drawn without replacement with a generator
    seeded ``seed``; the kernel is (x.y / D + 1)^3. The mean over subsets is an
    unbiased estimate of MMD^2 at any subset size (so it can be slightly negative).

    Returns:
        (mean, std over subsets); ``subset_size`` is capped at the smaller set's size.
    """
    real, fake = _as_f64(real), _as_f64(fake)
    _check_pair(real, fake)
    if subsets < 1:
        raise InputError("kid needs subsets >= 1")
    from torchmetrics.image.kid import poly_mmd  # imported here: torchmetrics pulls in scipy.signal (about 1 s)

    m = min(subset_size, len(real), len(fake))
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        r = real[torch.randperm(len(real), generator=gen)[:m]]
        f = fake[torch.randperm(len(fake), generator=gen)[:m]]
        values.append(float(poly_mmd(r, f, degree=3, gamma=None, coef=1.0)))
    v = torch.tensor(values, dtype=torch.float64)
    # A spread over subsets (n denominator, as the reference code's np.std), not a standard error.
    return float(v.mean()), float(v.std(unbiased=False)) if len(v) > 1 else 0.0


# ----------------------------------------------------------------------------------------------
# k-NN based: precision / recall, density / coverage


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, chunk: int | None = None):
    """Yield (start, distances (rows, len(b))) for chunks of ``chunk`` (default
    ``DISTANCE_CHUNK``) rows of ``a``; Euclidean, float32."""
    chunk = chunk or DISTANCE_CHUNK
    a = a.to(torch.float32)
    b = b.to(torch.float32)
    for start in range(0, len(a), chunk):
        yield start, torch.cdist(a[start:start + chunk], b)


def knn_radii(features, k: int, chunk: int | None = None) -> torch.Tensor:
    """Distance from each row to its k-th nearest *other* row, (N,).

    The (k+1)-th smallest distance including the point itself (at distance 0) is the
    k-th excluding it, also when exact duplicates exist.
    """
    f = _as_f64(features)
    if k < 1 or k >= len(f):
        raise InputError(f"k={k} nearest neighbours need at least k + 1 = {k + 1} feature vectors, got {len(f)}")
    out = torch.empty(len(f), dtype=torch.float32)
    for start, d in pairwise_distances(f, f, chunk):
        out[start:start + len(d)] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def _count_in_balls(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, closed: bool,
                    chunk: int | None = None) -> torch.Tensor:
    """For each point, how many balls B(centre_j, radius_j) contain it, (N_points,).

    ``closed``: the ball includes its boundary (d <= r, Kynkäänniemi et al.'s reference
    code) or not (d < r, Naeem et al.'s). The two differ only on ties, which duplicates
    and collapsed samples make common: a sample on top of duplicated real points lies on
    the boundary of their radius-0 balls.
    """
    counts = torch.empty(len(points), dtype=torch.int64)
    for start, d in pairwise_distances(points, centres, chunk):
        inside = d <= radii[None, :] if closed else d < radii[None, :]
        counts[start:start + len(d)] = inside.sum(1)
    return counts


def precision_recall(real, fake, k: int = PR_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    The real manifold is the union of balls around each real feature with radius the
    distance to its k-th nearest real neighbour; precision is the fraction of generated
    features inside it. Recall swaps the roles: the fraction of real features inside the
    generated manifold (balls around generated features, k-th nearest generated neighbour).
    """
    real, fake = _as_f64(real), _as_f64(fake)
    _check_pair(real, fake, min_n=k + 1)
    precision = (_count_in_balls(fake, real, knn_radii(real, k), closed=True) > 0).double().mean()
    recall = (_count_in_balls(real, fake, knn_radii(fake, k), closed=True) > 0).double().mean()
    return float(precision), float(recall)


def density_coverage(real, fake, k: int = DC_K) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), with X real (N) and Y generated (M):

        density  = 1 / (k M) * sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]
        coverage = 1 / N * sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]

    NND_k(X_i) is the distance from X_i to its k-th nearest other real feature. The balls
    are open (``<``, as in the authors' reference code ``prdc``), so a real point whose k
    nearest neighbours are its own duplicates has an empty ball. Density can exceed 1
    (samples crowding where real data is dense); coverage is in [0, 1].
    """
    real, fake = _as_f64(real), _as_f64(fake)
    _check_pair(real, fake, min_n=2)
    radii = knn_radii(real, k)
    density = _count_in_balls(fake, real, radii, closed=False).double().sum() / (k * len(fake))
    # Coverage: is the nearest generated feature of each real one inside its ball?
    nearest = torch.empty(len(real), dtype=torch.float32)
    for start, d in pairwise_distances(real, fake):
        nearest[start:start + len(d)] = d.min(1).values
    coverage = (nearest < radii).double().mean()
    return float(density), float(coverage)


# ----------------------------------------------------------------------------------------------
# Classifier-based


def classifier_score(logits, splits: int = IS_SPLITS) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) per split of consecutive samples: (mean, std) over splits.

    The Inception Score (Salimans et al. 2016) with the domain classifier's logits; it
    lies between 1 and the number of classes K, and reaches K only when every sample is
    classified with certainty and the classes are balanced.
    """
    logits = _as_f64(logits)
    if logits.dim() != 2 or len(logits) < splits:
        raise InputError(f"need logits (N >= splits={splits}, K), got shape {tuple(logits.shape)}")
    log_p = torch.log_softmax(logits, dim=1)
    scores = []
    for part in torch.tensor_split(log_p, splits):
        log_marginal = torch.logsumexp(part, 0) - math.log(len(part))  # log p(y) of this split
        kl = (part.exp() * (part - log_marginal)).sum(1)
        scores.append(kl.mean().exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))  # spread over splits, np.std as Salimans et al.'s code


def label_accuracy(logits, labels) -> float:
    """Percent of samples that the classifier assigns to the label they were drawn for."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if len(logits) != len(labels) or len(labels) == 0:
        raise InputError(f"need one label per sample: {len(logits)} logits, {len(labels)} labels")
    return 100.0 * float((logits.argmax(1).cpu() == labels.cpu()).double().mean())


# ----------------------------------------------------------------------------------------------
# Reference statistics


def default_cache_dir() -> Path:
    """$GENLAB_CACHE/reference-stats, else ~/.cache/genlab/reference-stats."""
    return cache_home() / "reference-stats"


@dataclass
class Reference:
    """Features and Gaussian statistics of the real images metrics compare against."""

    dataset: str
    split: str
    n: int
    seed: int
    net: str  # feature network name
    features: torch.Tensor  # (n, D) float32
    mu: torch.Tensor  # (D,) float64
    sigma: torch.Tensor  # (D, D) float64
    key: str  # sha256 of everything the statistics depend on
    note: str = ""

    def describe(self) -> str:
        how = "all images" if self.seed < 0 else f"random subset, seed {self.seed}"
        return f"{self.dataset}/{self.split}, {self.n} real images ({how}){'; ' + self.note if self.note else ''}"


def reference_images(data: ImageSet, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The real images of a reference: (images float (n, C, H, W) in [0, 1], index (n,), seed used).

    All images when ``n >= len(data)`` (seed reported as -1), else a random subset drawn
    with ``seed``. Dynamically binarized sets are binarized once with ``seed``.
    """
    if n < 2:
        raise InputError("a reference needs n >= 2 images")
    data = data.to("cpu")  # seeded CPU generators draw any binarization, whatever device the set is on
    if n >= len(data):
        index, used = torch.arange(len(data)), -1
    else:
        index, used = random_subset(len(data), n, seed), seed
    images = data.batch(index, generator=torch.Generator().manual_seed(seed))["x"]
    return images, index, used


def reference_stats(net: FeatureNet, data: ImageSet, n: int = 10000, seed: int = 0,
                    cache_dir: str | Path | None = None) -> Reference:
    """Features, mean and covariance of ``n`` images of ``data``, cached on disk.

    The cache key hashes the dataset name, split, transform, n, seed, the feature
    network's name and weights sha256, and the bytes of the selected images, so a stale
    file is never reused. A corrupt cache file is recomputed.
    """
    images, index, used = reference_images(data, n, seed)
    raw = data.images.cpu()[index].contiguous()
    ident = {
        "dataset": data.name, "split": data.split, "transform": data.transform, "n": len(index), "seed": used,
        "net": net.name, "net_sha256": net.sha256, "images_sha256": images_sha256(raw),
    }
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{data.name}-{data.split}-{net.name}-n{len(index)}-{key[:16]}.safetensors"
    ref = None
    if path.exists():
        try:
            t = load_file(str(path))
            ref = Reference(data.name, data.split, len(index), used, net.name, t["features"], t["mu"], t["sigma"],
                            key, data.note)
        except Exception as err:  # a truncated or foreign file: recompute rather than fail
            warnings.warn(f"ignoring unreadable reference cache {path} ({type(err).__name__}); recomputing")
    if ref is None:
        feats = extract(net, images).features
        mu, sigma = gaussian_stats(feats)
        ref = Reference(data.name, data.split, len(index), used, net.name, feats, mu, sigma, key, data.note)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"features": feats.contiguous(), "mu": mu, "sigma": sigma}, str(tmp),
                  metadata={k: str(v) for k, v in ident.items()})
        os.replace(tmp, path)  # atomic: concurrent evaluations never read half a file
    return ref


# ----------------------------------------------------------------------------------------------
# Records


def sample_quality(fake_images: torch.Tensor, net: FeatureNet, ref: Reference, seed: int = 0,
                   labels: torch.Tensor | None = None, samples_note: str = "", pr_k: int = PR_K,
                   dc_k: int = DC_K, kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE) -> dict:
    """FID, KID, precision/recall, density/coverage (and classifier score, label accuracy)
    of generated images against a reference, as ``metric`` records named ``<metric>_<net>``.

    Args:
        fake_images: generated images (M, C, H, W) in [0, 1].
        net: the feature network (``load_feature_net`` or ``load_inception``).
        ref: reference statistics made with the same network (``reference_stats``).
        seed: seed of the KID subsets (and, for the protocol, of the samples).
        labels: (M,) the labels the samples were drawn for, for a class-conditional model.
        samples_note: how the samples were drawn, for the protocol (model, sampler, seed).
    """
    if ref.net != net.name:
        raise InputError(f"reference statistics were made with {ref.net}, not {net.name}")
    out = extract(net, fake_images)
    fake = out.features
    m = len(fake)
    base = (f"{net.description}; reference {ref.describe()}; {m} generated samples"
            f"{' (' + samples_note + ')' if samples_note else ''}")
    kid_m = min(kid_subset_size, ref.n, m)
    pr = precision_recall(ref.features, fake, pr_k)
    dc = density_coverage(ref.features, fake, dc_k)
    kid_mean, kid_std = kid(ref.features, fake, kid_subsets, kid_subset_size, seed)
    common = dict(feature_net=net.name, n_real=ref.n, n_generated=m, reference=f"{ref.dataset}/{ref.split}", seed=seed)
    name = net.name
    records = {
        f"fid_{name}": metric(frechet_distance(ref.mu, ref.sigma, *gaussian_stats(fake)), "", "estimate",
                              f"FID (Heusel et al. 2017) in {base}; float64 statistics", **common),
        f"kid_{name}": metric(kid_mean, "", "estimate",
                              f"KID (Binkowski et al. 2018): unbiased MMD^2, kernel (x.y/d+1)^3, mean of "
                              f"{kid_subsets} subsets of {kid_m} (seed {seed}) in {base}",
                              std=kid_std, subsets=kid_subsets, subset_size=kid_m, **common),
        f"precision_{name}": metric(pr[0], "fraction", "estimate",
                                    f"improved precision (Kynkaanniemi et al. 2019), k={pr_k} in {base}", k=pr_k, **common),
        f"recall_{name}": metric(pr[1], "fraction", "estimate",
                                 f"improved recall (Kynkaanniemi et al. 2019), k={pr_k} in {base}", k=pr_k, **common),
        f"density_{name}": metric(dc[0], "", "estimate",
                                  f"density (Naeem et al. 2020), k={dc_k} in {base}", k=dc_k, **common),
        f"coverage_{name}": metric(dc[1], "fraction", "estimate",
                                   f"coverage (Naeem et al. 2020), k={dc_k} in {base}", k=dc_k, **common),
    }
    if out.logits is not None and m >= IS_SPLITS:
        score, score_std = classifier_score(out.logits)
        records[f"is_{name}"] = metric(
            score, "", "estimate",
            f"Inception-style score exp(E KL(p(y|x)||p(y))) (Salimans et al. 2016) with the {name} classifier, "
            f"mean of {IS_SPLITS} splits of {m} generated samples (max {net.num_classes})",
            std=score_std, splits=IS_SPLITS, **common)
    if labels is not None and out.logits is not None:
        records[f"label_accuracy_{name}"] = metric(
            label_accuracy(out.logits, labels), "%", "estimate",
            f"{name} top-1 agreement with the labels {m} class-conditional samples were drawn for "
            f"(classifier test accuracy {net.test_accuracy} % on real {net.dataset}); {samples_note}",
            **common)
    return records


# ----------------------------------------------------------------------------------------------
# Evaluator


# What the latent sampler returns (its ``output`` option), as the protocol states it.
SAMPLE_OUTPUTS = {"sample": "pixels drawn from the likelihood p(x|z)",
                  "mean": "decoder means E[x|z], not samples from the model"}


@torch.no_grad()
def draw_samples(model, n: int, seed: int, device, batch_size: int, num_classes: int = 0, sampler: str | None = None,
                 **sampler_opts):
    """n samples (n, C, H, W) on CPU from the model's sampler; sample i uses generator (seed, i).

    A class-conditional model (``num_classes > 0``) gets label ``i mod num_classes`` for
    sample i, so classes are balanced. ``sampler`` names one of the card's samplers (None: its
    first); ``sampler_opts`` go to it. Returns (images, labels or None).
    """
    sample_fn = sampler_of(model, sampler)
    images, labels = [], []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        gens = make_generators(seed, count, device, start=start)
        if num_classes:
            y = torch.arange(start, start + count, device=device) % num_classes
            images.append(sample_fn(model, count, gens, device, label=y, **sampler_opts).float().cpu())
            labels.append(y.cpu())
        else:
            images.append(sample_fn(model, count, gens, device, **sampler_opts).float().cpu())
    return torch.cat(images), (torch.cat(labels) if num_classes else None)


def sampling_settings(model, opts) -> tuple[dict, str, str]:
    """The options the card's first sampler gets from the evaluation options, and how to say it.

    An iterative sampler (its options have ``steps``: diffusion) takes ``opts.sampler_steps`` steps when
    the protocol sets them (quick: 10), and a latent model's sampler returns what ``opts.sample_output``
    names. Returns (sampler keyword options, a note for the protocol, 'sampler NAME (...), NFE N').
    """
    sampler = model.card.sampler().name
    options = SAMPLER_OPTIONS.get(sampler) if sampler in SAMPLER_OPTIONS else None
    names = set() if options is None else {f.name for f in dataclasses.fields(options)}
    sampler_opts, how = {}, ""
    if "output" in names:
        # A sampler that can return decoder means instead of samples (the latent one): say which.
        output = getattr(opts, "sample_output", "sample")
        if output not in SAMPLE_OUTPUTS:
            raise InputError(f"sample_output must be one of {', '.join(SAMPLE_OUTPUTS)}, got {output!r}")
        sampler_opts["output"] = output
        how = f", {SAMPLE_OUTPUTS[output]}"
    steps = getattr(opts, "sampler_steps", None)
    if "steps" in names and steps is not None:
        sampler_opts["steps"] = steps
        how += f", {steps} sampler steps set by the {getattr(opts, 'protocol', '?')!r} protocol (sampler_steps)"
    from genlab.sampling.api import describe_sampling, sampler_options

    drawn_with = describe_sampling(model, sampler, None if options is None else
                                   sampler_options(model, sampler, sampler_opts))  # diffusion: with NFE
    return sampler_opts, how, drawn_with


def model_samples(model, device, opts) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """The samples every sample-based evaluator judges, and how they were drawn.

    ``opts.n_samples`` (10000) samples with seed ``opts.seed`` (0) in batches of
    ``opts.batch_size`` (500). A latent-variable model's sampler decodes z ~ p(z) and
    then either draws the pixels from its likelihood (``opts.sample_output`` "sample",
    the default: binary images on binary data, like the real ones) or returns the
    decoder means ("mean": grey images on binary data, which sample metrics judge far
    worse than the model's actual samples).

    Returns:
        (images (n, C, H, W) on CPU, labels (n,) or None, a protocol note).
    """
    n = int(getattr(opts, "n_samples", 10000))
    seed = int(getattr(opts, "seed", 0))
    batch_size = int(getattr(opts, "batch_size", 500))
    num_classes = conditioning(model).num_classes
    sampler_opts, how, drawn_with = sampling_settings(model, opts)
    images, labels = draw_samples(model, n, seed, device, batch_size, num_classes, **sampler_opts)
    note = f"model {type(model).__name__}, {drawn_with}, seed {seed}{how}"
    if num_classes:
        note += f", label i mod {num_classes}"
    return images, labels, note


def feature_nets_for(data: ImageSet, opts, device) -> tuple[list[FeatureNet], list[str]]:
    """The feature networks that judge samples of ``data``, and the reasons for any skipped."""
    nets, skipped = [], []
    net = domain_feature_net(data.name, opts, device)
    if net is None:
        skipped.append(f"dataset {data.name!r} has no domain feature network (these exist for mnist, "
                       "fashion-mnist and the binarized MNISTs); give inception_weights for Inception-v3 features")
    else:
        nets.append(net)
    inception = getattr(opts, "inception_weights", "") or os.environ.get("GENLAB_INCEPTION", "")
    if inception:
        nets.append(load_inception(inception, device, getattr(opts, "inception_unverified", False)))
    return nets, skipped


@EVALUATORS.register("sample-quality")
@torch.no_grad()
def evaluate_sample_quality(model, objective, test: ImageSet, device, opts) -> dict[str, dict]:
    """FID/KID/precision-recall/density-coverage (+ classifier score) of model samples.

    Draws ``opts.n_samples`` (10000) samples with seed ``opts.seed`` (0) in batches of
    ``opts.batch_size`` (500) through the first sampler on the model's card (``model_samples``:
    a VAE's are drawn from its likelihood unless ``opts.sample_output`` is "mean"), and compares them with
    up to ``opts.n_reference`` (10000) images of ``test`` (the split the evaluation runs
    on; ``opts.reference_split`` = "train" loads that split instead, with ``opts.data``)
    in the dataset's feature network, plus Inception-v3 when ``opts.inception_weights``
    (or $GENLAB_INCEPTION) names its weights file. A subset of a larger split is drawn
    with seed 0, so every run compares against the same images; reference statistics are
    cached in ``opts.cache_dir`` (default ``~/.cache/genlab/reference-stats``).
    Results do not depend on batch_size.
    """
    seed = int(getattr(opts, "seed", 0))
    n_ref = int(getattr(opts, "n_reference", 10000))
    cache = getattr(opts, "cache_dir", None)
    nets, skipped = feature_nets_for(test, opts, device)
    for reason in skipped:
        warnings.warn(f"sample-quality: skipped domain-network metrics: {reason}")
    if not nets:
        return {}
    images, labels, note = model_samples(model, device, opts)
    reference = test
    split = getattr(opts, "reference_split", None)
    if split and split != test.split:
        reference = load_dataset(test.name, split, getattr(opts, "data", None) or DataConfig(name=test.name))
    records = {}
    for net in nets:
        if net.input_shape is not None and tuple(images.shape[1:]) != net.input_shape:
            raise FeatureNetError(f"{net.name} reads {net.input_shape} images but the model samples "
                                  f"{tuple(images.shape[1:])}")
        ref = reference_stats(net, reference, n_ref, seed=0, cache_dir=cache)
        records.update(sample_quality(images, net, ref, seed, labels, note))
    return records
