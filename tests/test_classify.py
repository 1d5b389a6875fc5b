"""The generative classifier with a reject option: Bayes' rule, the fitted reject rules, the calibration and
selective-classification metrics, and `genlab classify` on tiny runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.cli import main
from genlab.config import DataConfig
from genlab.data import load_dataset
from genlab.ood.calibration import aurc, expected_calibration_error, reliability_bins, risk_coverage
from genlab.eval.diffusion import variational_bound
from genlab.eval.exact import class_conditional_nlls
from genlab.ood.classifier import _autoregressive_nll, _diffusion_nll, decide, fit_reject_rules, scored_from
from genlab.ood.likelihood import LikelihoodOptions
from genlab.train.run import load_run
from test_card import batch_for, tiny

COMMON = ["--set", "train.progress=false", "--set", "train.log_every=1000", "--device", "cpu"]

# ---- a hand-made two-class model: x ~ N(-2, 1) for y = 0, N(+2, 1) for y = 1, p(y) = 1/2 each ----------


def _gauss_log_lik(x: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 2) log N(x; mu_y, 1) in nats."""
    mu = torch.tensor([-2.0, 2.0], dtype=torch.float64)
    return -0.5 * (x[:, None].double() - mu) ** 2 - 0.5 * math.log(2 * math.pi)


LOG_PRIOR = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))


def _draw(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    return torch.randn(n, generator=g, dtype=torch.float64) + 4.0 * y - 2.0


def test_bayes_rule_on_two_gaussians_gives_the_closed_form_posterior():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.25, 4.0], dtype=torch.float64)
    s = scored_from(_gauss_log_lik(x), LOG_PRIOR, dims=1)
    # log p(x | 1) - log p(x | 0) = 4x, so p(y = 1 | x) = sigmoid(4x)
    assert torch.allclose(s.log_post.exp()[:, 1], torch.sigmoid(4 * x), atol=1e-12)
    px = 0.5 * (torch.exp(-0.5 * (x + 2) ** 2) + torch.exp(-0.5 * (x - 2) ** 2)) / math.sqrt(2 * math.pi)
    assert torch.allclose(s.log_px, px.log(), atol=1e-12)
    assert np.allclose(s.terms.bpd, -px.log().numpy() / math.log(2))  # one dimension: bits per image
    # log(1 - max p(y|x)) stays finite where max p(y|x) rounds to 1 in float64
    far = scored_from(_gauss_log_lik(torch.tensor([20.0], dtype=torch.float64)), LOG_PRIOR, dims=1)
    assert far.confidence[0] == 1.0 and far.ambiguity[0] == pytest.approx(-80.0, abs=1e-9)


def test_the_rules_reject_a_point_outside_both_classes_and_one_between_them():
    rules = fit_reject_rules(scored_from(_gauss_log_lik(_draw(4000, 0)), LOG_PRIOR, dims=1), 0.05, "bpd", "held out")
    x = torch.tensor([-2.0, 2.0, 0.0, 30.0], dtype=torch.float64)
    v = decide(scored_from(_gauss_log_lik(x), LOG_PRIOR, dims=1), rules, torch.tensor([0, 1]))
    assert v["label"][:2].tolist() == [0, 1] and v["accepted"][:2].all()
    assert v["ambiguous"][2] and not v["outlier"][2]  # p(y|x) = 1/2 at x = 0: ambiguous, but likely
    assert v["outlier"][3] and not v["ambiguous"][3]  # far outside both: p(y=1|x) ~ 1, yet p(x) ~ 0
    assert 0 < rules.chow_t < 1


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_fitted_thresholds_hit_the_false_rejection_rate_on_new_held_out_data(rate):
    n_fit, n_new = 2000, 20000
    fit = scored_from(_gauss_log_lik(_draw(n_fit, 1)), LOG_PRIOR, dims=1)
    rules = fit_reject_rules(fit, rate, "bpd", "fit")
    on_fit = decide(fit, rules, torch.tensor([0, 1]))
    for rule in ("ambiguous", "outlier"):  # on its own fit set: at most rate * n, at least one image fewer
        assert rate - 1 / n_fit <= on_fit[rule].mean() <= rate
    new = decide(scored_from(_gauss_log_lik(_draw(n_new, 2)), LOG_PRIOR, dims=1), rules, torch.tensor([0, 1]))
    # The rate on new data varies with the fitted threshold (binomial spread of n_fit) and with the new sample.
    sd = math.sqrt(rate * (1 - rate) * (1 / n_fit + 1 / n_new))
    for rule in ("ambiguous", "outlier"):
        assert abs(new[rule].mean() - rate) < 4 * sd


def test_ece_and_aurc_equal_hand_computed_values():
    conf, correct = [0.9, 0.8, 0.6, 0.3], [True, False, True, False]
    # bins [0, 0.5], (0.5, 1]: {0.3} acc 0 conf 0.3; {0.9, 0.8, 0.6} acc 2/3 conf 23/30 -> 1/4*0.3 + 3/4*0.1
    assert expected_calibration_error(conf, correct, bins=2) == pytest.approx(0.15, abs=1e-12)
    r = reliability_bins(conf, correct, bins=2)
    assert r["count"].tolist() == [1, 3] and r["accuracy"][1] == pytest.approx(2 / 3)
    coverage, risk = risk_coverage(conf, correct)  # accepted in order: right, wrong, right, wrong
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk == pytest.approx([0.0, 1 / 2, 1 / 3, 2 / 4])
    assert aurc(conf, correct) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    # a confidence of exactly 1 falls in the last bin; tied scores count their errors pro rata
    assert reliability_bins([1.0, 0.0], [True, False], bins=4)["count"].tolist() == [1, 0, 0, 1]
    assert aurc([1.0, 1.0], [True, False]) == pytest.approx(0.5)
    assert aurc([1.0, 1.0, 0.2], [True, True, False]) == pytest.approx((0 + 0 + 1 / 3) / 3)


