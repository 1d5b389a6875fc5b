"""The Python API: genlab.train / genlab.load and a Run's sample, nll, encode/decode, evaluate, report, export."""

from __future__ import annotations

import functools
import json
import shutil

import pytest
import torch

import genlab
from genlab.api import CapabilityError
from genlab.cli import main
from genlab.config import ConfigError
from genlab.data import load_dataset
from genlab.errors import InputError
import genlab.nn.compiled
import genlab.train.run
from genlab.nn.compiled import compile_for_inference
from genlab.train.checkpoint import CheckpointError

QUIET = {"train.progress": False, "train.log_every": 5}


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "vae"
    # keyword overrides (bare and section__key), a dict and key=value strings, all at once
    return genlab.train("vae", data="digits", steps=8, out=out, batch_size=32, device="cpu", latent_dim=2,
                        optim__lr=2e-3, overrides={"model.hidden": 32, **QUIET}, model__channels=(8, 16))


@pytest.fixture(scope="module")
def pixelcnn(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "pixelcnn"
    return genlab.train("pixelcnn", data="digits", steps=2, out=out, batch_size=16, device="cpu",
                        overrides=["model.channels=8", "model.residual_blocks=1", "model.head_channels=16",
                                   "train.progress=false"])


def _test_images(run, n=4):
    return load_dataset("digits", "test", run.config.data).images[:n]


def test_train_from_python_applies_every_kind_of_override(vae):
    cfg = vae.config
    assert (cfg.model.latent_dim, cfg.model.hidden, cfg.model.channels) == (2, 32, (8, 16))
    assert cfg.optim.lr == 2e-3 and cfg.train.steps == 8 and vae.step == 8
    command = (vae.path / "command.txt").read_text()
    assert command.startswith("genlab.train(") and "latent_dim=2" in command


def test_bad_overrides_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        genlab.train("vae", data="digits", steps=1, out=tmp_path / "x", latnt_dim=2)
    with pytest.raises(ConfigError, match="should be of type int"):
        genlab.train("vae", data="digits", steps=1, out=tmp_path / "x", latent_dim=2.5)
    with pytest.raises(ConfigError, match="give a run folder"):
        genlab.train("vae", data="digits", steps=1)


def test_preset_from_python(tmp_path):
    run = genlab.train(preset="vae-digits", steps=1, out=tmp_path / "p", batch_size=8, device="cpu",
                       overrides=QUIET)
    assert run.name == "vae" and run.step == 1


def test_sample_is_seeded_and_batch_independent(vae):
    a = vae.sample(6, seed=3)
    assert a.shape == (6, 1, 8, 8) and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(vae.sample(6, seed=3, batch_size=4), a)
    assert not torch.equal(vae.sample(6, seed=4), a)
    with pytest.raises(ValueError, match="out of range|unconditional"):
        vae.sample(2, label=3)


def test_load_can_compile_the_networks_and_copies_cuda_graph_outputs(tmp_path, monkeypatch):
    # genlab.load(compile=MODE) compiles each network for every later use. In a CUDA-graph mode each replay
    # writes its outputs into the memory of the recording, and DPM-Solver++ keeps the last x_0 estimate across
    # calls, which an x_0-predicting network returns as it is: the outputs must be copied out. A backend that
    # replays the traced graph into fixed buffers stands in for CUDA graphs (and for inductor) on the CPU.
    run = genlab.train("diffusion", data="digits", steps=2, out=tmp_path / "x0", batch_size=8, device="cpu",
                       channels=8, mult=(1, 2), blocks=1, attention_resolutions=(4,), heads=2, timesteps=20,
                       target="x0", overrides=QUIET)
    eager = run.sample(4, seed=1, sampler="dpmpp-2m", steps=4)
    modes = []

    def replaying_backend(graph_module, example_inputs, mode=None):
        modes.append(mode)
        static = {}  # one recording per shape, as CUDA graphs keep

        def replay(*args):
            outs = graph_module.forward(*args)
            buffers = static.setdefault(tuple(o.shape for o in outs), [o.clone() for o in outs])
            for buffer, o in zip(buffers, outs):
                buffer.copy_(o)
            return list(buffers)
        return replay
    monkeypatch.setattr(genlab.train.run, "compile_for_inference", functools.partial(compile_for_inference,
                                                                                     backend=replaying_backend))
    compiled = genlab.load(run.path, device="cpu", compile="reduce-overhead")
    torch.testing.assert_close(compiled.sample(4, seed=1, sampler="dpmpp-2m", steps=4), eager, rtol=0, atol=0)
    assert modes and set(modes) == {"reduce-overhead"}, "sampling did not go through the networks compiled in that mode"
    # The commands take it too: `genlab sample --compile MODE` and `genlab eval --compile MODE`.
    modes.clear()
    assert main(["sample", str(run.path), "--n", "2", "--compile", "reduce-overhead", "--out",
                 str(tmp_path / "s.png"), "--device", "cpu"]) == 0
    assert main(["eval", str(run.path), "--only", "diffusion-bound", "--max-examples", "4", "--compile", "default",
                 "--device", "cpu", "--weights", "raw"]) == 0
    assert set(modes) == {"reduce-overhead", None}
    # The check can fail: without the copy, the kept estimate is overwritten and the samples change.
    monkeypatch.setattr(genlab.nn.compiled, "_copying_outputs", lambda fn: fn)
    uncopied = genlab.load(run.path, device="cpu", compile="reduce-overhead")
    assert not torch.equal(uncopied.sample(4, seed=1, sampler="dpmpp-2m", steps=4), eager)
    with pytest.raises(InputError, match="compile='fast' is not a torch.compile mode: give one of default, "
                                         "reduce-overhead"):
        genlab.load(run.path, compile="fast")


def test_vae_nll_is_a_labelled_bound_in_nats_and_bits(vae):
    x = _test_images(vae)
    nll = vae.nll(x, iwae_k=5)
    assert nll.kind == "bound" and "IWAE" in nll.method and nll.nats.shape == (4,)
    torch.testing.assert_close(nll.bits_per_dim, nll.nats / (64 * torch.log(torch.tensor(2.0, dtype=torch.float64))))
    torch.testing.assert_close(vae.log_prob(x, iwae_k=5), -nll.nats)  # same seed, same bound
    torch.testing.assert_close(vae.nll(x.float() / 255, iwae_k=5).nats, nll.nats)  # floats in [0, 1] or uint8


def test_encode_decode(vae):
    z = vae.encode(_test_images(vae))
    assert z.shape == (4, 2)
    images = vae.decode(z)
    assert images.shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="do not fit"):
        vae.encode(torch.zeros(2, 3, 8, 8))


