"""benchmarks/gpu_suite.py --smoke: the GPU suite's code path on the CPU (tiny networks, 3 steps each).

Checks what can be checked without a GPU: every preset trains through genlab's loop with the dataset on the
device, bf16 autocast and torch.compile (tracing backend), the placement guard finds a tensor made without
``device=``, FLOPs are counted and the quality figures come out with their protocol.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from conftest import REPO


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", REPO / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_runs_every_preset(tmp_path, data_root):
    suite = _suite()
    report = suite.main(["--smoke", "--out", str(tmp_path), "--data-root", str(data_root)])
    assert report["results"] == json.loads((tmp_path / "suite.json").read_text())["results"]
    assert [r["model"] for r in report["results"]] == [p.name for p in suite.PRESETS]
    assert report["compile"].startswith("eager") and report["precision"] == "bf16 autocast"
    for row in report["results"]:
        assert row["steps"] == 3 and row["images_per_s"] > 0 and row["train_flops_per_image"] > 0
        assert row["calibration_images_per_s"] > 0  # the rate that sizes the step count on a GPU
        assert not (tmp_path / f"{row['model']}-calibration").exists()
        assert row["mfu"] is None  # no peak for a CPU unless --peak-tflops is given
        assert row["autocast_dtypes"] == ["bfloat16"]
        assert row["quality"], row["model"]
        for record in row["quality"].values():
            assert record["protocol"]["name"] and record["kind"] in ("exact", "bound", "estimate")
        cfg = json.loads((tmp_path / row["model"] / "config.json").read_text())
        assert cfg["train"]["compile"] and cfg["train"]["compile_backend"] == "eager"
        assert cfg["train"]["precision"] == "bf16"
        # A short run's average must not keep the untrained weights: a warm-up unless the preset has one.
        assert cfg["train"]["ema_decay"] > 0 and cfg["train"]["ema_warmup"] != "none"


def test_profile_writes_the_top_operators(tmp_path, data_root):
    suite = _suite()
    report = suite.main(["--smoke", "--profile", "--models", "vae", "--out", str(tmp_path), "--data-root", str(data_root)])
    profile = report["results"][0]["profile"]
    assert profile["step_ms"] > 0 and profile["device_busy_fraction"] is None  # no device timeline on a CPU
    table = (tmp_path / "profile-vae.txt").read_text()
    assert "Self CPU" in table and "convolution" in table  # the operators of the VAE's step


def test_placement_guard_finds_a_tensor_made_without_device():
    suite = _suite()
    weight = torch.ones(4, 3)  # made outside the guard: where the model's tensors live
    with suite.PlacementGuard(torch.device("cpu")):
        assert torch.nn.functional.linear(torch.ones(2, 3, device="cpu"), weight).dtype == torch.bfloat16
        with pytest.raises(RuntimeError, match="meta"):
            weight + torch.zeros(4, 3)  # no device=: on a GPU this would be a CPU tensor


def test_peak_table_by_device_name():
    suite = _suite()
    assert suite.peak_of("NVIDIA H200")[0] == 989e12
    assert suite.peak_of("NVIDIA H100 PCIe")[0] == 756e12  # not the SXM figure
    assert suite.peak_of("NVIDIA H100 80GB HBM3")[0] == 989e12
    assert suite.peak_of("Some GPU")[0] is None


def test_host_overhead_times_the_step_and_the_average(capsys, data_root):
    spec = importlib.util.spec_from_file_location("host_overhead", REPO / "benchmarks" / "host_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--models", "vae", "--steps", "3", "--data-root", str(data_root)])
    assert [r["model"] for r in rows] == ["vae"]
    assert rows[0]["train_step_ms"] > 0 and rows[0]["ema_ms"] > 0 and rows[0]["tensors"] == 34
    assert "steps/s" in capsys.readouterr().out


@pytest.mark.parametrize("channels_last", [True, False])
def test_step_parts_build_the_model_in_its_runs_layout(monkeypatch, data_root, channels_last):
    """The benchmarks time the network in the layout the loop trains it in (train.channels_last)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from profile_step import step_parts

    from genlab.configs import resolve_train_config

    cfg = resolve_train_config(preset="vae-binarized-mnist", data_root=str(data_root), overrides=[
        ("model.channels", "8,16"), ("model.hidden", "32"), ("train.channels_last", str(channels_last).lower())])
    model = step_parts(cfg)[0]
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert convs and all(w.is_contiguous(memory_format=layout) for w in convs)
    # (a 1-channel kernel is contiguous in both layouts; the wider ones tell them apart)
    assert any(w.is_contiguous() != channels_last for w in convs)


