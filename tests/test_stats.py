"""One standard-error formula (sample std with n - 1, over sqrt(n)) and its use by every averaged likelihood."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.data.base import ImageSet
from genlab.eval.batches import image_order
from genlab.eval.latent import evaluate_elbo, evaluate_iwae, iwae_log_likelihood
from genlab.eval.options import EvalOptions
from genlab.models.latent.vae import VAE
from genlab.nn.spec import DataSpec
from genlab.stats import RunningMean, standard_error


def test_standard_error_is_the_sample_std_over_root_n():
    x = [1.0, 2.0, 4.0, 7.0]
    assert standard_error(x) == pytest.approx(np.std(x, ddof=1) / math.sqrt(4), rel=1e-12)
    assert standard_error([3.0]) is None  # one value says nothing about the spread


def test_running_mean_over_batches_equals_all_at_once():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1001, generator=g, dtype=torch.float64) * 3 + 1e4  # a large offset tests the cancellation
    acc = RunningMean()
    for part in torch.split(x, [1, 256, 0, 500, 244]):
        acc.add(part)
    assert acc.n == 1001
    assert acc.mean == pytest.approx(x.mean().item(), rel=1e-14)
    assert acc.stderr == pytest.approx(standard_error(x), rel=1e-9)
    assert RunningMean().stderr is None


def test_every_averaged_likelihood_of_a_vae_has_the_standard_error_over_images():
    spec = DataSpec(1, 8, 8, bits=1)
    torch.manual_seed(0)
    model = VAE(VAE.Config(latent_dim=3, channels=(8,), hidden=16), spec).eval()
    images = torch.bernoulli(torch.full((30, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(1))
    test = ImageSet("toy", "test", images.to(torch.uint8), None, spec, "binary")
    opts = EvalOptions(batch_size=7, iwae_k=4, iwae_decodes=64)
    with torch.no_grad():
        iwae = evaluate_iwae(model, None, test, "cpu", opts)
        elbo = evaluate_elbo(model, None, test, "cpu", opts)
    bits = 1 / (spec.dims * math.log(2))
    for rec in (*iwae.values(), *elbo.values()):
        assert rec["n"] == 30 and rec["stderr"] > 0, rec["protocol"]
    assert iwae["iwae_bpd"]["stderr"] == pytest.approx(iwae["iwae_nll"]["stderr"] * bits, rel=1e-12)
    assert elbo["neg_elbo_bpd"]["stderr"] == pytest.approx(elbo["neg_elbo"]["stderr"] * bits, rel=1e-12)
    # The per-image IWAE values, recomputed batch by batch with the same generator: stderr = s (n - 1) / sqrt(n).
    # The evaluator takes the images in its seeded order (a permutation, also of the whole split).
    g, order = torch.Generator().manual_seed(opts.seed), image_order(30, None, opts.seed)[0]
    with torch.no_grad():
        values = torch.cat([-iwae_log_likelihood(model, test.batch(order[s:s + 7])["x"], 4,
                                                 max(1, 64 // min(7, 30 - s)), g) for s in range(0, 30, 7)])
    assert iwae["iwae_nll"]["value"] == pytest.approx(values.double().mean().item(), rel=1e-6)
    assert iwae["iwae_nll"]["stderr"] == pytest.approx(values.double().std().item() / math.sqrt(30), rel=1e-6)
