"""What genlab promises about files a user is handed, and about the machine it runs on.

* No code runs from a file: every loader of user-supplied files (Inception weights,
  feature-network weights, checkpoints, images, dataset files, ood scores) is handed a
  payload that writes a marker file if anything in it ran; the marker must stay absent
  and the loader must say what it refused.
* Data checks can be trusted: `genlab data check` always hashes; the checksum cache
  vouches only for files genlab hashed itself; a read-only data root works.
* An unknown or absent device, an unwritable --out and an unreadable run folder each
  give one line, never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from data_helpers import cifar_tarball
from genlab.cli import main
from genlab.config import DataConfig
from genlab.data import check_datasets, download, load_dataset
from genlab.data.amat import parse_amat
from genlab.data.errors import DatasetError
from genlab.data.folder import MAX_IMAGE_PIXELS, open_image, read_image
from genlab.data.frey import parse_frey
from genlab.eval import features as fe
from genlab.eval.feature_nets.inception import FIDInceptionV3, resize_bilinear_tf1
from genlab.eval.features import FeatureNetError, extract, load_feature_net, load_inception
from genlab.ood.images import ImageReadError, read_user_image
from genlab.ood.run import read_ood_scores
from genlab.nn.spec import DataSpec
from genlab.train.checkpoint import CheckpointError, list_checkpoints, load_latest
from payloads import code_pickle, torch_save_payload, torchscript_payload

TINY = ["--set", "model.channels=8,16", "--set", "model.hidden=32", "--set", "train.progress=false",
        "--batch-size", "32", "--device", "cpu"]


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--steps", "4", "--set", "latent_dim=2",
                 *TINY]) == 0
    return run


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code-ran.txt"


# ----------------------------------------------------------------------------------------------
# Inception weights: sha256 pinned, tensors only, genlab's own network


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A state dict of genlab's FID Inception with seeded random weights, saved by torch.save."""
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return net, path


@pytest.mark.parametrize("opt_in", [False, True])
def test_torchscript_inception_never_runs(tmp_path, marker, opt_in):
    path = torchscript_payload(tmp_path / "inception-2015-12-05.pt", marker)
    with pytest.raises(FeatureNetError) as err:
        load_inception(path, allow_unverified=opt_in)
    assert not marker.exists()
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    assert ("TorchScript program" if opt_in else fe.INCEPTION_SHA256) in text


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_pickled_inception_never_runs(tmp_path, marker, kind):
    path = tmp_path / fe.INCEPTION_FILE  # the official name does not make it the official file
    if kind == "pickle":
        path.write_bytes(code_pickle(marker))
    else:
        torch_save_payload(path, marker)
    with pytest.raises(FeatureNetError, match="not the official Inception-v3"):
        load_inception(path)
    with pytest.raises(FeatureNetError, match="not an Inception-v3 state dict of tensors"):
        load_inception(path, allow_unverified=True)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["--inception-weights", "GENLAB_INCEPTION"])
def test_eval_refuses_a_torchscript_inception_in_one_line(trained_run, tmp_path, marker, capsys, monkeypatch, how):
    path = torchscript_payload(tmp_path / "inception.pt", marker)
    argv = ["eval", trained_run, "--only", "sample-quality", "--n-samples", "20", "--n-reference", "20",
            "--device", "cpu"]
    if how == "GENLAB_INCEPTION":
        monkeypatch.setenv(fe.INCEPTION_ENV, str(path))
    else:
        argv += ["--inception-weights", path]
    code, _, err = _cli(capsys, *argv)
    assert not marker.exists()
    assert code == 2 and "not the official Inception-v3 FID weights" in _one_line(err)


def test_official_checksum_loads_tensors_into_genlabs_network(random_inception, monkeypatch):
    net, path = random_inception
    monkeypatch.setattr(fe, "INCEPTION_SHA256", fe.sha256_file(path))  # pretend it is the official file
    loaded = load_inception(path)
    assert loaded.name == "inception-v3" and loaded.dim == 2048 and "official weights" in loaded.description
    images = torch.rand(2, 1, 28, 28)
    feats = extract(loaded, images).features
    levels = (images * 255).round().repeat(1, 3, 1, 1)  # grey -> RGB uint8 levels, as the reference code
    assert feats.shape == (2, 2048) and torch.allclose(feats, net.pool3(levels), atol=1e-5)


