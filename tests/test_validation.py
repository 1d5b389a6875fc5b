"""Every number is checked where it enters: declared field ranges, and the numeric options of the command line.

A bad value must give exit code 2, one line that names the allowed values, and write nothing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing

import pytest
import torch

from genlab.cli import _Checked, build_parser, main
from genlab.config import (ConfigError, DataConfig, OptimConfig, Range, RunConfig, TrainConfig, apply_overrides,
                           check_fields, declared_range, is_numeric, validate)
from genlab.eval.options import EvalOptions
from genlab.ood.likelihood import LikelihoodOptions
from genlab.ood.run import OODOptions
from genlab.ood.scorer import ScorerOptions
from genlab.registry import MODELS, OBJECTIVES, SAMPLER_OPTIONS


def _config_classes() -> list[type]:
    """Every configuration dataclass a user can set: run sections, each model's, objective's and sampler's, option sets.

    Only genlab's own registrations: other test modules register throwaway objectives of their own.
    """
    registered = [cls for registry in (MODELS, OBJECTIVES) for _, cls in registry.items()
                  if cls.__module__.startswith("genlab.")]
    samplers = [cls for _, cls in SAMPLER_OPTIONS.items() if cls.__module__.startswith("genlab.")]
    return ([DataConfig, TrainConfig, OptimConfig, EvalOptions, OODOptions, ScorerOptions, LikelihoodOptions]
            + [cls.Config for cls in registered] + samplers)


@pytest.mark.parametrize("owner", _config_classes(), ids=lambda c: c.__qualname__)
def test_every_numeric_field_declares_a_range_its_default_satisfies(owner):
    hints = typing.get_type_hints(owner)
    numeric = [f for f in dataclasses.fields(owner) if is_numeric(hints[f.name])]
    undeclared = [f.name for f in numeric if "range" not in f.metadata]
    assert not undeclared, f"{owner.__qualname__}: declare a range with bounded(...) for {undeclared}"
    check_fields(owner())  # the defaults themselves are allowed


def test_every_numeric_command_line_option_is_checked():
    """No option parses a bare int/float; each checked one resolves its declared range."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    checked = 0
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.type not in (int, float), f"genlab {name} {action.option_strings}: use a checked type"
            if isinstance(action.type, _Checked):
                with pytest.raises(Exception) as info:
                    action.type("nan")
                assert "is not" in str(info.value)
                checked += 1
    assert checked >= 25  # the mechanism is in use (28 checked options today)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--steps", "2", "--batch-size", "16",
                 "--device", "cpu", "--set", "model.channels=8", "--set", "model.hidden=16",
                 "--set", "train.progress=false"]) == 0
    return run


