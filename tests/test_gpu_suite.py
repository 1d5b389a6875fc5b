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
