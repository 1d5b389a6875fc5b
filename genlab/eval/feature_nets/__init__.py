"""genlab's domain feature networks: small classifiers whose penultimate activations
replace Inception-v3 features for FID/KID/precision-recall on 28x28 grey-scale data,
and give the classifier agreement and Frechet distance of generated spoken digits (FSDD).

Each network is a versioned ``FeatureNetSpec`` (architecture + fixed training recipe).
Its trained weights ship in ``genlab/weights/<name>.safetensors`` with a manifest entry
(sha256, test accuracy); ``genlab.eval.features.load_feature_net`` verifies the sha256.
Metric names carry the network name: ``fid_mnist-lenet-v1``.

Train (or retrain) one with ``genlab features train --data mnist`` or
``genlab.eval.features.train_feature_net("mnist", DataConfig(root=...), out_dir)``.
"""

from __future__ import annotations

from genlab.errors import InputError
from genlab.eval.feature_nets.lenet import LeNet, LeNetConfig
from genlab.eval.feature_nets.spoken_digits import SpokenDigitConfig, SpokenDigitNet
from genlab.eval.feature_nets.train import FeatureNetSpec, Recipe, build_net

# A network's name, architecture and recipe never change once weights are shipped:
# any change is a new version (…-v2) so that old metric values stay comparable.
# No label smoothing: it caps the classifier's confidence (p(y|x) ~ 0.91 with smoothing
# 0.1), and with it the classifier score of real data: a smoothed MNIST net scored 5.4 on
# 400 test digits where this recipe scores 8.6 (9.81 on all 10,000, of at most 10).
_SMALL_LENET = LeNetConfig(in_channels=1, size=28, conv1=16, conv2=32, hidden=128, num_classes=10, dropout=0.3)

SPECS: dict[str, FeatureNetSpec] = {
    spec.name: spec
    for spec in (
        FeatureNetSpec(
            name="mnist-lenet-v1",
            dataset="mnist",
            version=1,
            arch=_SMALL_LENET,
            # Digits are not mirror-symmetric (2 vs 5...): shifts only.
            recipe=Recipe(epochs=10, max_shift=2, hflip=False),
        ),
        FeatureNetSpec(
            name="fashion-mnist-lenet-v1",
            dataset="fashion-mnist",
            version=1,
            arch=_SMALL_LENET,
            # Garments are mirror-symmetric classes; shifts of 1 px keep their framing.
            recipe=Recipe(epochs=13, max_shift=1, hflip=True),
        ),
        FeatureNetSpec(
            name="fsdd-digits-v1",
            dataset="fsdd",
            version=1,
            arch=SpokenDigitConfig(length=4000),  # data.clip_samples=4000 (0.5 s): the fsdd default
            # No augmentation: the test takes are by the same six speakers; 20 epochs of 42 steps.
            recipe=Recipe(epochs=20, batch_size=64, max_shift=0, hflip=False),
        ),
    )
}

# Datasets whose samples are judged by another dataset's network: binarized MNIST is
# MNIST digits thresholded or Bernoulli-sampled, so the MNIST classifier reads them.
FEATURE_NET_OF_DATASET: dict[str, str] = {
    "mnist": "mnist-lenet-v1",
    "binarized-mnist": "mnist-lenet-v1",
    "dynamic-binarized-mnist": "mnist-lenet-v1",
    "fashion-mnist": "fashion-mnist-lenet-v1",
    "fsdd": "fsdd-digits-v1",
}


def spec_for_dataset(data_name: str) -> FeatureNetSpec:
    """The spec of the network *trained on* ``data_name`` (for ``train_feature_net``)."""
    for spec in SPECS.values():
        if spec.dataset == data_name:
            return spec
    trainable = ", ".join(sorted(s.dataset for s in SPECS.values()))
    raise InputError(f"no feature network is defined for dataset {data_name!r}; datasets with one: {trainable}")


def feature_net_name_for(data_name: str) -> str | None:
    """The feature network that judges samples of ``data_name``, or None when there is none."""
    return FEATURE_NET_OF_DATASET.get(data_name)


__all__ = [
    "FEATURE_NET_OF_DATASET",
    "FeatureNetSpec",
    "LeNet",
    "LeNetConfig",
    "Recipe",
    "SPECS",
    "SpokenDigitConfig",
    "SpokenDigitNet",
    "build_net",
    "feature_net_name_for",
    "spec_for_dataset",
]
