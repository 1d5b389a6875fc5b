"""PixelVAE: the decoder is causal in x (checked by gradients), its p(x | z) is normalized, the sampling cache
computes the conditionals of the full pass, and samples sharing a latent share it."""

from __future__ import annotations

import itertools

import pytest
import torch

from genlab.eval.latent import iwae_log_likelihood
from genlab.models.latent.pixelvae import PixelVAE
from genlab.nn.spec import DataSpec
from genlab.objectives.latent import decoder_log_prob
from genlab.sampling.api import draw

TINY = dict(latent_dim=3, channels=(4,), hidden=8, cond_channels=3, pixel_channels=4, pixel_layers=3,
            first_kernel=3, head_channels=6)


def tiny(spec: DataSpec, seed: int = 0, **over) -> PixelVAE:
    torch.manual_seed(seed)
    return PixelVAE(PixelVAE.Config(**{**TINY, **over}), spec).double().eval()


def test_decoder_output_at_a_subpixel_has_zero_gradient_on_that_subpixel_and_every_later_one():
    spec = DataSpec(1, 4, 4, bits=1)
    model = tiny(spec)
    D = spec.dims
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (D, 1, 4, 4), generator=g).double().requires_grad_(True)  # copy o carries output o
    z = torch.randn(1, 3, generator=g, dtype=torch.float64).expand(D, -1).clone().requires_grad_(True)
    raw = model.decode(z, x)  # (D, 1, 4, 4)
    raw.flatten(1)[torch.arange(D), torch.arange(D)].sum().backward()
    grad = x.grad.flatten(1).abs()  # [o, d]: d output_o / d x_d
    assert (grad.triu() == 0).all(), "an output depends on its own or a later pixel"
    assert (grad.tril(-1) > 0).sum() > D  # it does read the past (wiring check, not vacuous)
    assert (z.grad.abs().sum(1) > 0).sum() > D // 2  # and the latent reaches the outputs (ReLUs may be off at a few)


def test_decoder_likelihood_sums_to_one_over_all_images_for_each_latent():
    spec = DataSpec(1, 2, 2, bits=1)
    model = tiny(spec, channels=(4,), pixel_layers=2)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64).view(-1, 1, 2, 2)
    for seed in range(3):
        z = torch.randn(1, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        log_p = decoder_log_prob(model, images, z.expand(len(images), -1))
        torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_sampling_cache_gives_the_conditionals_of_the_full_pass():
    spec = DataSpec(3, 4, 4, bits=8)
    model = tiny(spec, likelihood="categorical", pixel_channels=6)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 3, 4, 4), generator=g).double() / 255
    z = torch.randn(2, 3, generator=g, dtype=torch.float64)
    full = model.decode(z, x)
    cache = model.sampling_cache(z)
    for i, j in itertools.product(range(4), range(4)):
        for c, _ in model.head.steps():
            torch.testing.assert_close(cache.step(x, i, j, c), full[:, model.head.step_raw(c), i, j])


def test_samples_sharing_a_latent_share_their_global_shape_only():
    spec = DataSpec(1, 6, 6, bits=1)
    model = tiny(spec).float()
    with torch.no_grad():
        for p in model.parameters():  # larger weights so that z visibly matters
            p.mul_(3)
    # Near-zero pixel temperature: each conditional's mode, so x is a function of z alone.
    modes = draw(model, 4, seed=0, device="cpu", batch_size=4, pixel_samples_per_latent=2, pixel_temperature=1e-6)
    assert torch.equal(modes[0], modes[1]) and torch.equal(modes[2], modes[3])
    own = draw(model, 4, seed=0, device="cpu", batch_size=4, pixel_temperature=1e-6)
    assert torch.equal(own[0], modes[0]) and torch.equal(own[2], modes[2])  # the group takes its first's z
    assert not torch.equal(own[0], own[1])


def test_iwae_bound_takes_the_autoregressive_decoder_and_tightens_with_k():
    spec = DataSpec(1, 4, 4, bits=1)
    model = tiny(spec).float()
    x = torch.randint(0, 2, (3, 1, 4, 4), generator=torch.Generator().manual_seed(2)).float()
    one = torch.stack([iwae_log_likelihood(model, x, 1, 1, torch.Generator().manual_seed(s)) for s in range(200)])
    many = iwae_log_likelihood(model, x, 200, 50, torch.Generator().manual_seed(0))
    assert (many >= one.mean(0) - 1e-4).all()  # E[log mean of k weights] grows with k (Burda et al. 2016)


def test_run_folders_with_the_retired_iaf_knob_still_load():
    """PixelVAE once carried an always-0 ``iaf_steps`` for the evaluators (they now read
    ``flow_posterior``): a config.json holding it at 0 loads, any other value is refused."""
    from genlab.config import ConfigError, RunConfig

    saved = RunConfig.create("pixelvae").to_dict()
    saved["model"]["iaf_steps"] = 0
    cfg = RunConfig.from_dict(saved)
    assert not hasattr(cfg.model, "iaf_steps")
    saved["model"]["iaf_steps"] = 2
    with pytest.raises(ConfigError, match="unknown key model.iaf_steps"):
        RunConfig.from_dict(saved)
