"""`genlab eval` protocols, resumable evaluation, and a VAE bound that stays finite on outliers."""

from __future__ import annotations

import json
import math
import os
import signal
from types import SimpleNamespace

import pytest
import torch

from genlab.card import ModelCard
from genlab.cli import main
from genlab.config import DataConfig, RunConfig, apply_overrides
from genlab.data import load_dataset
from genlab.data.base import to_model_input
from genlab.eval import latent
from genlab.eval.batches import EvalInterrupted
from genlab.eval.latent import iwae_log_likelihood
from genlab.eval.options import PROTOCOLS, EvalOptions
from genlab.eval.run import evaluate_run
from genlab.registry import EVALUATORS
from genlab.train.loop import train
from genlab.train.run import load_run


class _LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I): log p(x) = log N(x; b, W W^T + s^2 I) in closed form.

    The encoder is deliberately wrong (shifted and too narrow), as an encoder is on an outlier.
    """

    # What the IWAE machinery reads (decoder kind: decode(z) -> raw outputs), as on every model.
    card = ModelCard(family="latent", default_objective="elbo", likelihood="bound", encoder="posterior",
                     decoder="distribution")

    def __init__(self, d=3, latent=2, s=0.5, shift=1.5):
        g = torch.Generator().manual_seed(0)
        self.W = torch.randn(d, latent, generator=g, dtype=torch.float64)
        self.b = torch.randn(d, generator=g, dtype=torch.float64)
        self.s, self.shift = s, shift

    def encode(self, x, y=None):  # every latent model takes a label; this one is unconditional
        mu = torch.linalg.lstsq(self.W, (x - self.b).T).solution.T + self.shift
        return mu, torch.full_like(mu, math.log(0.2))

    cfg = SimpleNamespace(latent_dim=2)  # what iwae_log_likelihood reads of a VAE's config
    flow_posterior = False

    def posterior_params(self, x, y=None):
        return torch.cat(self.encode(x, y), dim=1)

    def reparameterize(self, params, eps):
        mu, logvar = params.chunk(2, dim=1)
        return {"mu": mu, "logvar": logvar, "z": mu + torch.exp(0.5 * logvar) * eps}

    def decode(self, z, y=None):
        return z @ self.W.T + self.b

    def distribution(self, raw):
        return torch.distributions.Normal(raw, self.s)

    def log_px(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)


def test_mixture_proposal_iwae_is_a_bound_that_reaches_the_closed_form_likelihood():
    model = _LinearGaussian()
    x = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    exact = model.log_px(x).item()
    g = torch.Generator().manual_seed(0)
    # Many estimates of k = 20: their mean is the expected bound, below log p(x) by Jensen.
    small = torch.stack([iwae_log_likelihood(model, x, 20, 20, g, prior_fraction=0.1) for _ in range(2000)])
    stderr = small.std().item() / len(small) ** 0.5
    assert small.mean().item() <= exact + 3 * stderr
    elbo = iwae_log_likelihood(model, x.expand(20000, -1), 1, 1, g).mean().item()  # k = 1: the encoder alone
    assert elbo < small.mean().item()
    # With many samples the bound approaches log p(x) (up to Monte Carlo noise: one-sidedness is the check above).
    large = iwae_log_likelihood(model, x, 200_000, 50_000, g, prior_fraction=0.1).item()
    assert large == pytest.approx(exact, abs=0.02)


def test_mixture_proposal_stays_near_the_prior_estimate_when_the_encoder_is_far_off():
    model = _LinearGaussian(shift=40.0)  # the encoder puts all its mass where the posterior has none
    x = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    plain = iwae_log_likelihood(model, x, 100_000, 50_000, g, prior_fraction=0.0).item()
    mixed = iwae_log_likelihood(model, x, 100_000, 50_000, g, prior_fraction=0.1).item()
    exact = model.log_px(x).item()
    assert plain < exact - 100  # an encoder this wrong makes the plain bound useless
    assert mixed == pytest.approx(exact, abs=0.1)  # the prior's 10,000 samples of a 2-D latent do well


@pytest.fixture(scope="module")
def digits_vae(tmp_path_factory):
    cfg = RunConfig.create("vae")
    apply_overrides(cfg, ["data.name=digits", "train.steps=300", "train.batch_size=64", "train.progress=false",
                          "train.log_every=1000", "train.ckpt_every=1000", "optim.lr=3e-3", "model.latent_dim=4",
                          "model.channels=8", "model.hidden=64", "model.blocks=0"])
    out = tmp_path_factory.mktemp("digits-vae")
    train(cfg, out)
    return out


def _outliers():
    test = load_dataset("digits", "test", DataConfig(name="digits"))
    digits = test.images[:8]
    noise = torch.randint(0, 256, (8, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    white = torch.full((8, 1, 8, 8), 255, dtype=torch.uint8)  # constant, the opposite of the black background
    return {"digits": digits, "inverted": 255 - digits, "noise": noise, "white": white}


def _bounds(model, images, k=64):
    x = to_model_input(images, "scale")
    g = torch.Generator().manual_seed(0)
    iwae = -iwae_log_likelihood(model, x, k, k, g)
    elbo = -iwae_log_likelihood(model, x.repeat(64, 1, 1, 1), 1, 1, g).view(64, -1).mean(0)
    return iwae, elbo


def test_trained_vae_scores_noise_inverted_and_constant_images_with_finite_ordered_bounds(digits_vae):
    model = load_run(digits_vae).model
    scores = {name: _bounds(model, images) for name, images in _outliers().items()}
    for name, (iwae, elbo) in scores.items():
        assert torch.isfinite(iwae).all() and torch.isfinite(elbo).all(), name
        assert (iwae <= elbo + 1.0).all(), name  # IWAE tightens the ELBO, up to the ELBO's Monte Carlo noise
    typical = scores["digits"][0].max()
    for name in ("inverted", "noise", "white"):
        assert (scores[name][0] > typical).all(), name


def test_wrong_encoder_gives_a_finite_bound_not_1e25_bits_per_dim(digits_vae):
    """An encoder far off on an image (simulated by scaling its output layer) once gave std ~1e15."""
    model = load_run(digits_vae).model
    with torch.no_grad():
        model.encoder.dense[-1].weight.mul_(1e6)
        model.encoder.dense[-1].bias.add_(1e3)
    x = to_model_input(_outliers()["noise"], "scale")
    mu, logvar = model.encode(x)
    assert mu.abs().max() <= model.cfg.max_abs_mean and logvar.max() <= model.cfg.max_logvar
    nll = -iwae_log_likelihood(model, x, 100, 100, torch.Generator().manual_seed(0))
    bpd = nll / (64 * math.log(2))
    assert torch.isfinite(bpd).all() and bpd.max() < 40  # decoder outputs within +-30: < 30 nats per pixel


def _eval(run, **kw):
    return evaluate_run(run, EvalOptions(**kw), "cpu", ["elbo", "iwae"], log=lambda *_: None)


def test_interrupted_evaluation_writes_partial_results_and_continues_to_the_same_numbers(digits_vae, tmp_path,
                                                                                       monkeypatch):
    import shutil

    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    shutil.copytree(digits_vae, full_dir)
    shutil.copytree(digits_vae, cut_dir)
    opts = dict(iwae_k=20, batch_size=16, max_examples=100)
    full = _eval(full_dir, **opts)["metrics"]

    real, calls = latent.iwae_log_likelihood, []

    def stopped_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a batch
        return real(*args, **kwargs)

    monkeypatch.setattr(latent, "iwae_log_likelihood", stopped_on_the_third_batch)
    with pytest.raises(EvalInterrupted, match="stopped after 32 of 100 images"):
        _eval(cut_dir, **opts)
    partial = json.loads((cut_dir / "eval.json").read_text())["metrics"]
    assert partial["neg_elbo"].get("partial") is None  # the evaluator that finished is kept whole
    assert partial["iwae_nll"]["partial"] and partial["iwae_nll"]["n_done"] == 32
    assert partial["iwae_nll"]["n_planned"] == 100 and partial["iwae_nll"]["n"] == 32
    monkeypatch.setattr(latent, "iwae_log_likelihood", real)
    calls.clear()
    # A finished evaluator is not redone: it would fail now.
    monkeypatch.setitem(EVALUATORS._entries, "elbo", None)
    resumed = _eval(cut_dir, **opts)["metrics"]
    for key in ("iwae_nll", "iwae_bpd", "neg_elbo"):
        assert resumed[key]["value"] == full[key]["value"], key
        assert resumed[key]["stderr"] == full[key]["stderr"], key
        assert "partial" not in resumed[key]
    assert not (cut_dir / "eval_partial").exists()


def test_sigterm_stops_an_evaluation_like_ctrl_c(digits_vae, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_vae, run)
    real, calls = latent.iwae_log_likelihood, []

    def terminated_on_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(latent, "iwae_log_likelihood", terminated_on_the_second_batch)
    before = signal.getsignal(signal.SIGTERM)
    code = main(["eval", str(run), "--only", "iwae", "--iwae-k", "8", "--batch-size", "16", "--max-examples", "64",
                 "--device", "cpu"])
    assert code == 130
    record = json.loads((run / "eval.json").read_text())["metrics"]["iwae_nll"]
    assert record["partial"] and record["n_done"] in (16, 32) and record["n_planned"] == 64
    assert signal.getsignal(signal.SIGTERM) is before  # the evaluation's handler is gone


def test_default_protocol_is_quick_and_every_metric_states_it(digits_vae, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_vae, run)
    assert main(["eval", str(run), "--only", "iwae", "elbo", "--device", "cpu", "--iwae-k", "4"]) == 0
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    for record in metrics.values():
        proto = record["eval_protocol"]
        assert proto["name"] == "quick" and proto["is_paper_protocol"] is False
        assert proto["max_examples"] == PROTOCOLS["quick"]["max_examples"]
    assert metrics["iwae_nll"]["k"] == 4 and metrics["iwae_nll"]["eval_protocol"]["iwae_k"] == 4
    # The digits test split has 300 images, fewer than the quick protocol's 1000: all are used, and said so.
    assert metrics["iwae_nll"]["n"] == 300 and metrics["iwae_nll"]["images"] == "all 300 images"


def test_paper_protocol_sizes_and_explicit_flags_override():
    paper = EvalOptions.for_protocol("paper")
    assert (paper.iwae_k, paper.max_examples, paper.n_samples) == (5000, None, 10000)
    assert paper.protocol_record()["is_paper_protocol"]
    smaller = EvalOptions.for_protocol("paper", iwae_k=100)
    assert smaller.iwae_k == 100 and not smaller.protocol_record()["is_paper_protocol"]
    assert EvalOptions() == EvalOptions.for_protocol("quick")
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        EvalOptions.for_protocol("fast")
