"""The diffusion family's maths, pinned: forward process, posterior, samplers, guidance, NFE and the bound.

Exact checks use denoisers whose answer is known in closed form: Gaussian data (E[x_0 | x_t] is linear
in x_t) and a point mass (E[x_0 | x_t] = x*), wrapped in the real model class so that every sampler and
the evaluator run their own code on them.
"""

from __future__ import annotations

import math

import pytest
import torch

from genlab.config import RunConfig, apply_overrides
from genlab.eval.diffusion import variational_bound
from genlab.models.diffusion.diffusion import Diffusion
from genlab.nn import diffusion as proc
from genlab.nn.spec import DataSpec
from genlab.objectives.diffusion import drop_labels
from genlab.registry import SAMPLER_OPTIONS, SAMPLERS
from genlab.sampling import diffusion as samplers
from genlab.rng import make_generators
from genlab.train.run import build_model, build_objective
from model_tester import check_model


def _model(spec: DataSpec, seed: int = 0, **overrides):
    cfg = RunConfig.create("diffusion")
    tiny = {**Diffusion.card.tiny, **overrides}
    apply_overrides(cfg, {f"model.{k}": v for k, v in tiny.items()})
    torch.manual_seed(seed)
    return build_model(cfg, spec), build_objective(cfg, spec)


GREY = DataSpec(channels=1, height=8, width=8, bits=8, num_classes=10)


class _Analytic(Diffusion):
    """The exact denoiser E[x_0 | x_0 + sigma eps] of data N(mu, std^2) per dimension (std = 0: a point mass)."""

    mu, std = 0.3, 0.2

    def denoise(self, x, sigma, y=None, time=None):
        s2 = sigma.reshape(-1, *([1] * (x.dim() - 1))) ** 2
        return self.mu + self.std ** 2 / (self.std ** 2 + s2) * (x - self.mu), None


def _analytic(spec, mu, std, **overrides):
    model = _Analytic(_model(spec, **overrides)[0].cfg, spec)
    model.mu, model.std = mu, std
    return model


def test_schedules_and_forward_marginals():
    lin = proc.Schedule.create("linear", 1000)
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    cos = proc.Schedule.create("cosine", 1000)
    t = torch.tensor([0, 250, 900])  # (the last betas are capped at 0.999, as in iDDPM)
    f = lambda u: math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # iDDPM eq. 17
    expected = torch.tensor([f(int(u) + 1) / f(0) for u in t], dtype=torch.float64)
    torch.testing.assert_close(cos.abar[t], expected, rtol=1e-6, atol=1e-9)
    # q(x_t | x_0) has mean sqrt(abar_t) x_0 and variance 1 - abar_t (measured on 200k draws).
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 0.7)
    for step in (10, 500, 990):
        tt = torch.full((x0.shape[0],), step)
        xt = proc.q_sample(lin, x0, tt, torch.randn(x0.shape, generator=g))
        abar = lin.abar[step].item()
        assert xt.mean().item() == pytest.approx(0.7 * math.sqrt(abar), abs=0.01)
        assert xt.var().item() == pytest.approx(1 - abar, rel=0.02, abs=2e-4)


def test_the_schedule_moves_with_the_model_and_stays_out_of_the_checkpoint():
    model, _ = _model(GREY)
    reference = proc.Schedule.create(model.cfg.schedule, model.cfg.timesteps)
    assert "betas" not in model.state_dict()  # constants, not weights
    assert model.schedule is model.schedule  # derived tensors built once per placement
    assert torch.equal(model.schedule.abar, reference.abar) and model.schedule.abar.dtype == torch.float64
    model.to("meta")  # any device: the schedule follows, so a step never copies it from the host
    assert model.schedule.betas.device.type == "meta" and model.schedule.abar.device.type == "meta"
    model.to_empty(device="cpu").half()  # a cast of the whole model leaves the constants in float64
    assert model.schedule.betas.dtype == torch.float64 and torch.equal(model.schedule.betas, reference.betas)


