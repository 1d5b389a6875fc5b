"""Every registered model, from its card alone: the shared model tester, per-sample sampling, and the card
checked against what the model really does. A newly registered model is tested here without a new test."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

import genlab
from genlab.card import ModelCard, conditioning, likelihood_of
from genlab.config import ConfigError, RunConfig, apply_overrides
from genlab.errors import InputError
from genlab.eval.representations import extract_features, representation_of
from genlab.nn.spec import DataSpec
from genlab.registry import EVALUATORS, MODELS, OBJECTIVES, SAMPLER_OPTIONS, SAMPLERS, plugin_modules
from genlab.rng import make_generators
from genlab.sampling.api import draw, sampler_of, sampler_options
from genlab.sampling.latent import latent_means
from genlab.train.run import build_model, build_objective
from model_tester import check_model

NAMES = MODELS.names()


def tiny(name: str, seed: int = 0):
    """(model, objective, spec) built the way the trainer builds them, from the card's tiny config."""
    card = MODELS.get(name).card
    cfg = RunConfig.create(name)  # the card's run_defaults apply here
    apply_overrides(cfg, {f"model.{k}": v for k, v in card.tiny.items()})
    spec = DataSpec(**card.tiny_data)
    torch.manual_seed(seed)
    return build_model(cfg, spec), build_objective(cfg, spec), spec