def test_pixelcnn_is_exact_and_has_no_latents(pixelcnn):
    nll = pixelcnn.nll(_test_images(pixelcnn))
    assert nll.kind == "exact" and torch.isfinite(nll.nats).all()
    with pytest.raises(CapabilityError, match="pixelcnn has no encoder"):
        pixelcnn.encode(_test_images(pixelcnn))
    with pytest.raises(CapabilityError, match="no latents to decode"):
        pixelcnn.decode(torch.zeros(1, 2))


def test_export_moves_to_another_folder_and_loads_the_same_model(vae, tmp_path):
    vae.evaluate(only=["elbo"], max_examples=40, log=lambda *_: None)
    folder = vae.export(tmp_path / "export")
    card = (folder / "README.md").read_text()
    assert "neg_elbo" in card and "genlab.train(" in card  # the eval table and the command that made it
    assert "likelihood: bound -log p(x)" in card and "run.encode(x)" in card  # what the model card says it does
    assert json.loads((folder / "export.json").read_text())["step"] == 8
    moved = tmp_path / "elsewhere" / "model"  # as if copied to another machine: no run folder left beside it
    shutil.copytree(folder, moved)
    shutil.rmtree(folder)
    again = genlab.load(moved, device="cpu")
    torch.testing.assert_close(again.sample(8, seed=0), vae.sample(8, seed=0), rtol=0, atol=0)
    assert again.step == 8
    with pytest.raises(FileExistsError):
        again.export(moved)
    (moved / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="corrupt"):
        genlab.load(moved, device="cpu")


def test_cli_export_and_sample_from_the_export(vae, tmp_path, capsys):
    assert main(["export", str(vae.path), str(tmp_path / "m")]) == 0
    assert main(["sample", str(tmp_path / "m"), "--n", "4", "--device", "cpu", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()


def test_evaluate_rejects_unknown_options(vae):
    with pytest.raises(ConfigError, match="unknown evaluation option"):
        vae.evaluate(max_exmples=10)