def test_other_weights_need_the_opt_in_and_are_named_unverified(random_inception, tmp_path):
    net, path = random_inception
    with pytest.raises(FeatureNetError) as err:
        load_inception(path)
    assert "\n" not in str(err.value) and fe.sha256_file(path) in str(err.value)
    assert "--inception-unverified" in str(err.value)
    loaded = load_inception(path, allow_unverified=True)
    assert loaded.name == "inception-v3-unverified" and "UNVERIFIED" in loaded.description
    # A safetensors conversion without BatchNorm's step counters loads too.
    tensors = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(tensors, str(tmp_path / "inception.safetensors"))
    assert load_inception(tmp_path / "inception.safetensors", allow_unverified=True).name == "inception-v3-unverified"
    del tensors["fc.bias"]
    torch.save(tensors, tmp_path / "partial.pth")
    with pytest.raises(FeatureNetError, match="1 tensor.*fc.bias"):
        load_inception(tmp_path / "partial.pth", allow_unverified=True)


def test_fid_inception_has_the_converted_files_tensors():
    state = FIDInceptionV3().state_dict()
    # pt_inception-2015-12-05-6726825d.pth: 566 entries in 95,628,359 bytes (tensors + pickle/zip framing).
    assert len(state) == 566 and state["fc.weight"].shape == (1008, 2048)
    assert sum(v.numel() * v.element_size() for v in state.values()) == 95_542_320


def test_tf1_bilinear_resize_reads_coordinate_i_times_in_over_out():
    row = torch.tensor([0.0, 10.0, 20.0]).view(1, 1, 1, 3).expand(1, 1, 3, 3)
    up = resize_bilinear_tf1(row, 6)
    # src = i * 3 / 6 = 0, .5, 1, 1.5, 2, 2.5 -> the last clamps at pixel 2 (half-pixel resize would not).
    assert up[0, 0, 0].tolist() == [0.0, 5.0, 10.0, 15.0, 20.0, 20.0]
    assert torch.equal(up[0, 0, :, 0], torch.zeros(6))
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(resize_bilinear_tf1(x, 2), x[:, :, ::2, ::2])  # src = 2i exactly
    assert torch.equal(resize_bilinear_tf1(x, 4), x)