def test_posterior_is_bayes_rule_of_the_two_gaussians():
    """q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0): precisions add, means are precision-weighted."""
    s = proc.Schedule.create("cosine", 50)
    x0, xt = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    t = torch.tensor([1, 7, 20, 35, 49])
    mean, var, _ = proc.q_posterior(s, x0, xt, t)
    a, ab_prev = (1 - s.betas[t])[:, None], s.abar_prev[t][:, None]
    precision = a / s.betas[t][:, None] + 1 / (1 - ab_prev)
    torch.testing.assert_close(var, (1 / precision).expand_as(var))
    torch.testing.assert_close(mean, (a.sqrt() * xt / s.betas[t][:, None] + ab_prev.sqrt() * x0 / (1 - ab_prev)) / precision)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_every_target_gives_back_x0(target):
    s = proc.Schedule.create("linear", 100)
    x0, noise, t = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64), torch.tensor([0, 3, 50, 99])
    xt = proc.q_sample(s, x0, t, noise)
    out = proc.training_target(s, x0, noise, t, target)
    torch.testing.assert_close(proc.x0_from(s, xt, t, out, target), x0)
    torch.testing.assert_close(proc.eps_from(s, xt, t, x0), noise)


def test_respacing_keeps_abar_and_the_endpoints():
    s = proc.Schedule.create("linear", 1000)
    new, kept = proc.respace(s, 10)
    assert kept[0] == 0 and kept[-1] == 999 and len(kept) == 10
    torch.testing.assert_close(new.abar, s.abar[kept])


def test_discretized_decoder_is_a_distribution_over_the_levels():
    for levels in (2, 256):
        values = torch.linspace(-1, 1, levels)[:, None]
        mean, logvar = torch.tensor([[0.13, -0.9, 1.2]]), torch.tensor([[-3.0, -9.0, -1.0]])
        logp = proc.discretized_gaussian_log_likelihood(values, mean, logvar, levels)
        torch.testing.assert_close(logp.exp().sum(0), torch.ones(3), rtol=0, atol=1e-5)


@pytest.mark.parametrize("overrides", [dict(variance="learned", schedule="cosine"), dict(target="v"),
                                       dict(target="x0", conditional=False), dict(parameterization="edm")])
def test_parameterizations_pass_the_model_tester_and_sample(overrides, tmp_path):
    model, objective = _model(GREY, **overrides)
    batch = {"x": torch.randint(0, 256, (4, 1, 8, 8)).float() / 255, "y": torch.arange(4)}
    check_model(model, objective, batch, tmp_path)
    label = 1 if model.cfg.conditional else None
    for name in ("ddpm", "ddim", "heun"):
        out = SAMPLERS.get(name)(model, 2, make_generators(0, 2), "cpu", label=label, steps=3)
        assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()


def test_hybrid_loss_trains_the_variance_only_through_the_bound_term():
    model, objective = _model(GREY, variance="learned", conditional=False)
    captured = {}

    def keep(module, inputs, out):
        out.retain_grad()
        captured["raw"] = out

    model.net.register_forward_hook(keep)
    terms = objective(model, {"x": torch.rand(6, 1, 8, 8).mul(255).round() / 255}, "main", 0)
    terms["vlb_t_bpd"].sum().backward()
    grad = captured["raw"].grad
    assert grad[:, :1].abs().max() == 0  # stop-gradient on the mean channels
    assert grad[:, 1:].abs().max() > 0


def test_labels_are_dropped_to_the_null_token():
    y = torch.arange(1000) % 10
    torch.manual_seed(0)
    dropped = drop_labels(y, 10, 0.2)
    assert ((dropped == 10) | (dropped == y)).all()
    assert 0.15 < (dropped == 10).float().mean() < 0.25
    assert torch.equal(drop_labels(y, 10, 0.0), y) and (drop_labels(y, 10, 1.0) == 10).all()


def _shaken(**overrides):
    model, _ = _model(GREY, **overrides)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def test_ddim_with_eta_one_on_all_steps_is_ancestral_sampling():
    model = _shaken()
    for clip in (True, False):
        ddpm = samplers.sample_ddpm(model, 3, make_generators(5, 3), "cpu", label=2, clip=clip)
        ddim = samplers.sample_ddim(model, 3, make_generators(5, 3), "cpu", label=2, steps=0, eta=1.0, clip=clip)
        torch.testing.assert_close(ddim, ddpm, rtol=0, atol=1e-5)
    deterministic = samplers.sample_ddim(model, 3, make_generators(5, 3), "cpu", label=2, steps=0)
    assert not torch.equal(deterministic, ddpm)


