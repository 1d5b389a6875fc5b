"""Linear and k-NN probes of frozen features: one protocol for self-supervised and generative models.

Protocol (stated in every output):
* features of the frozen model as its card declares them (genlab/eval/representations.py), or a floor
  (raw pixels; the shared backbone untrained);
* labelled training images: ``n`` per class from the train split, drawn per class with
  ``rng.random_subset`` (seed mixed with the class), so a larger ``n`` extends a smaller one; "all" is the
  whole split (the same for every seed: one fit);
* features standardised with the mean and standard deviation of the labelled training images;
* linear probe: multinomial logistic regression (scikit-learn, lbfgs, L2, C = 1);
* k-NN probe: k = 20 nearest labelled images by cosine similarity of the standardised features, majority
  vote (ties to the larger summed similarity);
* accuracy on the test split (all of it, or a seeded random subset), mean and sample standard deviation
  over the seeds.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from genlab.config import bounded, check_fields
from genlab.data import load_dataset
from genlab.data.base import ImageSet
from genlab.errors import InputError
from genlab.eval.metric import metric
from genlab.eval.representations import Representation, extract_features, floor, representation_of
from genlab.registry import EVALUATORS
from genlab.rng import random_subset, sample_seed

ALL = 0  # labels_per_class value meaning every labelled training image
# Named sizes: quick finishes in minutes on 2 CPU cores; full is the protocol of issue 17.
PROBE_PROTOCOLS = {
    "quick": {"labels_per_class": (10, 100), "seeds": 3, "test_examples": 2000},
    "full": {"labels_per_class": (10, 100, 1000, ALL), "seeds": 3, "test_examples": None},
}


@dataclass
class ProbeOptions:
    protocol: str = "quick"  # the sizes below come from PROBE_PROTOCOLS[protocol] unless set explicitly
    labels_per_class: tuple[int, ...] = (10, 100)  # labelled training images per class; 0: all of them
    seeds: int = bounded(3, ge=1)  # label subsets 0 .. seeds-1 (each a different draw of labelled images)
    test_examples: int | None = bounded(2000, ge=1)  # None: the whole test split; else a seeded random subset
    k: int = bounded(20, ge=1)  # neighbours of the k-NN probe
    c: float = bounded(1.0, gt=0.0)  # inverse L2 strength of the logistic regression (scikit-learn's C)
    max_iter: int = bounded(1000, ge=1)  # lbfgs iterations of the logistic regression
    batch_size: int = bounded(256, ge=1)  # images per feature-extraction pass
    feature_seed: int = bounded(0, ge=0)  # seeds feature noise (diffusion) and the untrained floor
    datasets: tuple[str, ...] = field(default_factory=tuple)  # () : the run's own dataset

    def __post_init__(self):
        check_fields(self)
        if self.protocol not in PROBE_PROTOCOLS:
            raise InputError(f"unknown probe protocol {self.protocol!r}; choose one of {', '.join(PROBE_PROTOCOLS)}")
        if any(n < 0 for n in self.labels_per_class) or not self.labels_per_class:
            raise InputError("labels per class are counts >= 1, or 'all'")

    @classmethod
    def for_protocol(cls, name: str = "quick", **explicit) -> "ProbeOptions":
        return cls(protocol=name, **{**PROBE_PROTOCOLS.get(name, {}), **explicit})


def describe_protocol(opts: ProbeOptions) -> str:
    labels = ", ".join("all" if n == ALL else str(n) for n in opts.labels_per_class)
    test = "all test images" if opts.test_examples is None else f"{opts.test_examples} random test images (seed 0)"
    named = PROBE_PROTOCOLS[opts.protocol]
    same = all(getattr(opts, k) == v for k, v in named.items())
    name = repr(opts.protocol) + ("" if same else " with sizes set explicitly")
    return (f"probe protocol {name}: frozen features standardised with the labelled images' mean and std; "
            f"linear = logistic regression (scikit-learn lbfgs, L2, C={opts.c:g}, max_iter={opts.max_iter}); "
            f"k-NN = k={opts.k}, cosine similarity, majority vote; {labels} labelled train images per class "
            f"(per-class seeded subsets, seeds 0..{opts.seeds - 1}; 'all' is one fit); accuracy on {test}; "
            "mean +- sample std over seeds")


# ---- the probes ----

def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets standardised with the training set's mean and std (constant features: std taken as 1)."""
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def linear_probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                          c: float = 1.0, max_iter: int = 2000) -> float:
    """Accuracy of a multinomial logistic regression fit on standardised (train_x, train_y)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(train_y)) < 2:
        raise InputError("the linear probe needs at least two classes among its training examples")
    train_x, test_x = standardize(train_x, test_x)
    clf = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings():  # the iteration cap is part of the stated protocol
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == test_y).mean())


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 k: int = 20, chunk: int = 2048) -> float:
    """Accuracy of a k-NN vote on cosine similarity of the standardised features (ties: larger summed similarity)."""
    train_x, test_x = standardize(train_x, test_x)
    tr = torch.nn.functional.normalize(torch.from_numpy(train_x).float(), dim=1)
    te = torch.nn.functional.normalize(torch.from_numpy(test_x).float(), dim=1)
    labels = torch.from_numpy(np.asarray(train_y)).long()
    classes = int(max(labels.max().item(), int(np.max(test_y)))) + 1
    k = min(k, tr.shape[0])
    correct = 0
    for start in range(0, te.shape[0], chunk):
        sim, idx = (te[start:start + chunk] @ tr.T).topk(k, dim=1)  # (b, k)
        votes = torch.nn.functional.one_hot(labels[idx], classes).float()  # (b, k, classes)
        # Similarities sum to at most k in size: scaled below one vote, they only break ties.
        score = votes.sum(1) + (votes * sim.unsqueeze(-1)).sum(1) / (2 * k + 1)
        correct += int((score.argmax(1).numpy() == test_y[start:start + chunk]).sum())
    return correct / te.shape[0]


def labelled_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` labelled images of each class (all of them for ``ALL``), sorted."""
    if per_class == ALL:
        return torch.arange(labels.shape[0])
    chosen = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        n = min(per_class, members.numel())
        chosen.append(members[random_subset(members.numel(), n, sample_seed(seed, c))])
    return torch.cat(chosen).sort().values