def batch_for(spec: DataSpec, n: int = 4, seed: int = 1, domains: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    levels = 2**spec.bits - 1
    x = torch.randint(0, levels + 1, (n, *spec.shape), generator=g).float() / levels
    out = {"x": x}
    if spec.num_classes:
        out["y"] = torch.randint(0, spec.num_classes, (n,), generator=g)
    if domains == 2:  # a translation model's batch also holds domain B (data/domains.py)
        out["x_b"] = torch.randint(0, levels + 1, x.shape, generator=g).float() / levels
    return out


def shake(model, seed: int = 0):
    """Seeded random weights: a fresh model may start with its label embeddings at zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def _label(model):
    """A label when the model needs one to sample, else None."""
    cond = conditioning(model)
    return 1 if cond.class_conditional and not cond.label_optional else None


def test_every_model_is_registered_and_every_models_file_is_imported():
    """A class defining a model (an nn.Module with phases) under genlab/models must be registered, and the
    registry's package discovery must reach every file there (no hand-kept import list to forget)."""
    registered = {cls for _, cls in MODELS.items()}
    modules = [m for m in plugin_modules() if m.startswith("genlab.models")]
    files = {p.relative_to(Path(genlab.__file__).parent.parent).with_suffix("").as_posix().replace("/", ".")
             for p in (Path(genlab.__file__).parent / "models").rglob("*.py")}
    assert {f.removesuffix(".__init__") for f in files} <= set(modules)
    for module_name in modules:
        module = importlib.import_module(module_name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module_name and issubclass(obj, nn.Module) and callable(getattr(obj, "phases", None)):
                assert obj in registered, f"{module_name}.{obj.__name__} defines a model but is not registered"
    for name in NAMES:
        assert isinstance(MODELS.get(name).card, ModelCard), f"{name} has no ModelCard"


def test_every_sampler_has_typed_options_matching_its_keywords():
    own = {name: fn for name, fn in SAMPLERS.items() if fn.__module__.startswith("genlab.")}  # not test doubles
    assert sorted(own) == [n for n in SAMPLER_OPTIONS.names() if n in own] and own
    for name, fn in own.items():
        options = SAMPLER_OPTIONS.get(name)
        params = inspect.signature(inspect.unwrap(fn)).parameters
        for f in dataclasses.fields(options):
            assert f.name in params, f"sampler {name} takes no keyword {f.name!r} that its options declare"
            assert params[f.name].default == f.default, f"sampler {name}: default of {f.name} differs"


@pytest.mark.parametrize("name", NAMES)
def test_model_passes_the_shared_model_tester(name, tmp_path):
    model, objective, spec = tiny(name)
    check_model(model, objective, batch_for(spec, domains=model.card.domains), tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_card_names_what_exists(name):
    card = MODELS.get(name).card
    model, _, _ = tiny(name)
    assert card.default_objective in OBJECTIVES
    for evaluator in card.evaluators:
        assert evaluator in EVALUATORS, f"{name} lists evaluator {evaluator!r}, which is not registered"
    for spec in card.samplers:
        assert spec.name in SAMPLERS and spec.name in SAMPLER_OPTIONS
        sampler_options(model, spec.name)  # the card's option defaults are valid options
    for module in card.ema_modules or ():
        model.get_submodule(module)  # raises if the card names a submodule the model lacks
    with pytest.raises(ConfigError):  # the run defaults and tiny config are checked like any override
        apply_overrides(RunConfig.create(name), {"model.no_such_knob": 1})


@pytest.mark.parametrize("name", NAMES)
def test_card_encoder_and_likelihood_match_the_model(name):
    model, objective, spec = tiny(name)
    card, batch = model.card, batch_for(spec, domains=model.card.domains)
    model.eval()
    with torch.no_grad():
        if card.encoder == "posterior":
            mean, logvar = model.encode(batch["x"])
            assert mean.shape == logvar.shape and mean.shape[0] == 4
        elif card.encoder == "code":
            code = model.encode(batch["x"])
            assert torch.is_tensor(code) and code.shape[0] == 4
        else:
            assert not callable(getattr(model, "encode", None)), f"{name} encodes but its card says encoder='none'"
        if card.decoder == "distribution":
            z = latent_means(model, batch["x"])
            assert model.distribution(model.decode(z)).mean().shape == batch["x"].shape
        elif card.decoder == "autoregressive":  # decode(z, x): p(x_i | x_<i, z), teacher-forced
            z = latent_means(model, batch["x"])
            assert model.distribution(model.decode(z, batch["x"])).log_prob(batch["x"]).shape == batch["x"].shape
        elif card.decoder == "generator":
            y = batch.get("y") if conditioning(model).class_conditional else None
            assert model.generate(model.sample_latent(4), y).shape == batch["x"].shape
        else:
            assert not callable(getattr(model, "decode", None)) and not callable(getattr(model, "generate", None))
        terms = objective(model, batch, model.phases()[0].name, 0)
    if card.likelihood == "exact":
        assert "nll_nats" in terms and likelihood_of(model) in ("p(x)", "p(x | y)")
    if card.likelihood == "none":
        assert "nll_nats" not in terms


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS.get(n).card.encoder != "none"
                                  or MODELS.get(n).card.decoder in ("distribution", "generator")])
def test_every_encoder_and_decoder_takes_a_label_that_an_unconditional_model_refuses(name):
    """Callers pass the labels they hold (None for an unconditional model) without asking the model's kind:
    encode / decode / generate take ``y``, None changes nothing, and an unconditional model refuses a label
    in one line."""
    model, _, spec = tiny(name)
    card, x = model.card, batch_for(spec, domains=model.card.domains)["x"]
    model.eval()
    label = torch.zeros(x.shape[0], dtype=torch.long)
    if conditioning(model).class_conditional:  # the other way round: a label is needed, None is refused
        assert card.decoder == "generator", f"{name}: a class-conditional encoder or decoder has its own test file"
        with torch.no_grad():
            assert model.generate(model.sample_latent(x.shape[0]), label).shape == x.shape
        with pytest.raises(InputError, match="class-conditional"):
            model.generate(model.sample_latent(x.shape[0]), None)
        return
    with torch.no_grad():
        if card.encoder != "none":
            code = model.encode(x)
            for a, b in zip(*(c if isinstance(c, tuple) else (c,) for c in (code, model.encode(x, y=None)))):
                assert torch.equal(a, b)
            with pytest.raises(InputError, match="unconditional"):
                model.encode(x, y=label)
        if card.decoder == "distribution":
            z = latent_means(model, x)
            assert torch.equal(model.decode(z), model.decode(z, y=None))
            with pytest.raises(InputError, match="unconditional"):
                model.decode(z, y=label)
        if card.decoder == "generator":
            with pytest.raises(InputError, match="unconditional"):
                model.generate(model.sample_latent(x.shape[0]), label)


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS.get(n).card.features is not None])
def test_declared_features_give_one_vector_per_image_whatever_the_batch(name):
    """The card's ``features`` (what `genlab probe` reads) run on the model and give (B, D) rows that do not
    depend on the other images of the batch (noise, if any, is drawn per image)."""
    model, _, spec = tiny(name)
    shake(model)
    x = batch_for(spec, n=5)["x"]
    rep = representation_of(model)
    whole = extract_features(rep, x, torch.arange(5), "cpu", batch_size=5)
    parts = extract_features(rep, x, torch.arange(5), "cpu", batch_size=2)
    assert whole.dim() == 2 and whole.shape[0] == 5 and torch.isfinite(whole).all()
    torch.testing.assert_close(whole, parts, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(whole[0], whole[1])  # the features see the image


@pytest.mark.parametrize("name", NAMES)
def test_declared_samplers_run_and_do_not_depend_on_the_batch_size(name):
    model, _, spec = tiny(name)
    source = batch_for(spec, n=5)["x"] if conditioning(model).source_image else None
    for sampler in model.card.sampler_names:
        whole = draw(model, 5, seed=3, device="cpu", batch_size=5, label=_label(model), sampler=sampler, source=source)
        parts = draw(model, 5, seed=3, device="cpu", batch_size=2, label=_label(model), sampler=sampler, source=source)
        assert whole.shape == (5, *spec.shape)
        assert whole.min() >= 0 and whole.max() <= 1
        torch.testing.assert_close(whole, parts, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_declared_conditioning_is_what_the_model_takes(name):
    model, _, spec = tiny(name)
    shake(model)
    cond = conditioning(model)
    if not model.card.samplers:
        return
    if cond.class_conditional:
        assert cond.num_classes == spec.num_classes
        a = draw(model, 4, seed=0, device="cpu", label=0)
        b = draw(model, 4, seed=0, device="cpu", label=1)
        assert not torch.equal(a, b), f"{name} declares a class label, but the label does not change its samples"
        if cond.label_optional:
            draw(model, 4, seed=0, device="cpu")
        else:
            with pytest.raises(ValueError, match="label"):
                draw(model, 4, seed=0, device="cpu")
    else:
        with pytest.raises(ValueError, match="label"):  # the tiny data has labels, the model takes none
            draw(model, 2, seed=0, device="cpu", label=1)
    if cond.source_image:  # a translation of a given image: a different image gives a different translation
        source = batch_for(spec, n=2)["x"]
        a = draw(model, 2, seed=0, device="cpu", source=source)
        b = draw(model, 2, seed=0, device="cpu", source=source.flip(0))
        assert torch.equal(a.flip(0), b) and not torch.equal(a, b)
        with pytest.raises(ValueError, match="images to translate"):
            draw(model, 2, seed=0, device="cpu")
    if cond.partial_image:
        prefix = batch_for(spec, n=2)["x"]
        out = sampler_of(model)(model, 2, make_generators(0, 2), "cpu", label=None if _label(model) is None else 1,
                                prefix=prefix, prefix_rows=1)
        assert torch.equal(out[:, :, :1], prefix[:, :, :1]), f"{name}: the given top row was not kept"


def test_sampler_options_are_typed_and_strict():
    model, _, _ = tiny("vae")
    assert sampler_options(model, None, ["temperature=0.5"]).temperature == 0.5
    with pytest.raises(ConfigError, match="did you mean temperature"):
        sampler_options(model, None, ["temprature=0.5"])
    with pytest.raises(ConfigError, match="not one of mean, sample"):
        sampler_options(model, None, {"output": "median"})
    with pytest.raises(ConfigError, match="temperature"):  # the declared range: > 0
        sampler_options(model, None, {"temperature": 0})
    with pytest.raises(ValueError, match="not one of this model's"):
        sampler_options(model, "gan")


def test_autoregressive_temperature_sharpens_and_one_is_the_model_itself():
    model = shake(tiny("pixelcnn")[0])
    plain = draw(model, 6, seed=0, device="cpu")
    assert torch.equal(plain, draw(model, 6, seed=0, device="cpu", temperature=1.0))
    cold = draw(model, 6, seed=0, device="cpu", temperature=1e-6)
    colder = draw(model, 6, seed=1, device="cpu", temperature=1e-6)
    # Near zero temperature every draw takes each conditional's mode: the seed no longer matters.
    assert torch.equal(cold, colder) and not torch.equal(plain, draw(model, 6, seed=1, device="cpu"))


def test_exact_nll_labels_its_numbers_from_the_card():
    """exact-nll writes the card's likelihood kind; a class-conditional model's -log p(x | y) is labelled so,
    beside its marginal -log p(x)."""
    from genlab.data.base import ImageSet
    from genlab.eval.options import EvalOptions

    model, objective, spec = tiny("gated-pixelcnn")  # tiny config: conditional=true
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, spec.channels, spec.height, spec.width), generator=g).to(torch.uint8)
    test = ImageSet("toy", "test", images, torch.arange(6) % spec.num_classes, spec, "scale")
    evaluate = EVALUATORS.get("exact-nll")
    out = evaluate(model, objective, test, "cpu", EvalOptions(batch_size=4))
    assert out["nll"]["kind"] == "exact" and out["nll"]["of"] == "p(x)"
    assert out["nll_conditional"]["of"] == "p(x | y)" and "-log p(x | y)" in out["bpd_conditional"]["protocol"]

    class Bounded(type(model)):  # the same network, declared a bound: the label must follow the card
        card = dataclasses.replace(type(model).card, likelihood="bound")

    model.__class__ = Bounded
    out = evaluate(model, objective, test, "cpu", EvalOptions(batch_size=4))
    assert out["nll"]["kind"] == "bound" and "upper bound" in out["nll"]["protocol"]
    assert out["nll_conditional"]["kind"] == "bound"