class _Counter:
    def __init__(self, model):
        self.calls = 0
        model.net.register_forward_hook(lambda *_: setattr(self, "calls", self.calls + 1))


@pytest.mark.parametrize("name, opts, expected", [("heun", dict(steps=6), 11), ("euler", dict(steps=6), 6),
                                                  ("ddim", dict(steps=7), 7), ("ddpm", dict(steps=0), 20),
                                                  ("dpmpp-2m", dict(steps=6), 6)])
def test_network_evaluations_are_counted(name, opts, expected):
    model = _shaken()
    counter = _Counter(model)
    SAMPLERS.get(name)(model, 2, make_generators(0, 2), "cpu", label=1, guidance=2.0, **opts)
    assert counter.calls == expected  # guided: both branches in one batched call
    options = SAMPLER_OPTIONS.get(name)(**opts)
    assert samplers.nfe(name, options, model) == expected


def test_guidance_scale_one_and_zero_are_the_conditional_and_unconditional_models():
    model = _shaken()
    for name in ("ddim", "heun"):
        fn = SAMPLERS.get(name)
        cond = fn(model, 3, make_generators(1, 3), "cpu", label=4, steps=4)
        assert torch.equal(fn(model, 3, make_generators(1, 3), "cpu", label=4, steps=4, guidance=1.0), cond)
        uncond = fn(model, 3, make_generators(1, 3), "cpu", label=model.null_label, steps=4)
        assert torch.equal(fn(model, 3, make_generators(1, 3), "cpu", label=4, steps=4, guidance=0.0), uncond)
        assert not torch.equal(cond, uncond)
    # Any other scale: eps_u + s (eps_c - eps_u), from one batched call.
    x, sigma, y = torch.randn(3, 1, 8, 8), torch.full((3,), 2.0), torch.tensor([4, 4, 4])
    counter = _Counter(model)
    with torch.no_grad():
        guided, _ = samplers.denoised(model, x, sigma, y, 3.0)
        c, u = model.denoise(x, sigma, y)[0], model.denoise(x, sigma, torch.full_like(y, 10))[0]
    assert counter.calls == 3
    torch.testing.assert_close(guided, u + 3.0 * (c - u), rtol=0, atol=1e-5)


def test_guidance_refuses_a_model_that_ignores_its_label():
    model = _shaken()
    with torch.no_grad():
        model.net.label_emb.weight.zero_()
    with pytest.raises(ValueError, match="ignores its label"):
        samplers.sample_ddim(model, 2, make_generators(0, 2), "cpu", label=1, steps=2, guidance=2.0)


def test_seeded_sampler_loop_gives_pinned_numbers():
    """Seeded weights and seed 0: the sums of the 8-bit levels of two samples (x0 target: the network's output
    is the image, so the levels are spread, not clipped) and their first pixels."""
    model = _shaken(target="x0")
    gens = lambda: make_generators(0, 2)  # noqa: E731
    ddim = samplers.sample_ddim(model, 2, gens(), "cpu", label=3, steps=5, clip=False) * 255
    heun = samplers.sample_heun(model, 2, gens(), "cpu", label=3, steps=4) * 255
    guided = samplers.sample_ddpm(model, 2, gens(), "cpu", label=3, guidance=2.5) * 255
    assert [round(x.sum().item()) for x in (ddim, heun, guided)] == [14379, 14745, 15118]
    assert ddim.flatten()[:4].round().tolist() == [144, 139, 110, 151]
    assert heun.flatten()[:4].round().tolist() == [111, 147, 132, 148]


# Heun is second order; DDIM, Euler and ancestral sampling are first order, so their tolerance on the
# standard deviation is looser for the same budget (measured: Heun 40 steps 0.2997, DDIM on all 1000
# steps 0.295, ancestral 0.292, Euler 100 steps 0.287, for a true 0.3).
@pytest.mark.parametrize("name, opts, rel", [("heun", dict(steps=40), 0.02), ("dpmpp-2m", dict(steps=40), 0.02), ("ddim", dict(steps=0, clip=False), 0.03),
                                             ("ddpm", dict(clip=False), 0.04), ("euler", dict(steps=100), 0.05)])