def _snapshot(folder) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def _main_exit(argv) -> int:
    """main's exit status, whether argparse ends the process (SystemExit) or main returns."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


BAD_OPTIONS = [
    # (arguments after the command and the run folder, text the error must contain)
    (["eval", "--max-examples", "-5"], "-5 is not allowed: give an integer >= 1"),
    (["eval", "--max-examples", "0"], "0 is not allowed: give an integer >= 1"),
    (["eval", "--iwae-k", "0"], "0 is not allowed: give an integer >= 1"),
    (["eval", "--iwae-k", "inf"], "'inf' is not an integer >= 1"),
    (["eval", "--iwae-decodes", "0"], "0 is not allowed: give an integer >= 1"),
    (["eval", "--n-samples", "0"], "give an integer >= 1"),
    (["eval", "--n-reference", "-1"], "give an integer >= 1"),
    (["eval", "--batch-size", "0"], "give an integer >= 1"),
    (["eval", "--seed", "-1"], "give an integer in [0, 4294967295]"),
    (["sample", "--n", "0"], "give an integer >= 1"),
    (["sample", "--n", "-3"], "give an integer >= 1"),
    (["sample", "--batch-size", "0"], "give an integer >= 1"),
    (["sample", "--seed", "4294967296"], "give an integer in [0, 4294967295]"),
    (["sample", "--label", "-1"], "give an integer >= 0"),
    (["sample", "--n", "2.5"], "'2.5' is not an integer >= 1"),
    (["sample", "--set", "temperature=inf"], "temperature=inf is not allowed: give a finite number > 0"),
    (["sample", "--set", "temperature=0"], "temperature=0.0 is not allowed: give a finite number > 0"),
    (["complete", "--images", "0"], "give an integer >= 1"),
    (["complete", "--completions", "0"], "give an integer >= 1"),
    (["complete", "--rows", "-1"], "give an integer >= 0"),
    (["ood", "--ood", "mnist", "--max-examples", "1"], "give an integer >= 2"),
    (["ood", "--ood", "mnist", "--typicality-m", "0"], "give an integer >= 1"),
    (["ood", "--ood", "mnist", "--reference-examples", "0"], "give an integer >= 1"),
    (["ood", "--ood", "mnist", "--iwae-k", "0"], "give an integer >= 1"),
    (["ood", "--ood", "mnist", "--batch-size", "-2"], "give an integer >= 1"),
    (["score", "x.png", "--iwae-k", "0"], "give an integer >= 1"),
]


@pytest.mark.parametrize("argv,message", BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_bad_option_of_a_run_command_is_one_line_and_writes_nothing(trained_run, argv, message, capsys):
    before = _snapshot(trained_run)
    code = _main_exit([argv[0], str(trained_run), *argv[1:]])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert _snapshot(trained_run) == before


BAD_TRAIN = [
    (["--steps", "-1"], "give an integer >= 0"),
    (["--until-step", "-2"], "give an integer >= 1"),
    (["--until-step", "0"], "give an integer >= 1"),
    (["--batch-size", "0"], "give an integer >= 1"),
    (["--seed", "-1"], "give an integer in [0, 4294967295]"),
    (["--set", "optim.lr=inf"], "optim.lr=inf is not allowed: give a finite number > 0"),
    (["--set", "optim.lr=nan"], "optim.lr=nan is not allowed: give a finite number > 0"),
    (["--set", "optim.lr=0"], "give a finite number > 0"),
    (["--set", "optim.lr=1e400"], "optim.lr=inf is not allowed"),
    (["--set", "optim.min_lr_ratio=2"], "optim.min_lr_ratio=2.0 is not allowed: give a number in [0, 1]"),
    (["--set", "optim.warmup_steps=-3"], "optim.warmup_steps=-3 is not allowed: give an integer >= 0"),
    (["--set", "train.max_bad_steps=-1"], "train.max_bad_steps=-1 is not allowed: give an integer >= 0"),
    (["--set", "train.compile_mode=fast"], "is not one of default, reduce-overhead, max-autotune"),
    (["--set", "train.keep_checkpoints=-1"], "give an integer >= 0"),
    (["--set", "train.ema_decay=1"], "give a number in [0, 1)"),
    (["--set", "train.log_every=0"], "give an integer >= 1"),
    (["--set", "train.grad_accum=0"], "give an integer >= 1"),
    (["--set", "optim.beta2=1"], "give a number in [0, 1)"),
    (["--set", "optim.eps=0"], "give a finite number > 0"),
    (["--set", "optim.grad_clip=-1"], "give a finite number >= 0"),
    (["--set", "optim.weight_decay=inf"], "give a finite number >= 0"),
    (["--set", "model.latent_dim=0"], "give an integer >= 1"),
    (["--set", "model.channels=8,0"], "model.channels=8,0 is not allowed: give integers >= 1, comma-separated"),
    (["--set", "model.gaussian_sigma=0"], "give a finite number > 0"),
    (["--set", "model.min_logvar=-inf"], "give a finite number"),
    (["--set", "objective.beta=-1"], "give a finite number >= 0"),
    (["--set", "objective.kl_warmup_steps=-1"], "give an integer >= 0"),
    (["--set", "data.test_fraction=0"], "give a number in (0, 1)"),
    (["--set", "data.image_size=-1"], "give an integer >= 0"),
    (["--set", "data.test_binarization_seed=-1"], "give an integer in [0, 4294967295]"),
]


@pytest.mark.parametrize("argv,message", BAD_TRAIN, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_bad_training_value_is_one_line_and_creates_no_run(argv, message, capsys, tmp_path):
    out = tmp_path / "run"
    code = _main_exit(["train", "vae", "--out", str(out), "--device", "cpu", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("model,override,message", [
    ("pixelcnn", "model.channels=0", "give an integer >= 2"),
    ("gated-pixelcnn", "model.mixture_components=0", "give an integer >= 1"),
    ("pixel-transformer", "model.dropout=1", "give a number in [0, 1)"),
    ("dcgan", "model.n_critic=0", "give an integer >= 1"),
    ("dcgan", "model.init_std=inf", "give a finite number > 0"),
    ("cgan", "model.d_lr_scale=0", "give a finite number > 0"),
    ("bigan", "model.d_dropout=-0.1", "give a number in [0, 1)"),
    ("dcgan", "objective.penalty_weight=nan", "give a finite number >= 0"),
])
def test_every_family_checks_its_model_and_objective_fields(model, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(RunConfig.create(model), [override])


def test_quickstart_and_features_check_their_numbers(capsys, tmp_path):
    assert _main_exit(["quickstart", "--steps", "-1", "--out", str(tmp_path / "q")]) == 2
    assert _main_exit(["features", "train", "--seed", "-1", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert err.count("give an integer") == 2 and not any(tmp_path.iterdir())


def test_a_run_folder_with_a_bad_value_is_refused_in_one_line(trained_run, capsys, tmp_path):
    """A config.json edited by hand goes through the same ranges when it is read back."""
    bad = tmp_path / "bad"
    bad.mkdir()
    cfg = json.loads((trained_run / "config.json").read_text())
    cfg["optim"]["lr"] = -1.0
    (bad / "config.json").write_text(json.dumps(cfg))
    code = _main_exit(["sample", str(bad), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "optim.lr=-1.0 is not allowed: give a finite number > 0" in err
    assert sorted(p.name for p in bad.iterdir()) == ["config.json"]


def test_python_api_numbers_are_checked(trained_run, tmp_path):
    import genlab

    run = genlab.load(trained_run, "cpu")
    for kwargs, message in [(dict(n=0), "n=0 is not allowed"), (dict(n=2, batch_size=0), "batch_size=0"),
                            (dict(n=2, seed=-1), "seed=-1"), (dict(n=2, temperature=math.nan), "temperature=nan")]:
        with pytest.raises(ConfigError, match=message):
            run.sample(**kwargs)
    with pytest.raises(ConfigError, match="iwae_k=0 is not allowed"):
        run.nll(torch.zeros(1, run.spec.channels, run.spec.height, run.spec.width), iwae_k=0)
    with pytest.raises(ConfigError, match="until_step=-1 is not allowed: give an integer >= 1"):
        genlab.train("vae", out=tmp_path / "run", until_step=-1)
    with pytest.raises(ConfigError, match="optim.lr=inf is not allowed"):
        genlab.train("vae", out=tmp_path / "run", lr=math.inf)
    assert not (tmp_path / "run").exists()


def test_python_options_are_checked_when_built():
    with pytest.raises(ConfigError, match="max_examples=0 is not allowed"):
        EvalOptions(max_examples=0)
    with pytest.raises(ConfigError, match="typicality_m=0 is not allowed"):
        OODOptions(ood=["mnist"], typicality_m=0).validate()
    cfg = RunConfig.create("vae")
    cfg.optim.lr = math.inf  # set from Python, past the override parser
    with pytest.raises(ConfigError, match="optim.lr=inf"):
        validate(cfg)


def test_the_range_description_reads_as_what_to_type():
    rng, kind = declared_range(EvalOptions, "max_examples")
    assert rng.describe(kind) == "an integer >= 1, or none"
    rng, kind = declared_range(OptimConfig, "min_lr_ratio")
    assert rng.describe(kind) == "a number in [0, 1]"
    open_ended = Range(ge=0.0, finite=False)  # a field that gives inf a meaning says so
    assert open_ended.describe(float) == "a number >= 0 (inf allowed)" and open_ended.allows(math.inf)
    assert not Range(ge=0.0).allows(math.inf) and not Range().allows(math.nan) and Range().allows(-1e300)
