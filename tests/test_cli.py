"""The command line end to end on the bundled digits, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from genlab.cli import main

TINY = ["--set", "model.channels=8,16", "--set", "model.hidden=32", "--set", "train.progress=false",
        "--set", "train.log_every=5", "--batch-size", "32", "--device", "cpu"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--steps", "20",
                 "--set", "latent_dim=2", *TINY]) == 0
    return run


def test_eval_only_rejects_an_evaluator_of_another_family(trained_run, capsys):
    code, _, err = _run(capsys, "eval", str(trained_run), "--only", "bigan-probe", "--device", "cpu")
    assert code == 2
    assert "'bigan-probe' does not apply to a VAE run" in err and "elbo" in err and "Traceback" not in err


def test_train_sample_eval_report(trained_run, capsys, tmp_path):
    code, out, _ = _run(capsys, "sample", str(trained_run), "--n", "16", "--out", str(tmp_path / "s.png"),
                        "--device", "cpu")
    assert code == 0 and (tmp_path / "s.png").stat().st_size > 0
    code, out, _ = _run(capsys, "eval", str(trained_run), "--iwae-k", "20", "--device", "cpu")
    assert code == 0
    metrics = json.loads((trained_run / "eval.json").read_text())["metrics"]
    assert metrics["iwae_nll"]["kind"] == "bound" and "k=20" in metrics["iwae_nll"]["protocol"]
    assert metrics["iwae_nll"]["value"] <= metrics["neg_elbo"]["value"] + 1.0  # IWAE tightens the ELBO
    assert metrics["iwae_bpd"]["unit"] == "bits/dim"
    code, out, _ = _run(capsys, "report", str(trained_run), "--device", "cpu")
    assert code == 0
    md = (trained_run / "report.md").read_text()
    for fig in ("samples.png", "reconstructions.png", "interpolation.png", "manifold.png", "latent_scatter.png",
                "loss_curves.png"):
        assert fig in md and (trained_run / "figures" / fig).exists()
    assert "iwae_nll" in (trained_run / "report.html").read_text()


def test_sampling_is_the_same_whatever_the_batch_size(trained_run, capsys, tmp_path):
    for bs in ("5", "64"):
        assert main(["sample", str(trained_run), "--n", "12", "--batch-size", bs, "--device", "cpu",
                     "--out", str(tmp_path / f"b{bs}.png")]) == 0
    assert (tmp_path / "b5.png").read_bytes() == (tmp_path / "b64.png").read_bytes()


@pytest.mark.parametrize("argv,message", [
    (["train", "vae", "--out", "X", "--set", "model.latent_dimm=3"], "did you mean model.latent_dim"),
    (["train", "vea", "--out", "X"], "unknown model 'vea'"),
    (["train", "vae", "--data", "nosuch", "--out", "X"], "nosuch"),
    (["train", "vae", "--out", "X", "--set", "steps=many"], "not an integer"),
    (["train", "vae", "--data", "digits"], "--out"),
    (["sample", "/nonexistent/run"], "not a genlab run folder"),
    (["train", "--resume", "/nonexistent/run"], "not a genlab run folder"),
])
def test_bad_input_gives_one_line_errors(argv, message, capsys):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_dataset_says_where_to_put_it(tmp_path, capsys):
    code, _, err = _run(capsys, "train", "vae", "--data", "mnist", "--data-root", str(tmp_path), "--out",
                        str(tmp_path / "run"))
    assert code == 2
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path) in err and "download" in err


def test_a_second_train_into_the_same_folder_is_refused(trained_run, capsys):
    code, _, err = _run(capsys, "train", "vae", "--data", "digits", "--out", str(trained_run))
    assert code == 2 and "--resume" in err


def test_dry_run_prints_the_resolved_config(capsys):
    code, out, _ = _run(capsys, "train", "--preset", "vae-binarized-mnist", "--dry-run", "--set", "beta=0.5")
    cfg = json.loads(out)
    assert code == 0 and cfg["data"]["name"] == "binarized-mnist" and cfg["objective"]["beta"] == 0.5


def test_help_explains_every_command():
    for cmd in ("train", "sample", "eval", "report", "models", "data", "quickstart"):
        out = subprocess.run([sys.executable, "-m", "genlab.cli", cmd, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: genlab " + cmd in out.stdout


def test_models_and_data_list(capsys):
    code, out, _ = _run(capsys, "models")
    assert code == 0 and "vae" in out and "autoencoder" in out
    code, out, _ = _run(capsys, "data", "list")
    assert code == 0 and "binarized-mnist" in out and "digits" in out


def test_data_check_on_the_shared_files(data_root, capsys):
    code, out, _ = _run(capsys, "data", "check", "mnist", "binarized-mnist", "frey", "--data-root", str(data_root))
    assert code == 0 and out.count(" ok ") == 3


def test_gan_train_sample_report(tmp_path, capsys):
    run = tmp_path / "cgan"
    assert main(["train", "cgan", "--data", "digits", "--out", str(run), "--steps", "3", "--batch-size", "16",
                 "--device", "cpu", "--set", "train.progress=false"]) == 0
    code, _, _ = _run(capsys, "sample", str(run), "--n", "8", "--label", "7", "--device", "cpu",
                      "--out", str(tmp_path / "sevens.png"))
    assert code == 0 and (tmp_path / "sevens.png").exists()
    code, _, err = _run(capsys, "sample", str(run), "--n", "8", "--label", "12", "--device", "cpu")
    assert code == 2 and "out of range" in err
    code, _, _ = _run(capsys, "report", str(run), "--device", "cpu")
    assert code == 0
    for fig in ("samples.png", "interpolation.png", "interpolation.gif", "nearest_train.png"):
        assert (run / "figures" / fig).exists()


# ---- sampler options and error reporting (issue 11) ---------------------------------------------


def test_sample_takes_sampler_options_from_their_dataclass(trained_run, capsys, tmp_path):
    code, out, _ = _run(capsys, "sample", str(trained_run), "--n", "4", "--out", str(tmp_path / "t.png"),
                        "--sampler", "latent", "--set", "temperature=0.5", "--set", "output=sample", "--device", "cpu")
    assert code == 0 and "wrote 4 samples" in out
    code, _, err = _run(capsys, "sample", str(trained_run), "--set", "temprature=0.5", "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no option 'temprature'; did you mean temperature?" in err
    code, _, err = _run(capsys, "sample", str(trained_run), "--sampler", "gan", "--device", "cpu")
    assert code == 2 and "not one of this model's: latent" in err


def test_sample_help_lists_every_samplers_options(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    out = capsys.readouterr().out
    assert "--sampler NAME" in out and "temperature=1.0 (a finite number > 0)" in out and "output=mean (mean|sample)" in out
    assert "vae: latent" in out


def test_a_bug_keeps_its_traceback_and_user_errors_stay_one_line(monkeypatch, capsys):
    from genlab.registry import Registry

    # An internal KeyError is a bug: it must escape with its traceback, not become a one-line "error".
    def broken(self):
        raise KeyError("internal")

    monkeypatch.setattr(Registry, "items", broken)
    with pytest.raises(KeyError, match="internal"):
        main(["models"])
    monkeypatch.undo()
    code, _, err = _run(capsys, "train", "no-such-model", "--dry-run")
    assert code == 2 and err.count("\n") == 1 and "unknown model 'no-such-model'" in err
    with pytest.raises(KeyError, match="no-such-model"):  # --traceback shows user errors in full too
        main(["train", "no-such-model", "--dry-run", "--traceback"])
    monkeypatch.setenv("GENLAB_DEBUG", "1")
    with pytest.raises(KeyError, match="no-such-model"):
        main(["train", "no-such-model", "--dry-run"])