def test_exact_gaussian_denoiser_samples_the_data_distribution(name, opts, rel):
    """With the exact score of N(mu, std^2) data, samples have the data's mean and standard deviation."""
    spec = DataSpec(channels=1, height=8, width=8, bits=8)
    model = _analytic(spec, mu=0.1, std=0.3, conditional=False, timesteps=1000, mult=(1,))
    x = SAMPLERS.get(name)(model, 200, make_generators(0, 200), "cpu", **opts)
    x = proc.to_process(x)  # back on [-1, 1]; 12800 values: standard errors 0.0027 (mean), 0.6 % (std)
    assert x.mean().item() == pytest.approx(0.1, abs=0.012)
    assert x.std().item() == pytest.approx(0.3, rel=rel)


@pytest.mark.parametrize("bits", [1, 8])
def test_bound_of_a_point_mass_is_its_closed_form(bits):
    """Data = one image x*; the exact denoiser returns x*. Then every L_t (t >= 1) is 0, L_T is the KL of two
    Gaussians and L_0 is the decoder's mass on x*'s bin: -log(Phi(h / s) - Phi(-h / s)), h half a bin."""
    spec = DataSpec(channels=1, height=2, width=2, bits=bits)
    levels = spec.levels
    k = torch.tensor([0, 1, levels // 2, levels - 1], dtype=torch.float64)[: spec.dims]
    x01 = (k / (levels - 1)).reshape(1, 1, 2, 2).float()
    x_star = proc.to_process(x01)
    model = _analytic(spec, mu=0.0, std=0.0, conditional=False, timesteps=50, mult=(1,), attention_resolutions=(2,))
    model.mu = x_star  # E[x_0 | x_t] = x* whatever x_t
    terms = variational_bound(model, x01, None, torch.Generator().manual_seed(0))
    s = model.schedule
    abar_T = s.abar[-1]
    prior = 0.5 * (abar_T * x_star.double() ** 2 + (1 - abar_T) - 1 - torch.log(1 - abar_T)).sum()
    std = math.exp(0.5 * s.posterior_logvar[0].item())
    normal = torch.distributions.Normal(0.0, 1.0)
    h = torch.tensor(1.0 / (levels - 1), dtype=torch.float64)
    inner = torch.log(normal.cdf(h / std) - normal.cdf(-h / std))
    edge = torch.log(normal.cdf(h / std))
    decoder = -sum(edge if int(v) in (0, levels - 1) else inner for v in k)
    assert terms["prior"].item() == pytest.approx(prior.item(), rel=1e-4)
    assert terms["diffusion"].abs().item() < 1e-3
    assert terms["decoder"].item() == pytest.approx(decoder.item(), rel=1e-4, abs=1e-5)
    assert terms["total"].item() == pytest.approx((prior + decoder).item(), rel=1e-4, abs=1e-4)


def test_sample_sets_state_their_sampler_and_nfe():
    from genlab.sampling.api import describe_sampling, sampler_options

    model = _shaken()
    text = describe_sampling(model, "heun", sampler_options(model, "heun", ["steps=6"]))
    assert text.startswith("sampler heun (steps=6,") and text.endswith("NFE 11")
    assert describe_sampling(model).endswith("NFE 20")  # ddim's 50 steps on the tiny model's 20 timesteps


def test_ddim_encoding_is_inverted_by_ddim_decoding():
    """With the exact Gaussian denoiser the DDIM ODE is smooth: encode then decode gives the image back up to
    the first-order inversion error (measured 0.020 at T = 200, 0.010 at T = 400), and the code of data has
    the unit variance of the noise it came from."""
    spec = DataSpec(channels=1, height=4, width=4, bits=8)
    model = _analytic(spec, mu=0.1, std=0.3, conditional=False, timesteps=400, mult=(1,))
    x = (0.55 + 0.15 * torch.randn(32, 1, 4, 4)).clamp(0, 1)  # N(0.1, 0.3^2) on [-1, 1]
    codes = samplers.ddim_encode(model, x, steps=0)
    assert codes.std().item() == pytest.approx(1.0, rel=0.1)
    torch.testing.assert_close(samplers.ddim_decode(model, codes, steps=0), x, rtol=0, atol=0.02)
    path = samplers.interpolate(model, x[0], x[1], frames=5, steps=0)
    assert path.shape == (5, 1, 4, 4)
    torch.testing.assert_close(path[[0, -1]], x[:2], rtol=0, atol=0.02)


def test_completion_keeps_the_given_rows_and_fills_the_rest_consistently():
    """Replacement: the given rows are kept exactly, and the rows below come from the model (here the exact
    denoiser of a point mass, whose only image they must become), not from what the handed image held there."""
    spec = DataSpec(channels=1, height=4, width=4, bits=8)
    model = _analytic(spec, mu=0.0, std=0.0, conditional=False, timesteps=100, mult=(1,))
    target = torch.rand(1, 1, 4, 4).mul(255).round() / 255
    model.mu = proc.to_process(target)
    given = target.expand(3, -1, -1, -1).clone()
    given[:, :, 2:] = 0.5  # what is below the given rows must not matter
    for name in ("ddim", "ddpm"):
        out = SAMPLERS.get(name)(model, 3, make_generators(0, 3), "cpu", steps=10, prefix=given, prefix_rows=2)
        assert torch.equal(out[:, :, :2], given[:, :, :2])
        torch.testing.assert_close(out, target.expand(3, -1, -1, -1), rtol=0, atol=1 / 255)


def test_bound_evaluator_labels_its_numbers_and_caps_the_quick_protocol():
    from genlab.data.base import ImageSet
    from genlab.eval.options import EvalOptions
    from genlab.registry import EVALUATORS

    model, objective = _model(GREY)
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    test = ImageSet("toy", "test", images, torch.arange(40) % 10, GREY, "scale")
    out = EVALUATORS.get("diffusion-bound")(model, objective, test, "cpu", EvalOptions(batch_size=16))
    assert out["bound_bpd"]["kind"] == "bound" and out["bound_nll"]["of"] == "p(x | y)"
    assert out["bound_nll"]["n"] == 32 and "caps this estimator at 32" in out["bound_nll"]["protocol"]
    parts = sum(out[k]["value"] for k in ("bound_prior", "bound_diffusion", "bound_decoder"))
    assert out["bound_nll"]["value"] == pytest.approx(parts, rel=1e-6)
    assert out["bound_bpd"]["value"] == pytest.approx(out["bound_nll"]["value"] / (64 * math.log(2)))


# ----------------------------------------------------------------------------------------------
# Continuous-time likelihoods (probability-flow ODE, VDM) and the quick protocol's sampler steps


def _gaussian_model():
    """Exact denoiser of N(0.1, 0.3^2) per dimension, 4 dimensions, the linear T = 1000 schedule."""
    spec = DataSpec(channels=1, height=2, width=2, bits=8)
    return _analytic(spec, mu=0.1, std=0.3, conditional=False, timesteps=1000, mult=(1,), attention_resolutions=(1,))


def _discrete_gaussian_nll(model, x01: torch.Tensor, var: float) -> torch.Tensor:
    """-log P(x) of N(mu, var) per dimension integrated over each 8-bit bin (B,)."""
    x, half, sd = proc.to_process(x01).double(), 1 / 255, math.sqrt(var)
    cdf = torch.special.ndtr
    return -(cdf((x + half - model.mu) / sd) - cdf((x - half - model.mu) / sd)).log().flatten(1).sum(1)


def test_ode_log_density_of_gaussian_data_is_the_gaussian_log_density():
    """With the exact score, p_0 of the ODE is N(mu, s^2 + sigma_0^2): the integral from the data to the
    noise must give that log-density at every point (a wrong direction or sign is off by tens of nats)."""
    from genlab.eval.diffusion_continuous import noise_range, ode_log_likelihood

    model = _gaussian_model()
    var = model.std ** 2 + noise_range(model)[0] ** 2
    x = model.mu + model.std * torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    true = (-0.5 * ((x - model.mu) ** 2).flatten(1).sum(1) / var - 2 * math.log(2 * math.pi * var)).double()
    probe = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(1)).float() * 2 - 1
    for solver, div in ((dict(solver="rk4", steps=25), None), (dict(solver="rk45"), None),
                        (dict(solver="rk4", steps=25), probe)):  # (Hutchinson is exact for this diagonal Jacobian)
        out = ode_log_likelihood(model, x, None, div, **solver)
        torch.testing.assert_close(out["logp"], true, rtol=0, atol=0.02)
    assert ode_log_likelihood(model, x, None, None, solver="rk4", steps=3)["nfe"] == 12


def test_continuous_bounds_on_discretized_gaussian_data():
    """What holds exactly, checked: (1) the dequantized ODE figure bounds -log P of the discretized
    N(mu, s^2 + sigma_0^2) that the exact-score ODE model is (Jensen; the gap is ~1e-4 nats here, so it
    equals it within the solver's error); (2) the VDM diffusion term's Monte-Carlo mean matches its closed
    form; (3) the continuous-time bound is below the discrete one (Kingma et al. 2021: more steps never
    raise the bound; same prior and decoder terms). Not asserted: discrete bound >= ODE figure per image
    (different models, no theorem; here it holds on average: 22.7 vs 20.3 nats)."""
    from genlab.eval.diffusion_continuous import noise_range, ode_nll, vdm_bound

    model = _gaussian_model()
    g = torch.Generator().manual_seed(0)
    x01 = torch.round(((model.mu + model.std * torch.randn(200, 1, 2, 2, generator=g)).clamp(-1, 1) + 1) / 2 * 255) / 255
    s0, s1 = noise_range(model)
    exact = _discrete_gaussian_nll(model, x01, model.std ** 2 + s0 ** 2)
    ode = ode_nll(model, x01, None, g, exact=True, solver="rk4", steps=25)["total"]
    assert ode.mean().item() == pytest.approx(exact.mean().item(), abs=0.02)
    vdm = vdm_bound(model, x01, None, g)
    # Closed form of 1/2 int [s^4 + e^l d^2] / (s^2 + e^l)^2 dl over l = log sigma^2 in [l0, l1], per dimension.
    s2, d2 = model.std ** 2, (proc.to_process(x01).double() - model.mu) ** 2
    F = lambda w: math.log(w) - math.log(s2 + w) + s2 / (s2 + w) - d2 / (s2 + w)
    closed = (0.5 * (F(s1 ** 2) - F(s0 ** 2))).flatten(1).sum(1)
    err = (vdm["diffusion"] - closed).std().item() / math.sqrt(200)
    assert abs((vdm["diffusion"] - closed).mean().item()) < 4 * err + 1e-3
    discrete = variational_bound(model, x01, None, g)["total"]
    assert vdm["total"].mean().item() < discrete.mean().item()
    assert vdm["total"].mean().item() > exact.mean().item()  # a bound on this model, above the exact figure


def test_vdm_bound_per_pixel_adds_up_and_matches_the_closed_form_per_pixel():
    """The surprise map of a diffusion run is the VDM bound before its sum over pixels: with the same
    noise it adds up to the per-image bound, its diffusion term matches the Gaussian closed form pixel
    by pixel, and one outlying pixel is where the map is largest."""
    from genlab.eval.diffusion_continuous import noise_range, vdm_bound
    from genlab.ood.likelihood import PIXEL_MAP_SEED, PIXEL_MAP_TIMES, family_likelihood

    model = _gaussian_model()
    g = torch.Generator().manual_seed(0)
    x01 = torch.round(((model.mu + model.std * torch.randn(300, 1, 2, 2, generator=g)).clamp(-1, 1) + 1) / 2 * 255) / 255
    per_dim = vdm_bound(model, x01, None, torch.Generator().manual_seed(3), per_dim=True)
    summed = vdm_bound(model, x01, None, torch.Generator().manual_seed(3))
    assert per_dim["total"].shape == x01.shape
    for name in ("prior", "diffusion", "decoder", "total"):
        torch.testing.assert_close(per_dim[name].flatten(1).sum(1), summed[name])
    s0, s1 = noise_range(model)
    s2, d2 = model.std ** 2, (proc.to_process(x01).double() - model.mu) ** 2
    F = lambda w: math.log(w) - math.log(s2 + w) + s2 / (s2 + w) - d2 / (s2 + w)
    closed = 0.5 * (F(s1 ** 2) - F(s0 ** 2))  # per pixel, (300, 1, 2, 2)
    diff = (per_dim["diffusion"] - closed).flatten(1)  # per pixel position, over 300 images
    assert (diff.mean(0).abs() < 4 * diff.std(0) / math.sqrt(300) + 1e-3).all()

    lik = family_likelihood(model, None)
    odd = x01[:2].clone()
    odd[0, 0, 1, 0] = 1.0  # 3 standard deviations above the data's mean
    m = lik.pixel_nll(odd)
    assert m.shape == (2, 2, 2) and "VDM" in lik.pixel_map_name
    # Against the unchanged image: the exact denoiser treats pixels independently, so only the moved
    # pixel's share changes, by about its Gaussian log-density difference (4.5 nats from the mean).
    change = m - lik.pixel_nll(x01[:2])
    assert change[0, 1, 0] > 3.0
    change[0, 1, 0] = 0
    assert change.abs().max() < 1e-4
    again = vdm_bound(model, odd, None, torch.Generator().manual_seed(PIXEL_MAP_SEED), PIXEL_MAP_TIMES)["total"]
    torch.testing.assert_close(m.flatten(1).sum(1).double(), again, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(lik.pixel_nll(odd), m)  # the same image gives the same map


def test_continuous_evaluators_label_their_numbers_and_cap_the_quick_protocol():
    from genlab.data.base import ImageSet
    from genlab.eval.options import EvalOptions
    from genlab.registry import EVALUATORS

    model, objective = _model(GREY)
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    test = ImageSet("toy", "test", images, torch.arange(40) % 10, GREY, "scale")
    ode = EVALUATORS.get("diffusion-ode")(model, objective, test, "cpu", EvalOptions(batch_size=16))
    assert ode["ode_bpd"]["kind"] == "estimate" and ode["ode_nll"]["n"] == 16 and ode["ode_nll"]["stderr"] > 0
    assert "RK4, 25 steps" in ode["ode_nll"]["protocol"] and "dequantization" in ode["ode_nll"]["protocol"]
    vdm = EVALUATORS.get("diffusion-vdm")(model, objective, test, "cpu", EvalOptions(batch_size=16))
    assert vdm["vdm_nll"]["kind"] == "bound" and vdm["vdm_nll"]["n"] == 32 and vdm["vdm_nll"]["of"] == "p(x | y)"
    assert vdm["vdm_bpd"]["value"] == pytest.approx(vdm["vdm_nll"]["value"] / (64 * math.log(2)))
    assert {"diffusion-ode", "diffusion-vdm"} <= set(Diffusion.card.evaluators)


def test_quick_protocol_plans_fewer_sampler_steps_for_iterative_samplers_and_says_so():
    """The quick protocol draws diffusion samples with 10 DDIM steps (NFE 10), not the card's 50, and
    the plan, the protocol record and the samples' note say so; the paper protocol keeps the card's."""
    from genlab.eval.options import EvalOptions
    from genlab.eval.run import describe_plan
    from genlab.eval.sample_metrics import model_samples, sampling_settings

    model, _ = _model(GREY, timesteps=100, conditional=False)
    quick, paper = EvalOptions.for_protocol("quick", batch_size=4), EvalOptions.for_protocol("paper", batch_size=4)
    assert sampling_settings(model, quick)[0] == {"steps": 10} and sampling_settings(model, paper)[0] == {}
    plan = describe_plan(["sample-quality"], quick, 100, "toy/test", model)
    assert "steps=10" in plan[1] and "NFE 10" in plan[1]
    assert "NFE 50" in describe_plan(["sample-quality"], paper, 100, "toy/test", model)[1]
    capped = describe_plan(["diffusion-bound", "diffusion-ode"], quick, 100, "toy/test", model)
    assert capped[1].endswith("32 of 100 toy/test images (random, seed 0; the quick protocol's cap)")
    assert "16 of 100" in capped[2]
    assert quick.protocol_record()["sampler_steps"] == 10 and paper.protocol_record()["sampler_steps"] is None
    images, _, note = model_samples(model, "cpu", EvalOptions.for_protocol("quick", batch_size=4, n_samples=2))
    assert images.shape == (2, 1, 8, 8) and "NFE 10" in note and "set by the 'quick' protocol" in note
