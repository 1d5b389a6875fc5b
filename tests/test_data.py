"""The data layer: real files against MANIFEST.md section 2, and every failure path.

Real-data tests read the shared data folder (``data_root`` fixture: GENLAB_DATA or
shared/data beside the repository) and skip without it. Corruption, download and
parser tests work on copies and tiny files in ``tmp_path``; nothing touches ~.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data_helpers import RunsCode, cifar_tarball, py2_pickle
from genlab.config import DataConfig
from genlab.data import DatasetError, check_datasets, list_datasets, load_dataset
from genlab.data import data_root as resolve_root
from genlab.data import download, dynamic
from genlab.data.amat import parse_amat
from genlab.data.base import images_sha256
from genlab.data.catalog import seeded_split
from genlab.data.cifar import parse_cifar10_tarball
from genlab.data.download import DataFile, ensure_file, hash_file
from genlab.data.idx import parse_idx
from genlab.registry import DATASETS

ALL = {"digits", "mnist", "fashion-mnist", "binarized-mnist", "dynamic-binarized-mnist", "frey", "cifar10", "folder"}
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def cfg_at(root, **extra) -> DataConfig:
    return DataConfig(root=str(root), **extra)


def pixel_stats(ds) -> tuple[float, float]:
    """Mean and std of the pixels on [0, 1], from exact integer sums (population std, as numpy)."""
    k = ds.images.to(torch.int64)
    scale, n = (255.0 if ds.spec.bits == 8 else 1.0), k.numel()
    s1, s2 = k.sum().item(), (k * k).sum().item()
    mean = s1 / n
    return mean / scale, (s2 / n - mean * mean) ** 0.5 / scale


# ---------------------------------------------------------------- registry and API


def test_every_dataset_is_registered_and_listed():
    assert ALL <= set(DATASETS.names())
    listed = {d["name"]: d for d in list_datasets()}
    assert ALL <= set(listed)
    assert listed["mnist"]["shape"] == [1, 28, 28] and listed["mnist"]["bits"] == 8
    assert listed["binarized-mnist"]["splits"] == {"train": 50000, "valid": 10000, "test": 10000}
    assert listed["frey"]["files"] == ["frey/frey_rawface.mat"]
    assert listed["cifar10"]["classes"] == 10 and listed["cifar10"]["shape"] == [3, 32, 32]


def test_unknown_name_or_split_lists_the_valid_ones(tmp_path):
    with pytest.raises(DatasetError, match="binarized-mnist.*mnist"):
        load_dataset("mnits", "train", cfg_at(tmp_path))
    with pytest.raises(DatasetError, match="train, test"):
        load_dataset("mnist", "valid", cfg_at(tmp_path))


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "env"))
    assert resolve_root(cfg_at(tmp_path / "cfg")) == tmp_path / "cfg"
    assert resolve_root(DataConfig()) == tmp_path / "env"
    monkeypatch.delenv("GENLAB_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_root(DataConfig()) == tmp_path / "home" / ".cache" / "genlab" / "data"


def test_seeded_split_is_a_fixed_partition():
    s = seeded_split(1965, 200, seed=0)
    assert len(s["test"]) == 200 and len(s["train"]) == 1765
    assert sorted(torch.cat([s["train"], s["test"]]).tolist()) == list(range(1965))
    assert torch.equal(s["test"], seeded_split(1965, 200, seed=0)["test"])
    assert not torch.equal(s["test"], seeded_split(1965, 200, seed=1)["test"])
    assert torch.equal(s["test"], s["test"].sort().values)  # file order kept inside a split


# ---------------------------------------------------------------- digits (no file)


def test_digits_loads_without_any_file(tmp_path):
    from sklearn.datasets import load_digits

    cfg = cfg_at(tmp_path / "empty")
    train, test = load_dataset("digits", "train", cfg), load_dataset("digits", "test", cfg)
    assert (len(train), len(test)) == (1497, 300)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (1, 8, 8)
    assert train.spec.bits == 8 and train.spec.num_classes == 10 and train.transform == "scale"
    assert "300" in test.note and "seed" in test.note
    ref = load_digits()
    index = seeded_split(1797, 300, 0)["test"]
    expected = np.floor(ref.images[index.numpy()] * 255 / 16 + 0.5)  # round half up
    assert np.array_equal(test.images[:, 0].numpy(), expected)
    both = torch.cat([train.labels, test.labels])
    assert torch.bincount(both, minlength=10).tolist() == np.bincount(ref.target, minlength=10).tolist()
    assert torch.equal(test.images, load_dataset("digits", "test", cfg).images)


# ---------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def mnist(data_root):
    cfg = cfg_at(data_root)
    return load_dataset("mnist", "train", cfg), load_dataset("mnist", "test", cfg)


def test_mnist_matches_manifest(mnist):
    train, test = mnist
    for ds, n, counts, first, mean, std in [
        (train, 60000, MNIST_TRAIN_COUNTS, [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], 0.1307, 0.3081),
        (test, 10000, MNIST_TEST_COUNTS, [7, 2, 1, 0, 4, 1, 4, 9, 5, 9], 0.1325, 0.3105),
    ]:
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.labels.dtype == torch.int64
        assert torch.bincount(ds.labels, minlength=10).tolist() == counts
        assert ds.labels[:10].tolist() == first
        m, s = pixel_stats(ds)
        assert m == pytest.approx(mean, abs=5e-5) and s == pytest.approx(std, abs=5e-5)
        assert ds.spec.bits == 8 and ds.transform == "scale"
    batch = train.batch(torch.arange(4))
    assert batch["x"].dtype == torch.float32 and torch.equal(batch["x"] * 255, train.images[:4].float())


def test_fashion_mnist_matches_manifest(data_root):
    cfg = cfg_at(data_root)
    for split, n, per_class, first, mean, std in [
        ("train", 60000, 6000, [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], 0.2860, 0.3530),
        ("test", 10000, 1000, [9, 2, 1, 1, 6, 1, 4, 6, 5, 7], 0.2868, 0.3524),
    ]:
        ds = load_dataset("fashion-mnist", split, cfg)
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert torch.bincount(ds.labels, minlength=10).tolist() == [per_class] * 10
        assert ds.labels[:10].tolist() == first
        m, s = pixel_stats(ds)
        assert m == pytest.approx(mean, abs=5e-5) and s == pytest.approx(std, abs=5e-5)


def test_binarized_mnist_matches_manifest(data_root):
    cfg = cfg_at(data_root)
    for split, n, mean in [("train", 50000, 0.13056), ("valid", 10000, 0.13113), ("test", 10000, 0.13251)]:
        ds = load_dataset("binarized-mnist", split, cfg)
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.labels is None and ds.spec.bits == 1 and ds.spec.num_classes == 0
        assert ds.transform == "binary" and ds.images.max().item() == 1
        assert pixel_stats(ds)[0] == pytest.approx(mean, abs=5e-6)
        x = ds.batch(torch.arange(8))["x"]
        assert torch.equal(x, x.round()) and "y" not in ds.batch(torch.arange(2))


def test_frey_matches_manifest(data_root):
    cfg = cfg_at(data_root)
    train, test = load_dataset("frey", "train", cfg), load_dataset("frey", "test", cfg)
    assert (len(train), len(test)) == (1765, 200)
    faces = torch.cat([train.images, test.images])
    assert faces.shape == (1965, 1, 28, 20) and faces.dtype == torch.uint8
    assert (faces.min().item(), faces.max().item()) == (8, 238)
    assert (faces.double() / 255).mean().item() == pytest.approx(0.6057, abs=5e-5)
    assert train.labels is None and train.spec.bits == 8 and "200" in test.note


def test_dynamic_binarization(data_root, mnist):
    cfg = cfg_at(data_root)
    mnist_train, mnist_test = mnist
    test = load_dataset("dynamic-binarized-mnist", "test", cfg)
    assert test.transform == "binary" and test.spec.bits == 1 and "seed 0" in test.note
    assert torch.equal(test.images, load_dataset("dynamic-binarized-mnist", "test", cfg).images)
    assert torch.equal(test.labels, mnist_test.labels)
    other = load_dataset("dynamic-binarized-mnist", "test", cfg_at(data_root, test_binarization_seed=1))
    assert not torch.equal(test.images, other.images) and "seed 1" in other.note
    # Bernoulli(k/255): a 0-intensity pixel is never 1, a 255 pixel always is.
    k = mnist_test.images
    assert not test.images[k == 0].any() and test.images[k == 255].all()
    p = k.double() / 255
    sd = (p * (1 - p)).sum().sqrt().item() / p.numel()  # std of the mean of independent Bernoullis
    assert abs(test.images.double().mean().item() - p.mean().item()) < 5 * sd

    train = load_dataset("dynamic-binarized-mnist", "train", cfg)
    assert train.transform == "bernoulli" and train.spec.bits == 1
    assert torch.equal(train.images, mnist_train.images)  # intensities kept, binarized per batch
    index = torch.arange(512)
    a = train.batch(index, torch.Generator().manual_seed(1))["x"]
    b = train.batch(index, torch.Generator().manual_seed(2))["x"]
    assert set(a.unique().tolist()) == {0.0, 1.0} and not torch.equal(a, b)
    p = train.images[index].double() / 255
    sd = (p * (1 - p)).sum().sqrt().item() / p.numel()
    assert abs(a.double().mean().item() - p.mean().item()) < 5 * sd


def test_dynamic_test_binarization_is_the_pinned_one(data_root, monkeypatch):
    # The seed-0 test binarization depends on torch's Bernoulli kernel: its checksum is pinned and
    # carried by the split's note (hence by every metric's protocol), so a changed kernel is noticed.
    test = load_dataset("dynamic-binarized-mnist", "test", cfg_at(data_root))
    sha = images_sha256(test.images)
    assert sha == dynamic.PINNED_TEST_SHA256[0]
    assert f"sha256 {sha} (the pinned binarization)" in test.note
    monkeypatch.setitem(dynamic.PINNED_TEST_SHA256, 0, "0" * 64)
    with pytest.warns(UserWarning, match="not comparable"):
        other = load_dataset("dynamic-binarized-mnist", "test", cfg_at(data_root))
    assert "NOT the pinned binarization" in other.note


def test_check_datasets_on_shared_data(data_root):
    status = {r["name"]: r for r in check_datasets(cfg_at(data_root))}
    for name in ("mnist", "fashion-mnist", "binarized-mnist", "dynamic-binarized-mnist", "frey", "digits"):
        assert status[name]["status"] == "ok", status[name]["message"]
    assert status["cifar10"]["status"] == "missing"
    assert "cifar-10-python.tar.gz" in status["cifar10"]["message"]


# ---------------------------------------------------------------- missing and corrupt files


def copy_into(data_root: Path, tmp_root: Path, relpath: str) -> Path:
    dest = tmp_root / relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_root / relpath, dest)
    return dest


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_missing_file_says_where_to_put_it(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", "test", cfg_at(tmp_path))
    text = str(err.value)
    assert str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz") in text
    assert "9fb629c4189551a2d022fa330f9573f3" in text and f"put the official file in: {tmp_path / 'mnist'}" in text
    assert "http://yann.lecun.com/exdb/mnist/t10k-images-idx3-ubyte.gz" in text
    for option in ("--set data.download=true", "--data-root", "GENLAB_DATA"):
        assert option in text
    assert err.value.kind == "missing"


def test_corrupt_mnist_label_file(data_root, tmp_path):
    copy_into(data_root, tmp_path, "mnist/t10k-images-idx3-ubyte.gz")
    labels = copy_into(data_root, tmp_path, "mnist/t10k-labels-idx1-ubyte.gz")
    flip_byte(labels, 100)
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", "test", cfg_at(tmp_path))
    assert str(labels) in str(err.value) and "ec29112dd5afa0611ce80d1b7f02629c" in str(err.value)
    assert err.value.kind == "corrupt"
    assert {r["name"]: r["status"] for r in check_datasets(cfg_at(tmp_path), ["mnist"])} == {"mnist": "corrupt"}


def test_truncated_binarized_gz_and_frey(data_root, tmp_path):
    amat = copy_into(data_root, tmp_path, "binarized-mnist/binarized_mnist_test.amat.gz")
    amat.write_bytes(amat.read_bytes()[:100_000])
    with pytest.raises(DatasetError) as err:
        load_dataset("binarized-mnist", "test", cfg_at(tmp_path))
    assert str(amat) in str(err.value) and "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c" in str(err.value)
    frey = copy_into(data_root, tmp_path, "frey/frey_rawface.mat")
    frey.write_bytes(frey.read_bytes()[:-10])
    with pytest.raises(DatasetError) as err:
        load_dataset("frey", "train", cfg_at(tmp_path))
    assert str(frey) in str(err.value) and "5aeb024d42b8a6091f30e5eb18c8a48d" in str(err.value)


def test_gunzipped_copies_are_accepted(data_root, mnist, tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / "mnist").mkdir(exist_ok=True)
        (tmp_path / "mnist" / name).write_bytes(gzip.decompress((data_root / "mnist" / f"{name}.gz").read_bytes()))
    test = load_dataset("mnist", "test", cfg_at(tmp_path))
    assert torch.equal(test.images, mnist[1].images) and torch.equal(test.labels, mnist[1].labels)
    raw = tmp_path / "binarized-mnist" / "binarized_mnist_valid.amat"
    raw.parent.mkdir()
    raw.write_bytes(gzip.decompress((data_root / "binarized-mnist" / "binarized_mnist_valid.amat.gz").read_bytes()))
    assert pixel_stats(load_dataset("binarized-mnist", "valid", cfg_at(tmp_path)))[0] == pytest.approx(0.13113, abs=5e-6)
    flip_byte(raw, 0)  # "0" <-> a non-digit: now the official sha256 must catch it
    with pytest.raises(DatasetError, match="1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"):
        load_dataset("binarized-mnist", "valid", cfg_at(tmp_path))


def test_checksum_stamp_skips_rehash_until_the_file_changes(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "FRESH_NS", 0)  # the copy below is fresh; cache it all the same
    path = copy_into(data_root, tmp_path, "frey/frey_rawface.mat")
    load_dataset("frey", "test", cfg_at(tmp_path))
    assert (path.parent / download.STAMP_NAME).is_file()
    calls = []
    real = download.hash_bytes
    monkeypatch.setattr(download, "hash_bytes", lambda data, algo: calls.append(algo) or real(data, algo))
    download._memo.clear()  # a new process: only the JSON stamp remains
    load_dataset("frey", "test", cfg_at(tmp_path))
    assert calls == []
    flip_byte(path, 5000)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(DatasetError, match="5aeb024d42b8a6091f30e5eb18c8a48d"):
        load_dataset("frey", "test", cfg_at(tmp_path))
    assert calls == ["md5"]


def test_no_stamp_in_a_read_only_folder(data_root, tmp_path):
    path = copy_into(data_root, tmp_path, "frey/frey_rawface.mat")
    path.parent.chmod(0o555)  # like the shared data folder; root could still write, and must not
    try:
        assert len(load_dataset("frey", "test", cfg_at(tmp_path))) == 200
        assert not (path.parent / download.STAMP_NAME).exists()
    finally:
        path.parent.chmod(0o755)


# ---------------------------------------------------------------- download (file:// URLs, no network)


def test_download_tries_mirrors_and_replaces_atomically(data_root, tmp_path):
    source = data_root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    good = source.as_uri()
    bad = (tmp_path / "nowhere.gz").as_uri()
    wrong = (data_root / "mnist" / "train-labels-idx1-ubyte.gz").as_uri()
    spec = DataFile("mnist/t10k-labels-idx1-ubyte.gz", "md5:ec29112dd5afa0611ce80d1b7f02629c", (bad, wrong, good))
    with pytest.raises(DatasetError, match="not found"):
        ensure_file(spec, tmp_path, download=False)  # never fetches unless asked
    dest = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    dest.parent.mkdir()
    dest.write_bytes(b"partial download")  # a corrupt local copy is replaced
    form = ensure_file(spec, tmp_path, download=True)
    assert form.path == dest and dest.read_bytes() == source.read_bytes()
    assert not list(dest.parent.glob("*.part"))
    only_wrong = DataFile("mnist/t10k-images-idx3-ubyte.gz", "md5:9fb629c4189551a2d022fa330f9573f3", (bad, wrong))
    with pytest.raises(DatasetError) as err:
        ensure_file(only_wrong, tmp_path, download=True)
    assert "wrong checksum" in str(err.value) and "nowhere.gz" in str(err.value)
    assert not (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(dest.parent.glob("*.part"))
    assert hash_file(dest, "md5") == spec.checksum


# ---------------------------------------------------------------- parsers on crafted bytes


def test_parse_amat_and_its_errors():
    rows = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], dtype=np.uint8)
    text = b"".join(b" ".join(b"%d" % v for v in r) + b"\n" for r in rows)
    assert np.array_equal(parse_amat(text, "x.amat", pixels=4), rows)
    with pytest.raises(DatasetError, match=r"x\.amat.*line 2 has 9 characters"):
        parse_amat(text.replace(b"1 1 0 0", b"1 1 0 0 1"), "x.amat", pixels=4)
    with pytest.raises(DatasetError, match="line 1 has a value other than 0 or 1"):
        parse_amat(text.replace(b"0 1 1 0", b"0 1 2 0"), "x.amat", pixels=4)
    with pytest.raises(DatasetError, match="line 2 does not end with a newline"):
        parse_amat(text[:-1], "x.amat", pixels=4)


def test_parse_idx_errors():
    good = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3])
    assert parse_idx(good).tolist() == [1, 2, 3]
    with pytest.raises(DatasetError, match=r"f\.idx.*holds 2"):
        parse_idx(good[:-1], "f.idx")
    with pytest.raises(DatasetError, match="not an IDX file"):
        parse_idx(b"\x1f\x8b" + good, "f.idx")


def test_cifar10_parser_on_a_tiny_archive(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    written = cifar_tarball(path, per_batch=3)
    out = parse_cifar10_tarball(path)
    images, labels = out["train"]
    assert images.shape == (15, 3, 32, 32) and images.dtype == np.uint8 and labels.dtype == np.int64
    expected = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert np.array_equal(images, expected)  # batch order, then R/G/B planes row-major
    assert images[4, 0, 0, 0] == 21 and images[4, 1, 7, 0] == 7 and images[4, 2, 0, 9] == 9
    assert labels.tolist() == [lab for i in range(1, 6) for lab in written[f"data_batch_{i}"][1]]
    assert np.array_equal(out["test"][0], written["test_batch"][0])
    # Plain protocol-4/5 pickles (bytes keys) read the same.
    data, labs = written["test_batch"]
    for protocol in (4, 5):
        blob = pickle.dumps({b"data": data.reshape(3, -1), b"labels": labs.tolist()}, protocol=protocol)
        cifar_tarball(path, members={"test_batch": blob})
        assert np.array_equal(parse_cifar10_tarball(path, ["test"])["test"][0], data)


def test_cifar10_refuses_code_in_pickles(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "cifar-10-python.tar.gz"
    cifar_tarball(path, members={"test_batch": py2_pickle({"data": RunsCode(f"touch {marker}"), "labels": []})})
    with pytest.raises(DatasetError) as err:
        parse_cifar10_tarball(path, ["test"])
    assert "refused" in str(err.value) and "system" in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()
    cifar_tarball(path, members={"test_batch": pickle.dumps(RunsCode(f"touch {marker}"))})
    with pytest.raises(DatasetError, match="refused"):
        parse_cifar10_tarball(path, ["test"])
    assert not marker.exists()


def test_cifar10_missing_member_and_unofficial_archive(tmp_path):
    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    cifar_tarball(path)
    with pytest.raises(DatasetError, match="c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", "train", cfg_at(tmp_path))  # a tiny archive is not the official file
    (tmp_path / "garbage.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DatasetError, match="garbage.tar.gz"):
        parse_cifar10_tarball(tmp_path / "garbage.tar.gz")


# ---------------------------------------------------------------- user folders


@pytest.fixture
def image_folder(tmp_path) -> Path:
    from PIL import Image

    root = tmp_path / "images"
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "deep").mkdir(parents=True)
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255
    rgba[:6, :, 3] = 0  # top half transparent -> white
    Image.fromarray(rgba).save(root / "cats" / "a_rgba.png")
    Image.fromarray(np.full((12, 12), 257 * 100, np.uint16)).save(root / "cats" / "b_grey16.png")
    Image.fromarray(np.full((12, 12), 65535, np.uint16)).save(root / "cats" / "c_grey16_max.png")
    Image.fromarray(np.full((12, 12), 200, np.uint8)).save(root / "dogs" / "d_grey.jpg", quality=95)
    Image.fromarray(np.full((12, 12, 3), (0, 0, 255), np.uint8)).save(root / "dogs" / "deep" / "e_rgb.png")
    (root / "dogs" / "notes.txt").write_text("not an image, ignored")
    return root


def load_folder(root, **opts):
    cfg = cfg_at(root.parent, path=str(root), **opts)
    return {split: load_dataset("folder", split, cfg) for split in ("train", "test")}


def test_folder_dataset_mixed_modes(image_folder):
    grey = load_folder(image_folder, image_channels=1, image_size=0, test_fraction=0.2)
    assert (len(grey["train"]), len(grey["test"])) == (4, 1)
    images = torch.cat([grey["train"].images, grey["test"].images])
    labels = torch.cat([grey["train"].labels, grey["test"].labels])
    order = torch.cat([seeded_split(5, 1, 0)["train"], seeded_split(5, 1, 0)["test"]])
    images, labels = images[order.argsort()], labels[order.argsort()]  # back to sorted-file order
    assert images.shape == (5, 1, 12, 12) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1]  # cats < dogs, nested files keep their class
    assert grey["train"].spec.num_classes == 2 and grey["train"].spec.channels == 1
    luma_red = round(0.299 * 255)
    assert images[0, 0, 0, 0] == 255 and abs(int(images[0, 0, 11, 0]) - luma_red) <= 1  # RGBA over white
    assert (images[1] == 100).all() and (images[2] == 255).all()  # 16-bit / 257, not clipped
    assert (images[3].int() - 200).abs().max() <= 2  # grey JPEG, lossy
    rgb = load_folder(image_folder, image_channels=3, image_size=8, test_fraction=0.2)
    x = torch.cat([rgb["train"].images, rgb["test"].images])[order.argsort()]
    assert x.shape == (5, 3, 8, 8) and rgb["test"].spec.height == 8
    assert x[0, :, 7, 4].tolist() == [255, 0, 0] and x[0, :, 0, 4].tolist() == [255, 255, 255]
    assert x[4, :, 4, 4].tolist() == [0, 0, 255]


def test_folder_dataset_errors(image_folder, tmp_path):
    bad = image_folder / "dogs" / "z_truncated.png"
    bad.write_bytes((image_folder / "cats" / "a_rgba.png").read_bytes()[:60])
    cfg = cfg_at(tmp_path, path=str(image_folder), test_fraction=0.5)
    errors = []
    for split in ("train", "test"):
        try:
            load_dataset("folder", split, cfg)
        except DatasetError as err:
            errors.append(str(err))
    assert len(errors) == 1 and str(bad) in errors[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_dataset("folder", "train", cfg_at(tmp_path, path=str(tmp_path / "empty")))
    with pytest.raises(DatasetError, match="data.path"):
        load_dataset("folder", "train", cfg_at(tmp_path))
    shutil.copyfile(image_folder / "cats" / "a_rgba.png", image_folder / "loose.png")
    with pytest.raises(DatasetError, match="mixes images"):
        load_dataset("folder", "train", cfg)
    (bad).write_bytes(b"garbage")
    (image_folder / "loose.png").unlink()
    report = check_datasets(cfg, ["folder"])[0]
    assert report["status"] == "corrupt" and str(bad) in report["message"]


def test_folder_sizes_must_agree_without_image_size(tmp_path):
    from PIL import Image

    root = tmp_path / "flat"
    root.mkdir()
    for i, size in enumerate([(10, 10), (10, 10), (12, 10)]):
        Image.fromarray(np.zeros(size[::-1], np.uint8)).save(root / f"{i}.png")
    cfg = cfg_at(tmp_path, path=str(root), image_channels=1, test_fraction=0.34)
    errors = []
    for split in ("train", "test"):  # the odd image fails whichever split holds it
        try:
            assert load_dataset("folder", split, cfg).images.shape[2:] == (10, 10)
        except DatasetError as err:
            errors.append(str(err))
    assert len(errors) == 1 and "2.png is 12x10" in errors[0] and "image_size" in errors[0]
    out = load_folder(root, image_channels=1, image_size=6, test_fraction=0.34)
    assert out["train"].labels is None and out["train"].images.shape == (2, 1, 6, 6)


def test_folder_resize_crops_before_filtering(tmp_path):
    """A wide image: the centred square is uniform grey, the bands outside it black; none of the black may
    leak into the resized square's edge pixels (Lanczos reads neighbours, so crop first, then resize)."""
    from PIL import Image

    from genlab.data.folder import read_image

    a = np.zeros((30, 50), np.uint8)
    a[:, 10:40] = 180  # centred 30x30 square
    Image.fromarray(a).save(tmp_path / "wide.png")
    x = read_image(tmp_path / "wide.png", channels=1, size=7)
    assert x.shape == (1, 7, 7) and (x == 180).all()
    tall = np.zeros((41, 21), np.uint8)
    tall[10:31, :] = 90  # odd leftover: the square starts at row (41 - 21) // 2 = 10
    Image.fromarray(tall).save(tmp_path / "tall.png")
    assert (read_image(tmp_path / "tall.png", channels=1, size=5) == 90).all()