# ----------------------------------------------------------------------------------------------
# Feature-network weights and checkpoints: safetensors only


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_feature_weights_folder_with_a_pickle_never_runs(tmp_path, marker, kind):
    name = "mnist-lenet-v1"
    manifest = fe.read_manifest()
    weights = tmp_path / manifest[name]["file"]
    if kind == "pickle":
        weights.write_bytes(code_pickle(marker))
    else:
        torch_save_payload(weights, marker)
    # A handed folder can carry a manifest that matches its own payload: the sha256 proves nothing.
    manifest[name]["sha256"] = fe.sha256_file(weights)
    (tmp_path / fe.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(FeatureNetError, match="is not a safetensors file of mnist-lenet-v1's tensors"):
        load_feature_net(name, tmp_path)
    assert not marker.exists()


def test_checkpoint_with_a_pickle_never_runs(trained_run, tmp_path, marker, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    ckpt = list_checkpoints(run)[0]
    torch_save_payload(ckpt / "model.safetensors", marker)
    state = json.loads((ckpt / "state.json").read_text())
    state["files"]["model.safetensors"] = fe.sha256_file(ckpt / "model.safetensors")  # a consistent forgery
    (ckpt / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_latest(run)
    code, _, err = _cli(capsys, "sample", run, "--n", "4", "--out", tmp_path / "s.png", "--device", "cpu")
    assert code == 2 and "model.safetensors" in _one_line(err)
    assert not marker.exists()


def test_exported_folder_with_a_pickle_never_runs(trained_run, tmp_path, marker, capsys):
    folder = tmp_path / "exported"
    assert main(["export", str(trained_run), str(folder)]) == 0
    torch_save_payload(folder / "model.safetensors", marker)
    info = json.loads((folder / "export.json").read_text())
    info["sha256"] = fe.sha256_file(folder / "model.safetensors")  # a consistent forgery
    (folder / "export.json").write_text(json.dumps(info))
    capsys.readouterr()
    code, _, err = _cli(capsys, "sample", folder, "--n", "4", "--out", tmp_path / "s.png", "--device", "cpu")
    assert code == 2 and "is not a safetensors file" in _one_line(err)
    assert not marker.exists()


def test_exported_folder_with_another_models_tensors_is_a_one_line_error(trained_run, tmp_path, capsys):
    from safetensors.torch import save_file

    folder = tmp_path / "exported"
    assert main(["export", str(trained_run), str(folder)]) == 0
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(folder / "model.safetensors"))
    info = json.loads((folder / "export.json").read_text())
    info["sha256"] = fe.sha256_file(folder / "model.safetensors")  # verified, but not this model's tensors
    (folder / "export.json").write_text(json.dumps(info))
    capsys.readouterr()
    code, _, err = _cli(capsys, "sample", folder, "--n", "4", "--out", tmp_path / "s.png", "--device", "cpu")
    line = _one_line(err)
    assert code == 2 and "does not hold the tensors this run needs" in line and "unexpected: encoder.weight" in line


# ----------------------------------------------------------------------------------------------
# Images: Pillow's own decoders only, decompression bombs refused from the header


def _png_header_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit grey PNG of all-zero pixels: a few kB on disk, width x height pixels decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_images_refuse_bombs_pickles_and_postscript(tmp_path, marker):
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 1
    bomb = _png_header_bomb(tmp_path / "bomb.png", side, side)
    assert bomb.stat().st_size < 100_000
    fake = tmp_path / "photo.png"
    fake.write_bytes(code_pickle(marker))
    eps = tmp_path / "figure.eps"  # Pillow would hand this to Ghostscript, a program
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n%%EOF\n")
    spec = DataSpec(channels=1, height=28, width=28, bits=8)
    for path, why in ((bomb, "over genlab's limit"), (fake, "cannot identify"), (eps, "cannot identify")):
        with pytest.raises(DatasetError, match=why) as err:
            read_image(path, channels=1, size=28)
        assert str(path) in str(err.value)
        with pytest.raises(ImageReadError, match=why):
            read_user_image(path, spec)
    assert not marker.exists()
    small = _png_header_bomb(tmp_path / "small.png", 40, 30)
    with open_image(small) as im:
        assert im.size == (40, 30)


def test_score_cli_names_the_bad_image_in_one_line(trained_run, tmp_path, marker, capsys):
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 1
    bomb = _png_header_bomb(tmp_path / "bomb.png", side, side)
    code, _, err = _cli(capsys, "score", trained_run, bomb, "--out", tmp_path / "s", "--device", "cpu")
    assert code == 2 and str(bomb) in _one_line(err) and "limit" in err


# ----------------------------------------------------------------------------------------------
# Dataset files and ood scores: checksums before parsing, parsers that never unpickle code


def _cfg(root: Path) -> DataConfig:
    return DataConfig(root=str(root))


@pytest.mark.parametrize("name,relpath", [
    ("cifar10", "cifar10/cifar-10-python.tar.gz"),
    ("frey", "frey/frey_rawface.mat"),
    ("binarized-mnist", "binarized-mnist/binarized_mnist_test.amat.gz"),
    ("mnist", "mnist/t10k-images-idx3-ubyte.gz"),
])
def test_dataset_file_replaced_by_a_payload_is_refused_before_parsing(tmp_path, marker, name, relpath):
    path = tmp_path / relpath
    path.parent.mkdir(parents=True)
    if name == "cifar10":  # a real tarball whose test batch is a payload
        cifar_tarball(path, members={"test_batch": code_pickle(marker)})
    else:
        path.write_bytes(code_pickle(marker))
    with pytest.raises(DatasetError) as err:
        load_dataset(name, "test", _cfg(tmp_path))
    assert err.value.kind == "corrupt" and str(path) in str(err.value)
    assert not marker.exists()


def test_parsers_refuse_payloads_without_running_them(tmp_path, marker):
    blob = code_pickle(marker)
    with pytest.raises(DatasetError):
        parse_amat(blob)
    with pytest.raises(Exception):  # scipy's MATLAB reader builds arrays only; it cannot run code
        parse_frey(blob)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["object array", "pickle", "damaged zip"])
def test_ood_scores_npz_never_unpickles(tmp_path, marker, kind):
    path = tmp_path / "ood_scores.npz"
    if kind == "object array":
        np.savez(path, scores=np.array([code_pickle(marker), 1], dtype=object))
    elif kind == "pickle":
        path.write_bytes(code_pickle(marker))
    else:
        np.savez(path, scores=np.zeros(3))
        path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValueError, match="not a valid ood_scores.npz") as err:
        read_ood_scores(tmp_path)
    assert "\n" not in str(err.value) and not marker.exists()


