"""Feature extractors for sample-quality metrics: genlab's versioned domain classifiers
and, when the user has its weights file, the Inception-v3 network of standard FID.

Every extractor maps float images (N, C, H, W) in [0, 1] to features (N, D) and, where
it is a classifier, logits (N, K). Features are computed in fixed chunks of
``FEATURE_CHUNK`` images whatever the caller's batch size, so that the same images give
bit-identical features (and metrics) however they were generated.

Domain networks (``genlab/eval/feature_nets``): ``load_feature_net("mnist-lenet-v1")``
reads ``genlab/weights/manifest.json``, checks the sha256 of the safetensors file against
it and refuses a mismatch. The feature is the penultimate layer: the 128 hidden units
after BatchNorm and ReLU, the input of the final linear classifier.

Inception-v3 (Szegedy et al. 2016, arXiv:1512.00567) pool3 features (2048-d), as used by
FID (Heusel et al. 2017, arXiv:1706.08500). No download is ever attempted: the user
points genlab at a local copy of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
(``load_inception(path)``). A file handed to genlab is data, never code: its sha256 must
be the official one, and only its tensors are read (``torch.load(weights_only=True)`` or
safetensors) into genlab's own network (``feature_nets/inception.py``). TorchScript files
(NVlabs' ``inception-2015-12-05.pt``) run their own code when loaded and are refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genlab.data import load_dataset
from genlab.data.download import sha256_file
from genlab.errors import InputError
from genlab.eval.feature_nets import SPECS, FeatureNetSpec, build_net, feature_net_name_for, spec_for_dataset
from genlab.eval.feature_nets.inception import POOL3_DIM, FIDInceptionV3
from genlab.eval.feature_nets.train import accuracy, fit

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
MANIFEST_NAME = "manifest.json"
FEATURE_CHUNK = 500  # images per forward pass of a feature network, fixed for bit-reproducibility


class FeatureNetError(InputError):
    """A feature network's weights are missing, corrupt or do not match the manifest.

    A ValueError so that the CLI prints it as a one-line user error: the fix is always
    a file the user provides (restore, retrain or download), never a code change.
    """


def _why(err: BaseException) -> str:
    """``TypeName: first line of the message``: loaders' errors can run to pages (torch's unpickler)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


# ----------------------------------------------------------------------------------------------
# Domain feature networks


@dataclass
class FeatureNet:
    """A frozen classifier used as a feature extractor.

    Attributes:
        name: versioned name, the suffix of metric names (``fid_<name>``).
        net: the module; ``features_and_logits(x)`` -> ((B, D), (B, K) or None).
        dim: feature dimension D.
        num_classes: K, or 0 when the network has no classifier head (Inception pool3).
        input_shape: (C, H, W) images or (C, L) signals the network reads; None when it resizes any input itself.
        description: what the feature is and which weights, for metric protocols.
        sha256: of the weights file.
        dataset: the data it was trained on ("imagenet" for Inception).
        test_accuracy: in percent on that dataset's test split (None when unknown).
    """

    name: str
    net: torch.nn.Module
    dim: int
    num_classes: int
    input_shape: tuple[int, ...] | None
    description: str
    sha256: str
    dataset: str
    test_accuracy: float | None = None

    def to(self, device) -> "FeatureNet":
        self.net.to(device)
        return self

    @property
    def device(self) -> torch.device:
        for p in self.net.parameters():
            return p.device
        return torch.device("cpu")

    def check_input(self, images: torch.Tensor) -> None:
        if images.dim() != (4 if self.input_shape is None else len(self.input_shape) + 1):
            raise InputError(f"{self.name} takes a batch of {self.input_shape or '(C, H, W)'} inputs, "
                             f"got shape {tuple(images.shape)}")
        if self.input_shape is not None and tuple(images.shape[1:]) != self.input_shape:
            raise InputError(
                f"{self.name} reads {'x'.join(map(str, self.input_shape))} "
                f"{'images' if len(self.input_shape) == 3 else 'signals'} (trained on {self.dataset}); got "
                f"{'x'.join(map(str, images.shape[1:]))}: use the feature network of your dataset "
                f"or Inception-v3 (see genlab.eval.features.load_inception)"
            )


def read_manifest(weights_dir: str | Path | None = None) -> dict:
    """name -> manifest entry of every network in ``weights_dir`` ({} when there is no manifest)."""
    path = Path(weights_dir or WEIGHTS_DIR) / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FeatureNetError(f"{path} is not valid JSON ({err}); restore it from git or retrain "
                              "the networks with `genlab features train --data DATASET`") from None


