"""Feature networks: shipped weights and their manifest, sha256 checks, extraction,
the Inception-v3 loader's errors and call convention, and the training recipe."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from genlab.eval import features as fe
from genlab.eval.feature_nets import SPECS, LeNet, LeNetConfig, Recipe, feature_net_name_for, spec_for_dataset
from genlab.eval.feature_nets.train import accuracy, augment, fit, lr_at
from genlab.eval.features import FeatureNetError, extract, load_feature_net, load_inception

TARGETS = {"mnist-lenet-v1": 99.3, "fashion-mnist-lenet-v1": 92.0}


# ----------------------------------------------------------------------------------------------
# Shipped weights


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_shipped_weights_match_their_manifest(name):
    entry = fe.read_manifest()[name]
    path = fe.WEIGHTS_DIR / entry["file"]
    assert fe.sha256_file(path) == entry["sha256"]
    assert path.stat().st_size == entry["bytes"] < 2_000_000
    assert entry["test_accuracy"] >= TARGETS[name]
    assert entry["dataset"] == SPECS[name].dataset and entry["version"] == SPECS[name].version
    assert entry["feature_dim"] == SPECS[name].arch.hidden and "recipe" in entry
    net = load_feature_net(name)
    assert net.dim == entry["feature_dim"] and net.sha256 == entry["sha256"]
    assert not net.net.training and not any(p.requires_grad for p in net.net.parameters())


def test_sha256_mismatch_is_a_clear_error(tmp_path):
    shutil.copytree(fe.WEIGHTS_DIR, tmp_path / "w")
    path = tmp_path / "w" / "mnist-lenet-v1.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip one byte of the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(FeatureNetError, match="sha256 mismatch") as err:
        load_feature_net("mnist-lenet-v1", tmp_path / "w")
    assert "genlab features train --data mnist" in str(err.value) and str(path) in str(err.value)


def test_missing_weights_and_unknown_names_are_clear_errors(tmp_path):
    shutil.copytree(fe.WEIGHTS_DIR, tmp_path / "w")
    (tmp_path / "w" / "fashion-mnist-lenet-v1.safetensors").unlink()
    with pytest.raises(FeatureNetError, match="not found.*retrain with `genlab features train --data fashion-mnist`"):
        load_feature_net("fashion-mnist-lenet-v1", tmp_path / "w")
    with pytest.raises(FeatureNetError, match="has no entry"):
        load_feature_net("mnist-lenet-v1", tmp_path / "empty")
    with pytest.raises(FeatureNetError, match="unknown feature network 'mnist-lenet-v9'.*mnist-lenet-v1"):
        load_feature_net("mnist-lenet-v9")


def test_dataset_to_network_mapping():
    assert feature_net_name_for("binarized-mnist") == "mnist-lenet-v1"
    assert feature_net_name_for("fashion-mnist") == "fashion-mnist-lenet-v1"
    assert feature_net_name_for("frey") is None
    with pytest.raises(ValueError, match="no feature network is defined for dataset 'frey'"):
        spec_for_dataset("frey")


@pytest.mark.parametrize("dataset, name, floor", [("mnist", "mnist-lenet-v1", 0.985),
                                                  ("fashion-mnist", "fashion-mnist-lenet-v1", 0.90)])
def test_shipped_network_classifies_real_test_images(data_root, dataset, name, floor):
    from genlab.config import DataConfig
    from genlab.data import load_dataset

    test = load_dataset(dataset, "test", DataConfig(root=str(data_root)))
    idx = torch.arange(0, len(test), 10)  # 1000 images
    out = extract(load_feature_net(name), test.batch(idx)["x"])
    assert out.features.shape == (1000, 128) and out.logits.shape == (1000, 10)
    assert (out.features >= 0).all()  # after ReLU
    assert (out.logits.argmax(1) == test.labels[idx]).double().mean() > floor


# ----------------------------------------------------------------------------------------------
# Extraction


def _toy_net() -> fe.FeatureNet:
    torch.manual_seed(0)
    return fe.FeatureNet("toy", LeNet(LeNetConfig(conv1=4, conv2=8, hidden=16)).eval(), 16, 10, (1, 28, 28),
                         "toy", "0" * 64, "mnist")


def test_extraction_is_chunked_independently_of_the_caller():
    net = _toy_net()
    x = torch.rand(fe.FEATURE_CHUNK + 30, 1, 28, 28)
    whole = extract(net, x)
    assert torch.equal(extract(net, x[: fe.FEATURE_CHUNK]).features, whole.features[: fe.FEATURE_CHUNK])
    assert torch.equal(extract(net, x).features, whole.features)
    assert whole.features.dtype == torch.float32 and whole.features.device.type == "cpu"


def test_extraction_rejects_wrong_inputs():
    net = _toy_net()
    with pytest.raises(ValueError, match="reads 1x28x28 images"):
        extract(net, torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        extract(net, torch.rand(2, 1, 28, 28) * 255)
    with pytest.raises(ValueError, match="divide uint8 by 255"):
        extract(net, torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_save_and_load_round_trip(tmp_path):
    spec = SPECS["mnist-lenet-v1"]
    torch.manual_seed(1)
    net = LeNet(spec.arch).eval()
    entry = fe.save_feature_net(net, spec, tmp_path, test_accuracy=12.5, seed=7)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["mnist-lenet-v1"] == entry and entry["sha256"] == fe.sha256_file(tmp_path / entry["file"])
    loaded = load_feature_net("mnist-lenet-v1", tmp_path)
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(loaded.net.features(x), net.features(x))


# ----------------------------------------------------------------------------------------------
# Inception-v3


def test_missing_inception_weights_name_the_file_to_get(tmp_path, monkeypatch):
    monkeypatch.delenv(fe.INCEPTION_ENV, raising=False)
    with pytest.raises(FeatureNetError, match="no Inception-v3 weights file given") as err:
        load_inception(None)
    assert fe.INCEPTION_FILE in str(err.value) and fe.INCEPTION_URL in str(err.value)
    assert fe.INCEPTION_SHA256 in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FeatureNetError, match="not found: .*nope.pt"):
        load_inception(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not weights")
    with pytest.raises(FeatureNetError, match="not the official Inception-v3"):
        load_inception(junk)
    with pytest.raises(FeatureNetError, match="not an Inception-v3 state dict of tensors"):
        load_inception(junk, allow_unverified=True)


# ----------------------------------------------------------------------------------------------
# Training recipe


def test_one_cycle_schedule():
    r = Recipe(lr=1.0, warmup_fraction=0.1)
    assert lr_at(0, 100, r) == pytest.approx(0.1) and lr_at(9, 100, r) == pytest.approx(1.0)
    assert lr_at(10, 100, r) == pytest.approx(1.0) and lr_at(100, 100, r) == pytest.approx(0.0, abs=1e-12)
    lrs = [lr_at(s, 100, r) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_augment_shifts_whole_images_and_flips():
    x = torch.zeros(64, 1, 10, 10)
    x[:, :, 4, 5] = 1.0  # one lit pixel
    g = torch.Generator().manual_seed(0)
    out = augment(x, Recipe(max_shift=2, hflip=False), g)
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(64))  # the pixel moves, never vanishes
    rows, cols = out[:, 0].nonzero(as_tuple=True)[1:]
    assert set(rows.tolist()) == {2, 3, 4, 5, 6} and set(cols.tolist()) == {3, 4, 5, 6, 7}
    assert torch.equal(augment(x, Recipe(max_shift=0), g), x)
    flipped = augment(x, Recipe(max_shift=0, hflip=True), g)
    assert set(flipped[:, 0, 4].argmax(1).tolist()) == {5, 4}  # column 5 or its mirror 9 - 5


def test_fit_learns_a_toy_task_reproducibly():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (512,), generator=g)
    x = torch.rand(512, 1, 8, 8, generator=g) * 0.3
    x[y == 1, :, :4] += 0.7  # class 1: bright top half
    arch = LeNetConfig(size=8, conv1=4, conv2=4, hidden=8, num_classes=2)
    recipe = Recipe(epochs=3, batch_size=32, lr=1e-2, max_shift=1)
    state = torch.random.get_rng_state()
    net = fit(arch, recipe, x, y, seed=0, log=lambda *_: None)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert accuracy(net, x, y) > 95
    again = fit(arch, recipe, x, y, seed=0, log=lambda *_: None)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