# ----------------------------------------------------------------------------------------------
# Data checks that can be trusted


@pytest.fixture
def frey_copy(data_root, tmp_path, monkeypatch):
    """A private copy of the 1 MB Frey faces file, a private cache home, and caching of fresh files."""
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "FRESH_NS", 0)
    download._memo.clear()
    path = tmp_path / "data" / "frey" / "frey_rawface.mat"
    path.parent.mkdir(parents=True)
    shutil.copyfile(data_root / "frey" / "frey_rawface.mat", path)
    yield path
    download._memo.clear()


def _count_hashes(monkeypatch) -> list[str]:
    calls = []
    for fn in ("hash_bytes", "hash_file"):
        real = getattr(download, fn)
        monkeypatch.setattr(download, fn, lambda *a, _real=real, **k: calls.append(str(a[0])) or _real(*a, **k))
    return calls


def _flip_keeping_times(path: Path) -> None:
    """Change one byte and put back the old mtime (as `touch -r` or a careless copy would)."""
    st = path.stat()
    time.sleep(0.05)  # past the file system's clock tick, so that the change moves ctime
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def test_data_check_always_hashes(frey_copy, monkeypatch):
    root = frey_copy.parents[1]
    load_dataset("frey", "test", _cfg(root))
    assert (frey_copy.parent / download.STAMP_NAME).is_file()
    calls = _count_hashes(monkeypatch)
    download._memo.clear()
    assert len(load_dataset("frey", "test", _cfg(root))) == 200 and calls == []  # the cache serves loads
    for _ in range(2):
        assert check_datasets(_cfg(root), ["frey"])[0]["status"] == "ok"
    assert len(calls) == 2  # ... never a check


def test_a_file_changed_with_its_mtime_kept_is_hashed_again(frey_copy):
    root = frey_copy.parents[1]
    load_dataset("frey", "test", _cfg(root))
    assert (frey_copy.parent / download.STAMP_NAME).is_file()
    _flip_keeping_times(frey_copy)
    download._memo.clear()  # a new process
    with pytest.raises(DatasetError, match="5aeb024d42b8a6091f30e5eb18c8a48d"):
        load_dataset("frey", "test", _cfg(root))