def save_feature_net(net: torch.nn.Module, spec: FeatureNetSpec, out_dir: str | Path, test_accuracy: float,
                     seed: int, train_seconds: float | None = None) -> dict:
    """Write ``<name>.safetensors`` and its entry in ``out_dir/manifest.json``; return the entry."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"name": spec.name, "version": str(spec.version)})
    os.chmod(path, 0o644)  # shipped in the repository: readable by everyone
    entry = {
        "name": spec.name,
        "version": spec.version,
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "dataset": spec.dataset,
        "test_accuracy": round(float(test_accuracy), 4),
        "test_accuracy_unit": "% top-1 on the full test split, final weights",
        "feature": f"penultimate layer: {spec.arch.hidden} hidden units after BatchNorm and ReLU (input of the classifier)",
        "feature_dim": spec.arch.hidden,
        "num_classes": spec.arch.num_classes,
        "input_shape": list(spec.arch.input_shape),
        "arch": dataclasses.asdict(spec.arch),
        "recipe": {**dataclasses.asdict(spec.recipe), "text": spec.recipe.describe()},
        "seed": seed,
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "torch": torch.__version__,
    }
    manifest = read_manifest(out_dir)
    manifest[spec.name] = entry
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return entry


def domain_feature_net(data_name: str, opts, device="cpu") -> FeatureNet | None:
    """The dataset's shipped domain network, loaded and checked; None when the dataset has none.

    ``opts.feature_weights_dir`` (when set) replaces the shipped weights folder.
    """
    name = feature_net_name_for(data_name)
    return load_feature_net(name, getattr(opts, "feature_weights_dir", None), device) if name else None


def load_feature_net(name: str, weights_dir: str | Path | None = None, device="cpu") -> FeatureNet:
    """Load a shipped (or retrained) domain network after checking its sha256.

    Args:
        name: e.g. "mnist-lenet-v1" (see ``genlab.eval.feature_nets.SPECS``).
        weights_dir: folder with ``manifest.json`` and the weights; default ``genlab/weights``.
        device: where the network runs.

    Raises:
        FeatureNetError: unknown name, missing file, or sha256 different from the manifest's.
    """
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    if name not in SPECS:
        raise FeatureNetError(f"unknown feature network {name!r}; known: {', '.join(sorted(SPECS))}")
    spec = SPECS[name]
    retrain = f"genlab features train --data {spec.dataset}"
    manifest = read_manifest(weights_dir)
    if name not in manifest:
        raise FeatureNetError(f"{weights_dir / MANIFEST_NAME} has no entry for {name!r}; "
                              f"train it with `{retrain}` (writes into {weights_dir})")
    entry = manifest[name]
    try:
        path, expected, arch = weights_dir / entry["file"], entry["sha256"], type(spec.arch)(**entry["arch"])
    except (KeyError, TypeError) as err:
        raise FeatureNetError(f"{weights_dir / MANIFEST_NAME}: the entry of {name} is damaged ({_why(err)}); "
                              f"restore genlab/weights from git or retrain with `{retrain}`") from None
    if not path.exists():
        raise FeatureNetError(f"weights of {name} not found at {path}; restore genlab/weights from git "
                              f"or retrain with `{retrain}`")
    actual = sha256_file(path)
    if actual != expected:
        raise FeatureNetError(
            f"sha256 mismatch for {path}:\n  manifest says {expected}\n  file has      {actual}\n"
            f"The file is corrupt or was replaced without updating {MANIFEST_NAME}; metric values "
            f"computed with it would not be comparable to {name}'s. Restore genlab/weights from git, "
            f"or retrain with `{retrain}` (which rewrites both the weights and the manifest)."
        )
    if arch != spec.arch:
        raise FeatureNetError(f"manifest architecture of {name} ({entry['arch']}) differs from the code's "
                              f"({dataclasses.asdict(spec.arch)}): a changed network needs a new version name")
    net = build_net(arch)
    try:  # safetensors holds tensors only; a matching sha256 in a user's manifest proves nothing more
        net.load_state_dict(load_file(str(path)))
    except Exception as err:
        raise FeatureNetError(f"{path} is not a safetensors file of {name}'s tensors ({_why(err)}); "
                              f"restore genlab/weights from git or retrain with `{retrain}`") from None
    net.eval().requires_grad_(False)
    return FeatureNet(
        name=name,
        net=net.to(device),
        dim=arch.hidden,
        num_classes=arch.num_classes,
        input_shape=arch.input_shape,
        description=f"{name} penultimate features ({arch.hidden}-d, after ReLU; weights sha256 {actual[:12]})",
        sha256=actual,
        dataset=entry["dataset"],
        test_accuracy=entry.get("test_accuracy"),
    )


# ----------------------------------------------------------------------------------------------
# Inception-v3 (standard FID)

INCEPTION_NAME = "inception-v3"
INCEPTION_ENV = "GENLAB_INCEPTION"
# The one file genlab loads without being told otherwise: pytorch-fid's conversion of the
# 2015-12-05 TensorFlow graph (the same bytes as torch-fidelity's weights-inception-...pth).
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE
INCEPTION_HELP = (f"standard FID needs the Inception-v3 weights {INCEPTION_FILE} (95,628,359 bytes, sha256 "
                  f"{INCEPTION_SHA256}); genlab never downloads it: fetch {INCEPTION_URL} on a machine with "
                  f"internet access, then pass --inception-weights PATH or set {INCEPTION_ENV}=PATH")


class _FIDInception(torch.nn.Module):
    """genlab's FID Inception-v3 behind the FeatureNet call convention: [0, 1] floats -> pool3."""

    def __init__(self, net: FIDInceptionV3):
        super().__init__()
        self.module = net

    def features_and_logits(self, x: torch.Tensor):
        return self.module.pool3(_to_uint8_rgb(x).float()), None