# ---- running the protocol ----

def _model_ready(data: ImageSet, index: torch.Tensor) -> torch.Tensor:
    # The fixed generator makes stochastic transforms (dynamic binarization) the same on every call.
    return data.batch(index.to(data.images.device), torch.Generator(device=data.images.device).manual_seed(0))["x"]


def probe_dataset(rep: Representation, train: ImageSet, test: ImageSet, opts: ProbeOptions, device,
                  log=print) -> list[dict]:
    """Every probe of ``opts`` on one dataset. Returns one record per (labels per class, probe kind)."""
    if train.labels is None or test.labels is None:
        raise InputError(f"probes need labels; {train.name} has none")
    seeds = list(range(opts.seeds))
    subsets = {(n, s): labelled_subset(train.labels.cpu(), n, s) for n in opts.labels_per_class
               for s in (seeds if n != ALL else seeds[:1])}
    needed = torch.cat(list(subsets.values())).unique()  # extract each training image once
    n_test = len(test) if opts.test_examples is None else min(len(test), opts.test_examples)
    test_index = random_subset(len(test), n_test, 0).sort().values
    began = time.perf_counter()
    train_f = extract_features(rep, _model_ready(train, needed), needed, device, opts.batch_size, opts.feature_seed)
    test_f = extract_features(rep, _model_ready(test, test_index), test_index, device, opts.batch_size,
                              opts.feature_seed)
    log(f"  {train.name}: features of {needed.numel()} train + {n_test} test images, dimension {train_f.shape[1]}, "
        f"in {time.perf_counter() - began:.1f} s")
    row_of = torch.full((len(train),), -1, dtype=torch.long)
    row_of[needed] = torch.arange(needed.numel())
    train_f, test_f = train_f.numpy().astype(np.float64), test_f.numpy().astype(np.float64)
    train_y, test_y = train.labels.cpu().numpy(), test.labels[test_index.to(test.labels.device)].cpu().numpy()
    records = []
    for n in opts.labels_per_class:
        for kind in ("linear", "knn"):
            t0 = time.perf_counter()
            accs = []
            for s in (seeds if n != ALL else seeds[:1]):
                rows = row_of[subsets[(n, s)]].numpy()
                x, y = train_f[rows], train_y[subsets[(n, s)].numpy()]
                accs.append(linear_probe_accuracy(x, y, test_f, test_y, opts.c, opts.max_iter) if kind == "linear"
                            else knn_accuracy(x, y, test_f, test_y, opts.k))
            rec = {"data": train.name, "labels_per_class": "all" if n == ALL else n, "probe": kind,
                   "accuracy": accs, "mean": statistics.fmean(accs),
                   "std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "n_test": n_test,
                   "feature_dim": int(train_f.shape[1]), "seconds": round(time.perf_counter() - t0, 2)}
            records.append(rec)
            log(f"  {train.name} {rec['labels_per_class']!s:>5} labels/class {kind:6s} "
                f"{100 * rec['mean']:6.2f} % +- {100 * rec['std']:.2f} ({len(accs)} seed{'s' * (len(accs) > 1)}, "
                f"{rec['seconds']:.1f} s)")
    return records