def test_all_labels_in_one_batch_equal_one_pass_per_label():
    model, objective, spec = tiny("gated-pixelcnn")  # tiny config: conditional=true, 3 classes
    x = batch_for(spec, n=3)["x"]
    labels = torch.arange(spec.num_classes)
    with torch.no_grad():
        batched = _autoregressive_nll(model.eval(), objective, x, labels, None, LikelihoodOptions())
        assert torch.allclose(batched, class_conditional_nlls(model, objective, x, spec.num_classes), atol=1e-4)


def test_a_diffusion_bound_gives_every_label_the_same_noise():
    model, objective, spec = tiny("diffusion")  # tiny config: conditional=true, T = 20
    x = batch_for(spec, n=2)["x"]
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        per_label = _diffusion_nll(model.eval(), objective, x, torch.tensor([1, 1, 0]), g, LikelihoodOptions())
        alone = variational_bound(model, x, torch.zeros(2, dtype=torch.long), torch.Generator().manual_seed(3))
    assert torch.equal(per_label[0], per_label[1])  # same label, same noise: the same bound
    assert torch.allclose(per_label[2], alone["total"])


# ---- tiny runs trained through the normal loop (conditional_run: tests/conftest.py), classified by the CLI ---


@pytest.fixture(scope="module")
def per_class_runs(tmp_path_factory):
    runs = []
    for c in (0, 1):
        run = tmp_path_factory.mktemp("runs") / f"class{c}"
        assert main(["train", "pixelcnn", "--data", "digits", "--out", str(run), "--steps", "20", "--batch-size",
                     "32", "--set", "model.channels=8", "--set", "model.residual_blocks=1", "--set",
                     "model.head_channels=16", "--set", "model.first_kernel=3", "--set", f"data.classes={c}",
                     "--set", "optim.lr=3e-3", *COMMON]) == 0
        runs.append(run)
    return runs


def _digit_png(tmp_path, index: int):
    test = load_dataset("digits", "test", DataConfig(name="digits"))
    path = tmp_path / f"digit{index}.png"
    Image.fromarray(test.images[index, 0].numpy()).resize((64, 64), Image.NEAREST).save(path)
    return path, int(test.labels[index])


def test_classify_command_prints_label_posterior_and_verdict(conditional_run, tmp_path, capsys):
    png, _ = _digit_png(tmp_path, 0)
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(noise)
    args = ["classify", str(conditional_run), str(png), str(noise), "--n-fit", "100", "--outlier-score", "bpd",
            "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "p(y|x)" in line]
    assert len(lines) == 2 and "label" in lines[0] and "conversion:" in out
    assert "REJECT (outlier" in lines[1]  # uniform noise is an outlier even for a 30-step model
    stored = json.loads((conditional_run / "classify_rules.json").read_text())
    assert stored["rules"]["n_fit"] == 100 and stored["rules"]["false_rejection"] == 0.05
    entry = json.loads((conditional_run / "classifications.json").read_text())["images"][0]
    assert sum(entry["posteriors"].values()) == pytest.approx(1.0)
    assert main(args) == 0 and "fitting" not in capsys.readouterr().out  # the stored thresholds are reused


def test_classify_evaluate_writes_metrics_with_their_protocol(conditional_run, tmp_path):
    out = tmp_path / "eval"
    assert main(["classify", str(conditional_run), "--evaluate", "--n-fit", "100", "--max-examples", "100",
                 "--ood", "noise", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads((out / "classify.json").read_text())
    g = result["generative"]
    assert g["kind"] == "exact" and 0 <= g["ece"] <= 1 and 0 <= g["aurc"] <= 1
    assert g["accuracy"]["n"] == 100 and g["accuracy"]["stderr"] is not None
    assert "100 random digits/test images" in result["protocol"]["text"]
    assert result["baseline"] is None  # no shipped LeNet reads 8x8 digits
    assert g["ood"]["noise"]["outlier"]["bpd"]["auroc"] > 0.5
    assert (out / "figures" / "classify" / "reliability.png").exists() and (out / "classify_report.md").exists()


def test_one_run_per_class_and_the_errors_that_say_what_to_use(per_class_runs, tmp_path, capsys):
    for c, run in enumerate(per_class_runs):  # data.classes=c: trained, and evaluated, on class c only
        loaded = load_run(run)
        assert set(loaded.dataset("train").labels.tolist()) == {c} == set(loaded.dataset("test").labels.tolist())
    png, label = _digit_png(tmp_path, int((load_dataset("digits", "test", DataConfig()).labels < 2).nonzero()[0]))
    assert main(["classify", *map(str, per_class_runs), str(png), "--n-fit", "20", "--device", "cpu",
                 "--out", str(tmp_path)]) == 0
    entry = json.loads((tmp_path / "classifications.json").read_text())["images"][0]
    assert set(entry["posteriors"]) == {"0", "1"}
    assert main(["classify", str(per_class_runs[0]), str(png), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not p(x | y)" in err and "data.classes" in err
    assert main(["classify", str(per_class_runs[0]), str(per_class_runs[0]), str(png), "--device", "cpu"]) == 2
    assert "same class" in capsys.readouterr().err