def _to_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 levels, grey-scale repeated to 3 channels (as the reference code does)."""
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def inception_path(path: str | Path | None = None) -> Path:
    """The Inception weights file: ``path``, else $GENLAB_INCEPTION; a clear error when absent."""
    chosen = path or os.environ.get(INCEPTION_ENV, "")
    if not chosen:
        raise FeatureNetError("no Inception-v3 weights file given: " + INCEPTION_HELP)
    chosen = Path(chosen).expanduser()
    if not chosen.is_file():
        raise FeatureNetError(f"Inception-v3 weights file not found: {chosen}; " + INCEPTION_HELP)
    return chosen


def load_inception(path: str | Path | None = None, device="cpu", allow_unverified: bool = False) -> FeatureNet:
    """Inception-v3 pool3 features from the official FID weights file (see ``INCEPTION_HELP``).

    Only tensors are read from the file, into genlab's own network
    (``genlab.eval.feature_nets.inception``); nothing in the file is ever run.

    Args:
        path: the weights file; default $GENLAB_INCEPTION.
        device: where the network runs.
        allow_unverified: load a file whose sha256 is not the official one (still tensors
            only); the network is then named "inception-v3-unverified", so that its metric
            names never pass for standard FID.
    Raises:
        FeatureNetError: no file, a sha256 other than the official one (unless allowed), or a
            file that is not a state dict of exactly this network's tensors.
    """
    path = inception_path(path)
    digest = sha256_file(path)
    verified = digest == INCEPTION_SHA256
    if not verified and not allow_unverified:
        raise FeatureNetError(
            f"{path} is not the official Inception-v3 FID weights (its sha256 is {digest}, the official "
            f"{INCEPTION_FILE} has {INCEPTION_SHA256}); give that file, or set inception_unverified=true "
            "(--inception-unverified) to load another file's tensors under the name inception-v3-unverified")
    net = FIDInceptionV3()
    net.load_state_dict(_inception_tensors(path, net), strict=True)
    net.eval().requires_grad_(False)
    name = INCEPTION_NAME if verified else INCEPTION_NAME + "-unverified"
    state = "official weights" if verified else "UNVERIFIED weights"
    return FeatureNet(
        name=name,
        net=_FIDInception(net).to(device),
        dim=POOL3_DIM,
        num_classes=0,
        input_shape=None,
        description=f"Inception-v3 2015-12-05 pool3 (2048-d, genlab's FID network, {state}: "
                    f"{path.name} sha256 {digest[:12]})",
        sha256=digest,
        dataset="imagenet",
    )


def _inception_tensors(path: Path, net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The file's tensors, read without running anything it contains, checked against ``net``'s."""
    with open(path, "rb") as f:
        head = f.read(8)
    try:
        if path.suffix == ".safetensors":
            tensors = load_file(str(path))
        else:
            if head.startswith(b"PK") and _is_torchscript(path):
                raise FeatureNetError(f"{path} is a TorchScript program, which genlab never runs; "
                                      + INCEPTION_HELP)
            # weights_only: the unpickler builds tensors and containers and refuses any other object.
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except FeatureNetError:
        raise
    except Exception as err:  # a pickle asking for code, a truncated file...: say what was expected
        raise FeatureNetError(f"{path} is not an Inception-v3 state dict of tensors "
                              f"({_why(err)}); "
                              + INCEPTION_HELP) from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise FeatureNetError(f"{path} holds a {type(tensors).__name__}, not a state dict of tensors; " + INCEPTION_HELP)
    expected = net.state_dict()
    # The BatchNorm step counters are unused in eval mode; a safetensors conversion may drop them.
    tensors = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **tensors}
    wrong = sorted(set(expected) ^ set(tensors)) + sorted(
        k for k in expected if k in tensors and tensors[k].shape != expected[k].shape)
    if wrong:
        raise FeatureNetError(f"{path} is not an Inception-v3 FID state dict ({len(wrong)} tensor(s) missing, "
                              f"extra or of the wrong shape, e.g. {wrong[0]}); " + INCEPTION_HELP)
    return tensors


