"""Typed configs: strict overrides, unambiguous bare keys, JSON round trip."""

from __future__ import annotations

import pytest

from genlab.config import ConfigError, RunConfig, apply_overrides


def test_dotted_and_bare_overrides_are_typed():
    cfg = apply_overrides(RunConfig.create("vae"), ["model.latent_dim=2", "lr=3e-4", "train.ema_decay=0.99",
                                                    "channels=16,32,64", "compile=true"])
    assert cfg.model.latent_dim == 2 and isinstance(cfg.model.latent_dim, int)
    assert cfg.optim.lr == 3e-4
    assert cfg.model.channels == (16, 32, 64)
    assert cfg.train.compile is True


@pytest.mark.parametrize("override,message", [
    ("model.latent_dimm=2", "did you mean model.latent_dim"),
    ("nosuchkey=1", "unknown key 'nosuchkey'"),
    ("model.latent_dim=two", "not an integer"),
    ("train.precision=fp8", "not one of fp32, bf16"),
    ("train.compile=maybe", "not a boolean"),
    ("optim.lr=-1", r"optim.lr=-1.0 is not allowed: give a finite number > 0"),
    ("latent_dim", "not of the form key=value"),
    ("bogus.x=1", "unknown section 'bogus'"),
    ("model.latent_dim=0", "model.latent_dim=0 is not allowed: give an integer >= 1"),
])
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig.create("vae"), [override])


def test_json_round_trip_keeps_every_value():
    cfg = apply_overrides(RunConfig.create("vae"), ["latent_dim=5", "beta=0.5", "data.name=mnist", "steps=7"])
    again = RunConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    assert again.objective.beta == 0.5 and again.train.steps == 7


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(KeyError, match="known models: .*vae"):
        RunConfig.create("vea")


@pytest.mark.parametrize("model,key", [("gated-pixelcnn", "kernel"), ("pixelcnn", "first_kernel"),
                                       ("pixelrnn", "first_kernel"), ("pixelvae", "kernel")])
def test_centred_kernels_must_be_odd(model, key):
    cfg = RunConfig.create(model)
    apply_overrides(cfg, [f"model.{key}=5"])
    assert getattr(cfg.model, key) == 5
    with pytest.raises(ConfigError, match=f"model.{key}.*an odd integer >= 1"):
        apply_overrides(cfg, [f"model.{key}=4"])