def test_a_forged_cache_entry_vouches_for_nothing(frey_copy):
    root = frey_copy.parents[1]
    stamp = frey_copy.parent / download.STAMP_NAME
    load_dataset("frey", "test", _cfg(root))
    genuine = stamp.read_text()
    # A genuine entry moved beside another copy (same name, other folder) does not transfer to it.
    other = root.parent / "other" / "frey" / frey_copy.name
    other.parent.mkdir(parents=True)
    shutil.copyfile(frey_copy, other)
    _flip_keeping_times(other)
    (other.parent / download.STAMP_NAME).write_text(genuine)
    download._memo.clear()
    with pytest.raises(DatasetError, match="corrupt or not the official version"):
        load_dataset("frey", "test", _cfg(other.parents[1]))
    # Entries written by hand for a modified file, in the old and the new layout.
    _flip_keeping_times(frey_copy)
    st = frey_copy.stat()
    official = "md5:5aeb024d42b8a6091f30e5eb18c8a48d"
    forgeries = [
        {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "checksum": official},  # what older genlab trusted
        {"path": str(frey_copy.resolve()), "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
         "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "checksum": official, "hmac": "0" * 64},
    ]
    for entry in forgeries:
        stamp.write_text(json.dumps({frey_copy.name: entry}))
        download._memo.clear()
        with pytest.raises(DatasetError, match="corrupt or not the official version"):
            load_dataset("frey", "test", _cfg(root))


def test_read_only_data_root_works_without_a_cache(frey_copy, capsys):
    root = frey_copy.parents[1]
    modes = [(p, p.stat().st_mode) for p in (frey_copy, frey_copy.parent, root)]
    for p, mode in modes:
        p.chmod(mode & ~0o222)  # like a shared, read-only data folder (root could still write: it must not)
    try:
        assert len(load_dataset("frey", "test", _cfg(root))) == 200
        code, out, _ = _cli(capsys, "data", "check", "frey", "--data-root", root)
        assert code == 0 and "verified" in out
        assert sorted(p.name for p in root.rglob("*")) == ["frey", "frey_rawface.mat"]
    finally:
        for p, mode in modes:
            p.chmod(mode)


# ----------------------------------------------------------------------------------------------
# Devices, --out and run folders: one line each


@pytest.mark.parametrize("device,message", [
    ("tpu", "unknown device 'tpu'"),
    ("cuda:abc", "unknown device 'cuda:abc'"),
    ("meta", "unknown device 'meta'"),
    ("cuda", "CUDA is not available"),
    ("cuda:3", "CUDA is not available"),
])
def test_unknown_or_absent_device_is_one_line(trained_run, tmp_path, capsys, device, message):
    if device.startswith("cuda") and message.startswith("CUDA") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "new-run"
    code, _, err = _cli(capsys, "train", "vae", "--data", "digits", "--out", out, "--steps", "2", *TINY,
                        "--device", device)
    assert code == 2 and message in _one_line(err) and not out.exists()
    code, _, err = _cli(capsys, "sample", trained_run, "--n", "4", "--out", tmp_path / "s.png", "--device", device)
    assert code == 2 and message in _one_line(err)


def test_unknown_device_from_a_subprocess_has_no_traceback(trained_run):
    proc = subprocess.run([sys.executable, "-m", "genlab.cli", "eval", str(trained_run), "--device", "tpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "unknown device 'tpu'" in _one_line(proc.stderr)


def test_unwritable_out_is_one_line(trained_run, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, _, err = _cli(capsys, "train", "vae", "--data", "digits", "--out", a_file / "run", "--steps", "2", *TINY)
    assert code == 2 and str(a_file / "run") in _one_line(err) and "Not a directory" in err
    for out in (a_file / "samples.png", Path("/proc/genlab-cannot-exist/s.png"), Path("/sys/genlab/s.png")):
        code, _, err = _cli(capsys, "sample", trained_run, "--n", "4", "--out", out, "--device", "cpu")
        assert code == 2 and "genlab sample: error:" in _one_line(err), err


def test_read_only_out_is_one_line(trained_run, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes into a 0555 folder; a read-only mount refuses even root
        real = Path.mkdir

        def read_only_mount(self, *a, **k):
            if self == ro / "run" or ro in self.parents:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "mkdir", read_only_mount)
        reason = "Read-only file system"
    else:
        reason = "Permission denied"
    code, _, err = _cli(capsys, "train", "vae", "--data", "digits", "--out", ro / "run", "--steps", "2", *TINY)
    assert code == 2 and reason in _one_line(err) and str(ro / "run") in err


@pytest.mark.parametrize("damage", ["run is a file", "config is a folder", "config is binary", "config unreadable",
                                    "data.json damaged"])
def test_unreadable_run_folder_is_one_line(trained_run, tmp_path, capsys, monkeypatch, damage):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    if damage == "run is a file":
        shutil.rmtree(run)
        run.write_text("not a folder")
    elif damage == "config is a folder":
        (run / "config.json").unlink()
        (run / "config.json").mkdir()
    elif damage == "config is binary":
        (run / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    elif damage == "data.json damaged":
        (run / "data.json").write_text('{"spec": 3}')
    else:
        real = Path.read_text

        def denied(self, *a, **k):
            if self.name == "config.json":  # what chmod 000 gives a non-root user
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "read_text", denied)
    for argv in (["sample", run, "--n", "4", "--out", tmp_path / "s.png"], ["eval", run], ["report", run]):
        code, _, err = _cli(capsys, *argv, "--device", "cpu")
        assert code == 2 and str(run) in _one_line(err), (argv, err)


@pytest.mark.parametrize("name,argv", [
    ("eval.json", ["report"]),
    ("eval.json", ["eval", "--only", "elbo", "--max-examples", "8"]),
    ("ood.json", ["score", "IMAGE"]),
])
def test_damaged_result_file_is_one_line_naming_it(trained_run, tmp_path, capsys, name, argv):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / name).write_text('{"metrics": {"elbo": ')  # cut short by a full disk
    image = _png_header_bomb(tmp_path / "small.png", 8, 8)
    argv = [image if a == "IMAGE" else a for a in argv]
    code, _, err = _cli(capsys, argv[0], run, *argv[1:], "--device", "cpu")
    assert code == 2 and f"{run / name} is not valid JSON" in _one_line(err)