def _is_torchscript(path: Path) -> bool:
    """A zip archive with compiled code or TorchScript constants (torch.save archives have neither)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in z.namelist())
    except zipfile.BadZipFile:
        return False


# ----------------------------------------------------------------------------------------------
# Extraction


@dataclass
class Features:
    """Outputs of a feature network on a set of images (CPU tensors)."""

    features: torch.Tensor  # (N, D) float32
    logits: torch.Tensor | None  # (N, K) float32, None without a classifier head


@torch.no_grad()
def extract(net: FeatureNet, images: torch.Tensor) -> Features:
    """Features (and logits) of float images (N, C, H, W) in [0, 1], on the network's device.

    Runs in chunks of ``FEATURE_CHUNK`` images, independent of how ``images`` was made,
    so identical images always give bit-identical features.
    """
    net.check_input(images)
    if images.is_floating_point():
        lo, hi = images.min().item(), images.max().item()
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise InputError(f"feature networks read images in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]")
    else:
        raise InputError(f"extract takes float images in [0, 1], got dtype {images.dtype} (divide uint8 by 255)")
    device = net.device
    feats, logits = [], []
    for start in range(0, len(images), FEATURE_CHUNK):
        x = images[start:start + FEATURE_CHUNK].to(device, torch.float32)
        f, lg = net.net.features_and_logits(x)
        feats.append(f.float().cpu())
        if lg is not None:
            logits.append(lg.float().cpu())
    out_f = torch.cat(feats) if feats else torch.zeros(0, net.dim)
    return Features(out_f, torch.cat(logits) if logits else None)


def train_feature_net(data_name: str, data_cfg, out_dir, seed: int = 0, log=print) -> dict:
    """Train the feature network of ``data_name`` with its fixed recipe and save it.

    Args:
        data_name: a dataset with a feature network (see ``genlab.eval.feature_nets.SPECS``).
        data_cfg: the ``DataConfig`` used to load its train and test splits.
        out_dir: folder receiving ``<name>.safetensors`` and an updated ``manifest.json``.
        seed: seed of initialization, batch order, augmentation and dropout.

    Returns:
        The manifest entry written (name, version, sha256, dataset, test accuracy, ...).
    """
    spec = spec_for_dataset(data_name)
    train = load_dataset(data_name, "train", data_cfg)
    test = load_dataset(data_name, "test", data_cfg)
    if train.labels is None or test.labels is None:
        raise InputError(f"dataset {data_name!r} has no labels: a feature classifier cannot be trained on it")
    x_train = train.batch(torch.arange(len(train)))["x"]
    x_test = test.batch(torch.arange(len(test)))["x"]
    log(f"training {spec.name} on {data_name} ({len(train)} train images): {spec.recipe.describe()}")
    t0 = time.time()
    net = fit(spec.arch, spec.recipe, x_train, train.labels, seed, log=log)
    seconds = time.time() - t0
    acc = accuracy(net, x_test, test.labels)
    log(f"{spec.name}: test accuracy {acc:.2f} % on {len(test)} {data_name} test images ({seconds:.0f} s training)")
    return save_feature_net(net, spec, out_dir, test_accuracy=acc, seed=seed, train_seconds=seconds)
