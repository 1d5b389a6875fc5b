"""The class-conditional VAE (model.conditional=true): q(z | x, y), p(x | z, y), bounds on -log p(x | y),
Bayes' rule over them (`genlab classify`), and one-line refusals where a label is missing or not taken."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.errors import InputError
from genlab.eval.latent import iwae_log_likelihood
from genlab.eval.representations import representation_of
from genlab.models.latent.vae import VAE
from genlab.nn.spec import DataSpec
from genlab.objectives.latent import ELBO
from genlab.ood.likelihood import LatentLikelihood, LikelihoodOptions
from genlab.sampling.latent import reconstruct, sample_latent
from model_tester import check_model

LABELLED = DataSpec(1, 8, 8, bits=1, num_classes=3)
TINY = DataSpec(1, 4, 4, bits=1, num_classes=2)


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((n, 1, 8, 8), 0.3), generator=g)
    return {"x": x, "y": torch.arange(n) % LABELLED.num_classes}


def _cvae(spec=LABELLED, **kw):
    torch.manual_seed(0)
    return VAE(VAE.Config(latent_dim=3, channels=(8,), hidden=16, conditional=True, **kw), spec)


@pytest.mark.parametrize("iaf_steps", [0, 1])
def test_conditional_vae_passes_model_tester(iaf_steps, tmp_path):
    check_model(_cvae(iaf_steps=iaf_steps, iaf_hidden=8, iaf_context=4), ELBO(ELBO.Config(), LABELLED), _batch(),
                tmp_path)


def test_the_label_reaches_both_the_encoder_and_the_decoder():
    model = _cvae().eval()
    x = _batch()["x"][:2]
    y0, y1 = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    assert not torch.allclose(model.posterior_params(x, y0), model.posterior_params(x, y1))
    z = torch.randn(2, 3)
    assert not torch.allclose(model.decode(z, y0), model.decode(z, y1))
    # The ELBO objective reads the batch's labels: changing them changes the bound.
    objective, batch = ELBO(ELBO.Config(), LABELLED), _batch()
    torch.manual_seed(0)
    a = objective(model, batch, "main", 0)["neg_elbo"]
    torch.manual_seed(0)
    b = objective(model, {**batch, "y": (batch["y"] + 1) % 3}, "main", 0)["neg_elbo"]
    assert not torch.allclose(a, b)


def test_a_missing_label_or_a_label_for_an_unconditional_vae_is_a_one_line_error():
    model, x = _cvae().eval(), _batch()["x"][:2]
    with pytest.raises(InputError, match="class-conditional"):
        model.posterior_params(x)
    with pytest.raises(InputError, match="class-conditional"):
        model.decode(torch.zeros(2, 3))
    with pytest.raises(InputError, match="class-conditional"):
        sample_latent(model, 2, [torch.Generator().manual_seed(i) for i in range(2)], "cpu")
    with pytest.raises(InputError, match="probe must not be given"):  # its features would see the label
        representation_of(model)
    plain = VAE(VAE.Config(latent_dim=3, channels=(8,), hidden=16), LABELLED)
    with pytest.raises(InputError, match="unconditional"):
        plain.decode(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(InputError, match="labelled dataset"):
        VAE(VAE.Config(latent_dim=3, channels=(8,), hidden=16, conditional=True), DataSpec(1, 8, 8, bits=1))


def test_samples_and_reconstructions_follow_their_labels():
    model = _cvae().eval()
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    a = sample_latent(model, 4, gens, "cpu", label=torch.tensor([0, 1, 2, 0]))
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    b = sample_latent(model, 4, gens, "cpu", label=torch.tensor([0, 2, 2, 0]))
    assert torch.equal(a[[0, 2, 3]], b[[0, 2, 3]]) and not torch.allclose(a[1], b[1])  # same z, own label
    x, y = _batch()["x"][:3], torch.tensor([0, 1, 2])
    assert reconstruct(model, x, y).shape == x.shape


def _tiny_cvae():
    """A 1-D latent on 4x4 binary images, two classes: log p(x | y) by quadrature."""
    torch.manual_seed(2)
    model = VAE(VAE.Config(latent_dim=1, channels=(4,), hidden=8, conditional=True), TINY).double()
    with torch.no_grad():  # an informative but imperfect posterior, and classes that differ
        for p in model.decoder.parameters():
            p.mul_(3.0)
    return model.eval()


def _log_px_given_y(model, x, label, n=4001, lim=9.0):
    z = torch.linspace(-lim, lim, n, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        raw = model.decode(z, torch.full((n,), label, dtype=torch.long))
        log_px_z = model.distribution(raw).log_prob(x.expand(n, -1, -1, -1)).flatten(1).sum(1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z[:, 0])
    return (torch.logsumexp(log_px_z + log_pz, 0) + math.log(z[1, 0] - z[0, 0])).item()


def test_the_iwae_bound_and_the_bayes_posterior_against_quadrature():
    """IWAE at large k reaches log p(x | y) from below for each label, and the classifier's per-label bounds
    (common random numbers) give p(y | x) close to the exact posterior of the quadrature."""
    model = _tiny_cvae()
    x = torch.tensor([[1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1]], dtype=torch.float64).view(1, 1, 4, 4)
    exact = [_log_px_given_y(model, x, c) for c in (0, 1)]
    assert abs(exact[0] - exact[1]) > 0.5, "the test needs classes the model tells apart"
    g = torch.Generator().manual_seed(0)
    for c in (0, 1):
        y = torch.full((200,), c, dtype=torch.long)
        bounds = iwae_log_likelihood(model, x.expand(200, -1, -1, -1), 1000, 1000, g, y=y)
        assert bounds.mean().item() <= exact[c] + 0.01
        assert abs(bounds.mean().item() - exact[c]) < 0.05
    lik = LatentLikelihood(model, None, LikelihoodOptions(iwae_k=2000, iwae_chunk=2000))
    nll = lik.class_nlls(x, torch.tensor([0, 1]), torch.Generator().manual_seed(1))[:, 0]  # (K,)
    log_post = torch.log_softmax(-nll, 0)
    exact_post = torch.log_softmax(torch.tensor(exact, dtype=torch.float64), 0)
    assert torch.allclose(log_post.exp(), exact_post.exp(), atol=0.02)
    # The marginal -log p(x) under a uniform class prior is the logsumexp of the two.
    marginal = lik.nll(x, torch.Generator().manual_seed(1)).item()
    assert marginal == pytest.approx(-(torch.logsumexp(-nll, 0).item() - math.log(2)), abs=1e-9)


def test_a_conditional_vae_run_trains_samples_reports_and_classifies(tmp_path, capsys):
    """Through the CLI on `digits`: train, sample a label, evaluate the bounds of p(x | y), the report's
    analogy grid, and Bayes' rule over the IWAE bounds with both reject rules."""
    import json

    from genlab.cli import main

    run = tmp_path / "cvae"
    common = ["--device", "cpu", "--set", "train.progress=false"]
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--steps", "30", "--batch-size", "64",
                 "--set", "model.conditional=true", "--set", "model.latent_dim=4", "--set", "model.channels=8",
                 "--set", "model.hidden=32", *common]) == 0
    assert main(["sample", str(run), "--n", "4", "--label", "3", "--out", str(tmp_path / "s.png"), "--device", "cpu"]) == 0
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "t.png"), "--device", "cpu"]) == 2
    assert "class-conditional" in capsys.readouterr().err
    assert main(["eval", str(run), "--only", "elbo", "iwae", "--max-examples", "20", "--iwae-k", "5",
                 "--device", "cpu"]) == 0
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    assert metrics["iwae_nll"]["of"] == "p(x | y)" and metrics["neg_elbo"]["of"] == "p(x | y)"
    assert metrics["iwae_nll"]["value"] <= metrics["neg_elbo"]["value"] + 3 * metrics["neg_elbo"]["stderr"]
    assert main(["report", str(run), "--device", "cpu"]) == 0
    assert (run / "figures" / "analogies.png").exists()
    out = tmp_path / "classify"
    assert main(["classify", str(run), "--evaluate", "--n-fit", "30", "--max-examples", "30", "--ood", "noise",
                 "--iwae-k", "4", "--device", "cpu", "--out", str(out)]) == 0
    g = json.loads((out / "classify.json").read_text())["generative"]
    assert g["kind"] == "bound" and "IWAE, k=4" in g["likelihood"] and g["accuracy"]["n"] == 30