def estimate_seconds(rep: Representation, sample: torch.Tensor, n_images: int, opts: ProbeOptions, device) -> float:
    """A rough time for the whole protocol: the measured feature rate on ``sample`` times the images, plus the
    fits at about 2e-7 s per (labelled image x feature x class x 100 lbfgs iterations), measured on 2 CPU cores."""
    t0 = time.perf_counter()
    dim = extract_features(rep, sample, torch.arange(sample.shape[0]), device, opts.batch_size, opts.feature_seed).shape[1]
    per_image = (time.perf_counter() - t0) / sample.shape[0]
    labelled = sum((60000 if n == ALL else 10 * n) * (1 if n == ALL else opts.seeds) for n in opts.labels_per_class)
    return per_image * n_images + 2e-7 * labelled * dim * 10 * min(opts.max_iter, 300) / 100


def run_probe(rep: Representation, datasets: list[str], data_cfg, opts: ProbeOptions, device, log=print) -> dict:
    """The protocol on each dataset (train and test splits loaded with ``data_cfg``); returns the JSON record."""
    log(describe_protocol(opts))
    log(f"features: {rep.description}")
    sets = {}
    for name in datasets:
        cfg = replace(data_cfg, name=name)
        sets[name] = (load_dataset(name, "train", cfg).to(device), load_dataset(name, "test", cfg).to(device))
    first_test = next(iter(sets.values()))[1]
    n_images = 0
    for train, test in sets.values():
        per = max(opts.labels_per_class, key=lambda n: 10**9 if n == ALL else n)
        n_images += (len(train) if per == ALL else min(len(train), 10 * per * opts.seeds))
        n_images += len(test) if opts.test_examples is None else min(len(test), opts.test_examples)
    eta = estimate_seconds(rep, _model_ready(first_test, torch.arange(min(64, len(first_test)))), n_images, opts, device)
    log(f"about {eta / 60:.1f} min for {len(datasets)} dataset(s) and {n_images} images (rough estimate)")
    began = time.perf_counter()
    records = []
    for train, test in sets.values():
        records += probe_dataset(rep, train, test, opts, device, log)
    return {"protocol": describe_protocol(opts), "options": {k: v for k, v in vars(opts).items()},
            "features": rep.description, "results": records, "seconds": round(time.perf_counter() - began, 1)}


def probe_command(run_dir: str | None, floor_name: str | None, opts: ProbeOptions, out: str | None, device: str,
                  use_ema: bool = True, data_root: str | None = None, log=print) -> Path:
    """`genlab probe`: probe a run (or a floor), print the table and write JSON (RUN_DIR/probe.json or ``out``)."""
    from genlab.config import DataConfig
    from genlab.train.distributed import resolve_device
    from genlab.train.run import load_run

    dev = resolve_device(device)
    if (run_dir is None) == (floor_name is None):
        raise InputError("give a run folder to probe, or --floor pixels|untrained (not both)")
    if run_dir is not None:
        run = load_run(run_dir, dev, use_ema=use_ema, data_root=data_root)
        rep, data_cfg = representation_of(run.model), run.cfg.data
        datasets = list(opts.datasets) or [run.cfg.data.name]
        path = Path(out) if out else Path(run_dir) / "probe.json"
    else:
        datasets = list(opts.datasets) or ["mnist", "fashion-mnist"]
        data_cfg = DataConfig(name=datasets[0], root=data_root or "")
        channels = load_dataset(datasets[0], "test", data_cfg).spec.channels
        rep = floor(floor_name, channels, opts.feature_seed)
        if not out:
            raise InputError("a floor has no run folder to write into: name the JSON file with --out FILE")
        path = Path(out)
    result = run_probe(rep, datasets, data_cfg, opts, dev, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


@EVALUATORS.register("probe")
def evaluate_probe(model, objective, data: ImageSet, device, opts) -> dict:
    """`genlab eval --only probe`: the quick probe protocol on the run's dataset (its test split capped by
    --max-examples); one metric per (probe, labels per class), the mean accuracy over 3 seeds."""
    popts = ProbeOptions.for_protocol("quick" if opts.protocol == "quick" else "full", test_examples=opts.max_examples,
                                      feature_seed=opts.seed)
    train = load_dataset(data.name, "train", opts.data).to(data.images.device)
    log = opts.log or print
    records = probe_dataset(representation_of(model), train, data, popts, device, log)
    proto = describe_protocol(popts)
    return {f"probe_{r['probe']}_{r['labels_per_class']}": metric(
        r["mean"], "fraction", "estimate", f"{proto}; std over seeds {r['std']:.4f}; {data.name}/{data.split}")
        for r in records}