def _target(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    _suite()  # gpu_target imports gpu_suite by name
    spec = importlib.util.spec_from_file_location("gpu_target", REPO / "benchmarks" / "gpu_target.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_target_smoke_keeps_the_bounds_and_a_loadable_export(tmp_path, data_root, monkeypatch):
    """Issue 15's one-call GPU run, on the CPU: what it keeps is what a lent machine can return, and it loads."""
    import tarfile

    import genlab

    target = _target(monkeypatch)
    keep = tmp_path / "keep"
    work = tmp_path / "gpu-target-run"
    report = target.main(["--smoke", "--keep", str(keep), "--work", str(work), "--data-root", str(data_root)])
    assert sorted(p.name for p in keep.iterdir()) == ["export.tar", "metrics.jsonl", "target.json"]
    assert json.loads((keep / "target.json").read_text()) == report
    assert report["steps"] == 3 and report["calibration_images_per_s"] > 0
    # every kept checkpoint scored on the validation split, the lowest -ELBO chosen and exported
    assert sorted(report["validation_neg_elbo"], key=int) == ["1", "2", "3"]
    assert report["chosen_step"] == int(min(report["validation_neg_elbo"].items(), key=lambda kv: kv[1])[0])
    assert not (tmp_path / "gpu-target-run-calibration").exists()
    for key in ("neg_elbo", "iwae_nll"):
        record = report["metrics"][key]
        assert record["kind"] == "bound" and record["n"] == 8 and record["partial"] is False
    # a bound of an untrained model: far from the target, and said so with the margin
    assert report["verdict"].startswith("not met: best bound")
    with tarfile.open(keep / "export.tar") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    run = genlab.load(tmp_path / "back" / "export", device="cpu")
    assert run.sample(2, seed=0).shape == (2, 1, 28, 28)
    assert json.loads((tmp_path / "back" / "export" / "export.json").read_text())["step"] == report["chosen_step"]
    with pytest.raises(SystemExit, match="exists"):  # never trains over a run folder
        target.main(["--smoke", "--keep", str(keep), "--work", str(work), "--data-root", str(data_root)])

    # A checkpoint before the last that does better on the validation split is the one exported.
    import shutil

    from safetensors.torch import load_file

    from genlab.train.checkpoint import load_checkpoint
    from genlab.train.ema import merged

    shutil.rmtree(work / "export")
    scores = iter([5.0, 1.0, 3.0])  # steps 1, 2, 3 in that order

    class Registry:
        @staticmethod
        def get(name):
            assert name == "elbo"
            return lambda *args: {"neg_elbo": {"value": next(scores)}}

    monkeypatch.setattr(target, "EVALUATORS", Registry)
    validation, chosen = target.choose_on_validation(work, torch.device("cpu"), str(data_root), {"max_examples": 8})
    assert validation == {1: 5.0, 2: 1.0, 3: 3.0} and chosen == 2
    assert json.loads((work / "export" / "export.json").read_text())["step"] == 2
    ckpt = load_checkpoint(next((work / "checkpoints").glob("step_00000002")), "cpu")
    exported = load_file(str(work / "export" / "model.safetensors"))
    for key, value in merged(ckpt["model"], ckpt["ema"]).items():
        assert torch.equal(exported[key], value), key


def test_gpu_target_verdict_counts_only_whole_test_set_bounds(monkeypatch):
    verdict = _target(monkeypatch).verdict
    elbo = {"value": 78.9, "partial": False}
    assert verdict({"neg_elbo": elbo}).startswith("met: -ELBO")
    assert verdict({"neg_elbo": {**elbo, "value": 80.0}, "iwae_nll": {"value": 78.5, "partial": False}}).startswith(
        "met: IWAE")
    partial = verdict({"neg_elbo": {**elbo, "value": 80.0}, "iwae_nll": {"value": 78.5, "partial": True}})
    assert partial.startswith("not met") and "partial" in partial  # a partial figure is not the whole test set
    assert "+1.00" in verdict({"neg_elbo": {**elbo, "value": 80.0}})


def test_gpu_target_time_box_interrupts_like_ctrl_c(monkeypatch):
    import time

    stop_after = _target(monkeypatch).stop_after
    began = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with stop_after(0.2):
            while time.perf_counter() - began < 30:
                time.sleep(0.01)
    assert time.perf_counter() - began < 5
    with stop_after(0.2):  # finished in time: the alarm is cleared, nothing fires later
        pass
    time.sleep(0.4)


def test_torchvision_stand_in_imports_a_peer_that_only_imports_it(tmp_path, monkeypatch):
    """The peer benchmarks import torch-fidelity and denoising-diffusion-pytorch, which import torchvision without
    calling it on the benchmarked path; where torchvision does not import, an empty stand-in takes its place."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # the stand-in's finder goes away after the test
    for name in [n for n in sys.modules if n.split(".")[0] in ("torchvision", "fakepeer")]:
        monkeypatch.delitem(sys.modules, name)
    (tmp_path / "fakepeer").mkdir()
    (tmp_path / "fakepeer" / "__init__.py").write_text(
        "import torchvision\nfrom torchvision.datasets import CIFAR10\n\n"
        "class Wrapped(CIFAR10):\n    pass\n\nVALUE = 3\n")
    from torchvision_standin import import_peer

    have_torchvision = importlib.util.find_spec("torchvision") is not None
    try:
        (module,), how = import_peer("fakepeer", ["fakepeer"], "pip install fakepeer")
        assert module.VALUE == 3
        if not have_torchvision:  # as in CI: the stand-in served the import
            assert how.startswith("torchvision replaced by an empty stand-in")
            assert sys.modules["torchvision"].datasets.CIFAR10.__name__ == "CIFAR10"
        with pytest.raises(SystemExit, match="pip install nothing"):
            import_peer("no_such_peer_package", ["no_such_peer_package"], "pip install nothing")
    finally:  # nothing of the stand-in may outlive the test
        for name in [n for n in sys.modules if n.split(".")[0] in ("torchvision", "fakepeer")]:
            sys.modules.pop(name)


def test_native_conv_variant_takes_the_same_step_with_pytorchs_own_convolutions(monkeypatch, data_root):
    """bench_variants.py native_conv: oneDNN off during the variant's steps only, and the same maths (the two
    convolution implementations give the same weights after a step, from the same seed and batch)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_variants

    from genlab.configs import resolve_train_config
    from genlab.data import load_dataset

    seen = []

    def recording_step(model, *args, **kwargs):
        seen.append((model, torch.backends.mkldnn.enabled))
        return train_step(model, *args, **kwargs)

    train_step = bench_variants.train_step
    monkeypatch.setattr(bench_variants, "train_step", recording_step)
    cfg = resolve_train_config(preset="vae-binarized-mnist", data_root=str(data_root), overrides=[
        ("model.channels", "8,16"), ("model.hidden", "32"), ("train.batch_size", "16")])
    data = load_dataset(cfg.data.name, "train", cfg.data)
    threads = torch.get_num_threads()
    try:
        bench_variants.stepper(cfg, data, "base", 1)()
        bench_variants.stepper(cfg, data, "native_conv", 1)()
    finally:
        torch.set_num_threads(threads)
    (base, base_flag), (native, native_flag) = seen
    assert base_flag and not native_flag and torch.backends.mkldnn.enabled
    for (name, a), b in zip(base.named_parameters(), native.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
