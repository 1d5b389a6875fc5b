"""The hierarchical VAE and the IAF posterior: exact checks where the maths allows.

* An IAF chain's log-determinant equals log|det| of its full Jacobian (autograd); one step's Jacobian is
  triangular in its order (the autoregressive structure).
* A one-group hvae is a VAE: the `vae` objective and IWAE evaluator, run on its encoder and decoder,
  give its own objective's and evaluator's numbers with the same noise.
* A tiny two-group model's IWAE bound sits between its ELBO and a brute-force estimate of log p(x).
"""

from __future__ import annotations

import math

import pytest
import torch

from genlab.eval.hierarchical import hvae_iwae_log_likelihood
from genlab.eval.latent import iwae_log_likelihood
from genlab.models.latent.hvae import HVAE
from genlab.models.latent.vae import VAE
from genlab.nn.iaf import IAF, IAFStep
from genlab.nn.spec import DataSpec
from genlab.objectives.hierarchical import HierarchicalELBO, log_px_given_z, log_weight
from genlab.objectives.latent import ELBO
from genlab.rng import make_generators
from genlab.sampling.hierarchical import resample_below, sample_hierarchical

SPEC = DataSpec(channels=1, height=8, width=8, bits=1)


def _shake(module, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return module


def _binary(n, seed=1):
    return (torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def test_iaf_log_determinant_matches_the_full_jacobian():
    torch.manual_seed(0)
    flow = _shake(IAF(dim=5, steps=3, hidden=12, context=4).double(), scale=0.5)
    z0, h = torch.randn(1, 5, dtype=torch.double), torch.randn(1, 4, dtype=torch.double)
    _, logdet = flow(z0, h)
    jac = torch.autograd.functional.jacobian(lambda z: flow(z.unsqueeze(0), h)[0].squeeze(0), z0.squeeze(0))
    torch.testing.assert_close(logdet.squeeze(0), torch.linalg.slogdet(jac).logabsdet)
    assert (jac.triu(1).abs() > 1e-6).any() and (jac.tril(-1).abs() > 1e-6).any()  # the chain mixes both ways


@pytest.mark.parametrize("reverse", [False, True])
def test_iaf_step_is_autoregressive(reverse):
    step = _shake(IAFStep(dim=6, hidden=20, context=3, reverse=reverse).double(), scale=0.5)
    z, h = torch.randn(6, dtype=torch.double), torch.randn(1, 3, dtype=torch.double)
    jac = torch.autograd.functional.jacobian(lambda v: step(v.unsqueeze(0), h)[0].squeeze(0), z)
    jac = jac.flip(0, 1) if reverse else jac  # in the step's own order dimension i reads dimensions < i only
    assert torch.equal(jac.triu(1), torch.zeros_like(jac))
    assert (jac.tril(-1).abs() > 1e-6).any()  # and it does read them


def test_vae_with_iaf_posterior_trains_and_its_bound_is_consistent():
    torch.manual_seed(0)
    vae = _shake(VAE(VAE.Config(latent_dim=3, channels=(8,), hidden=16, iaf_steps=2, iaf_hidden=8,
                                iaf_context=4), SPEC))
    x = _binary(3)
    terms = ELBO(ELBO.Config(), SPEC)(vae, {"x": x}, "main", 0)
    assert torch.isfinite(terms["loss"]).all()
    terms["loss"].mean().backward()
    assert vae.iaf.steps[0].inp.weight.grad.abs().sum() > 0
    with torch.no_grad():  # k = 1 with the same noise: the IWAE log-weight is -neg_elbo (one-sample rate both)
        k1 = iwae_log_likelihood(vae, x, 1, 1, torch.Generator().manual_seed(7))
        torch.manual_seed(7)
        torch.testing.assert_close(k1, -ELBO(ELBO.Config(), SPEC)(vae, {"x": x}, "main", 0)["neg_elbo"])


class _OneGroupAsVAE:
    """A one-group hvae behind the interface `vae`'s objective and IWAE evaluator use."""

    card = VAE.card  # what the IWAE machinery reads (decoder kind: decode(z) -> raw outputs)

    def __init__(self, hvae):
        self.hvae, self.cfg = hvae, type("Cfg", (), {"latent_dim": math.prod(hvae.group_shapes[0]), "conditional": False})()
        self.flow_posterior = False

    def posterior_params(self, x, y=None):
        return torch.cat(self.hvae.encode(x, y), dim=1)

    def reparameterize(self, params, eps):
        mu, logvar = params.chunk(2, dim=1)
        return {"mu": mu, "logvar": logvar, "z": mu + torch.exp(0.5 * logvar) * eps}

    def decode(self, z, y=None):
        return self.hvae.decode(z, y)

    def distribution(self, raw):
        return self.hvae.distribution(raw)

    def __call__(self, x, y=None):
        out = self.reparameterize(self.posterior_params(x, y), torch.randn(x.shape[0], self.cfg.latent_dim))
        return {**out, "raw": self.decode(out["z"])}


def test_one_group_hvae_is_a_vae():
    torch.manual_seed(0)
    model = _shake(HVAE(HVAE.Config(width=8, scales=1, groups=(1,), latent_channels=2), SPEC), scale=0.1)
    as_vae, x = _OneGroupAsVAE(model), _binary(5)
    torch.manual_seed(3)
    mine = HierarchicalELBO(HierarchicalELBO.Config(), SPEC)(model, {"x": x}, "main", 0)
    torch.manual_seed(3)
    theirs = ELBO(ELBO.Config(), SPEC)(as_vae, {"x": x}, "main", 0)
    for key in ("loss", "neg_elbo", "distortion", "rate"):
        torch.testing.assert_close(mine[key], theirs[key], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(mine["rate_g0"], mine["rate"])
    a = hvae_iwae_log_likelihood(model, x, 50, 7, torch.Generator().manual_seed(9))
    b = iwae_log_likelihood(as_vae, x, 50, 7, torch.Generator().manual_seed(9), prior_fraction=0.0)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_tiny_hvae_bound_against_brute_force():
    """log p(x) by brute force: the mean of p(x | z) over 100k ancestral prior samples (two 1x2x2 groups).

    The encoder is first fitted to the two images (the decoder and prior stay fixed, so log p(x) does not
    move): with a good proposal the IWAE bound is tight, and a wrong term in log p(z) - log q(z|x) shows."""
    torch.manual_seed(0)
    spec = DataSpec(channels=1, height=4, width=4, bits=1)
    model = _shake(HVAE(HVAE.Config(width=6, scales=1, groups=(1, 1), latent_channels=1), spec), scale=0.1)
    x = (torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    encoder = [p for name, p in model.named_parameters() if name.startswith(("stem", "up_blocks", "posterior"))]
    opt, objective = torch.optim.Adam(encoder, lr=1e-2), HierarchicalELBO(HierarchicalELBO.Config(), spec)
    for _ in range(300):
        opt.zero_grad()
        objective(model, {"x": x.repeat(8, 1, 1, 1)}, "main", 0)["loss"].mean().backward()
        opt.step()
    with torch.no_grad():
        n, g = 100_000, torch.Generator().manual_seed(1)
        raw = model.top_down(None, [torch.randn((n, *s), generator=g) for s in model.group_shapes])["raw"]
        brute = torch.stack([torch.logsumexp(log_px_given_z(model, raw, xi.expand(n, -1, -1, -1)).double(), 0)
                             - math.log(n) for xi in x]).float()
        iwae = hvae_iwae_log_likelihood(model, x, 2000, 1000, torch.Generator().manual_seed(3))
        elbo = torch.stack([log_weight(model, model(x), x) for _ in range(500)]).mean(0)
    assert (elbo < iwae).all()
    torch.testing.assert_close(iwae, brute, atol=0.03, rtol=0)


def test_group_temperatures_and_fixed_top_groups():
    torch.manual_seed(0)
    model = _shake(HVAE(HVAE.Config(width=8, scales=1, groups=(1, 2), latent_channels=2), SPEC), scale=0.1).eval()
    base = sample_hierarchical(model, 3, make_generators(0, 3), "cpu")
    same = sample_hierarchical(model, 3, make_generators(0, 3), "cpu", group_temperatures=(1.0, 1.0, 1.0))
    cold = sample_hierarchical(model, 3, make_generators(0, 3), "cpu", group_temperatures=(1.0, 1.0, 0.1))
    assert torch.equal(base, same) and not torch.allclose(base, cold)
    with pytest.raises(ValueError, match="3 latent groups"):
        sample_hierarchical(model, 1, make_generators(0, 1), "cpu", group_temperatures=(1.0,) * 4)
    grid = resample_below(model, rows=2, cols=3, keep=3, seed=0, device="cpu")
    assert torch.allclose(grid[0], grid[1]) and not torch.allclose(grid[0], grid[3])  # all fixed: rows repeat
    loose = resample_below(model, rows=2, cols=3, keep=1, seed=0, device="cpu")
    assert not torch.allclose(loose[0], loose[1])  # lower groups redrawn along the row


def test_ood_and_api_likelihood_of_an_hvae_is_its_iwae_bound():
    from genlab.ood.likelihood import LikelihoodOptions, family_likelihood

    torch.manual_seed(0)
    model = _shake(HVAE(HVAE.Config(width=8, scales=1, groups=(1, 1), latent_channels=2), SPEC), scale=0.1)
    x = _binary(3)
    lik = family_likelihood(model, None, LikelihoodOptions(iwae_k=8, iwae_chunk=3))
    torch.testing.assert_close(lik.nll(x, torch.Generator().manual_seed(4)),
                               -hvae_iwae_log_likelihood(model, x, 8, 3, torch.Generator().manual_seed(4)))
