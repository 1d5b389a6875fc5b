"""Autoencoder and VAE: the shared model tester, likelihood normalization, and the bounds checked by brute force."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.eval.latent import iwae_log_likelihood
from genlab.models.latent.autoencoder import Autoencoder
from genlab.models.latent.vae import VAE
from genlab.nn.distributions import make_head
from genlab.nn.spec import DataSpec
from genlab.objectives.latent import ELBO, Reconstruction, gaussian_kl
from genlab.stats import standard_error
from model_tester import check_model

BINARY = DataSpec(1, 8, 8, bits=1, num_classes=10)
GREY = DataSpec(1, 28, 20, bits=8)
COLOUR = DataSpec(3, 8, 8, bits=8)


def _batch(spec: DataSpec, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    if spec.bits == 1:
        x = torch.bernoulli(torch.full((n, spec.channels, spec.height, spec.width), 0.3), generator=g)
    else:
        x = torch.randint(0, 256, (n, spec.channels, spec.height, spec.width), generator=g).float() / 255
    return {"x": x}


@pytest.mark.parametrize("spec,likelihood", [(BINARY, "auto"), (GREY, "logistic"), (GREY, "gaussian"),
                                             (COLOUR, "categorical")])
@pytest.mark.parametrize("upsample", ["nearest-conv", "transposed"])
def test_vae_passes_model_tester(spec, likelihood, upsample, tmp_path):
    torch.manual_seed(0)
    cfg = VAE.Config(latent_dim=3, channels=(8, 16), hidden=32, likelihood=likelihood, upsample=upsample)
    check_model(VAE(cfg, spec), ELBO(ELBO.Config(), spec), _batch(spec), tmp_path)


def test_autoencoder_passes_model_tester(tmp_path):
    torch.manual_seed(0)
    model = Autoencoder(Autoencoder.Config(latent_dim=4, channels=(8,), hidden=16), BINARY)
    check_model(model, Reconstruction(Reconstruction.Config(), BINARY), _batch(BINARY), tmp_path)


@pytest.mark.parametrize("name", ["logistic", "gaussian", "categorical"])
def test_pixel_likelihoods_sum_to_one_over_all_levels(name):
    spec = DataSpec(1, 1, 1, bits=8)
    head = make_head(name, spec)
    torch.manual_seed(0)
    raw = torch.randn(1, head.params_per_subpixel, 1, 1) * 0.7
    levels = torch.arange(256).float().view(256, 1, 1, 1) / 255
    log_p = head.build(raw.expand(256, -1, -1, -1)).log_prob(levels)
    assert torch.logsumexp(log_p.flatten(), 0).exp().item() == pytest.approx(1.0, abs=1e-4)


def test_likelihood_rejects_mismatched_data():
    with pytest.raises(ValueError, match="binary data"):
        make_head("bernoulli", GREY)
    with pytest.raises(ValueError, match="bernoulli"):
        make_head("logistic", BINARY)


def test_gaussian_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.7, -0.3]]), torch.tensor([[-0.5, 0.4]])
    z = mu + torch.exp(0.5 * logvar) * torch.randn(400_000, 2)
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert gaussian_kl(mu, logvar).item() == pytest.approx((log_q - log_p).mean().item(), abs=5e-3)


# A tiny VAE with a 1-D latent on 4x4 binary images: log p(x) = log of an integral over one
# dimension, computed by quadrature. Everything else is checked against it.
TINY = DataSpec(1, 4, 4, bits=1)


def _tiny_vae():
    torch.manual_seed(1)
    model = VAE(VAE.Config(latent_dim=1, channels=(4,), hidden=8), TINY).double()
    with torch.no_grad():  # make the posterior informative but imperfect
        for p in model.decoder.parameters():  # KL(q || posterior) is then about 2 nats
            p.mul_(3.0)
    return model.eval()


def _log_px_quadrature(model, x, n=4001, lim=9.0):
    z = torch.linspace(-lim, lim, n, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        log_px_z = model.distribution(model.decode(z)).log_prob(x.expand(n, -1, -1, -1)).flatten(1).sum(1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z[:, 0]).double()
    return torch.logsumexp(log_px_z + log_pz, 0) + math.log(z[1, 0] - z[0, 0])


def test_tiny_decoder_is_normalized_over_all_binary_images():
    model = _tiny_vae()
    images = torch.tensor([[(i >> b) & 1 for b in range(16)] for i in range(2**16)], dtype=torch.float64)
    images = images.view(-1, 1, 4, 4)
    z = torch.tensor([[0.37]], dtype=torch.float64)
    with torch.no_grad():
        dist = model.distribution(model.decode(z).expand(2**16, -1, -1, -1))
        total = torch.logsumexp(dist.log_prob(images).flatten(1).sum(1), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-9)


def test_elbo_and_iwae_against_brute_force_likelihood():
    model = _tiny_vae()
    x = torch.tensor([[1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1]], dtype=torch.float64).view(1, 1, 4, 4)
    log_px = _log_px_quadrature(model, x).item()
    g = torch.Generator().manual_seed(0)
    # The ELBO is an expectation: average the k=1 importance weight over many draws.
    draws = iwae_log_likelihood(model, x.expand(200_000, -1, -1, -1), 1, 1, g)
    elbo, elbo_stderr = draws.mean().item(), standard_error(draws)
    # ELBO = log p(x) - KL(q(z|x) || p(z|x)); the KL is computed by quadrature too.
    mu, logvar = model.encode(x)
    zs = torch.linspace(-9, 9, 4001, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        log_joint = (model.distribution(model.decode(zs)).log_prob(x.expand(4001, -1, -1, -1)).flatten(1).sum(1)
                     + torch.distributions.Normal(0.0, 1.0).log_prob(zs[:, 0]))
    log_post = log_joint - log_px
    q = torch.distributions.Normal(mu[0, 0], torch.exp(0.5 * logvar[0, 0]))
    log_q = q.log_prob(zs[:, 0])
    kl = (log_q.exp() * (log_q - log_post)).sum().item() * (zs[1, 0] - zs[0, 0]).item()
    assert elbo == pytest.approx(log_px - kl, abs=4 * elbo_stderr)
    assert kl > 0.05, "the test needs an imperfect posterior to be meaningful"
    # IWAE bounds are below log p(x), increase with k, and approach it.
    bounds = {k: iwae_log_likelihood(model, x.expand(400, -1, -1, -1), k, 1000, g).mean().item()
              for k in (1, 10, 100, 1000)}
    assert bounds[1] == pytest.approx(elbo, abs=4 * 7.2 / 400**0.5)
    assert bounds[1] < bounds[10] < bounds[100] <= bounds[1000] + 1e-3
    # A bound in expectation: the average of 400 estimates may exceed it by Monte Carlo noise only.
    assert bounds[1000] <= log_px + 0.01
    assert abs(log_px - bounds[1000]) < 0.02


def test_elbo_objective_terms_are_consistent():
    spec = BINARY
    torch.manual_seed(0)
    model = VAE(VAE.Config(latent_dim=3, channels=(8,), hidden=16), spec)
    obj = ELBO(ELBO.Config(beta=1.0), spec)
    terms = obj(model, _batch(spec), "main", step=0)
    assert torch.allclose(terms["loss"], terms["distortion"] + terms["rate"])
    assert torch.allclose(terms["bpd"], terms["neg_elbo"] / (spec.dims * math.log(2)))
    warm = ELBO(ELBO.Config(beta=0.5, kl_warmup_steps=100), spec)
    assert warm.rate_weight(0) == 0 and warm.rate_weight(50) == 0.25 and warm.rate_weight(500) == 0.5
