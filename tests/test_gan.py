"""The adversarial family: networks, phase routing, loss formulas, penalties, sampler, probes.

Everything here runs tiny networks on random tensors; the toy-theory checks are in
tests/test_gan_toy.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
import torch
from torch import nn

from genlab.eval.adversarial import (class_agreement, encode_all, evaluate_bigan_probe, linear_probe_accuracy,
                                    reconstruct_all, reconstruction_errors)
from genlab.models.adversarial.bigan import BiGAN
from genlab.models.adversarial.cgan import CGAN
from genlab.models.adversarial.dcgan import DCGAN
from genlab.nn.adversarial import latent_noise, stages_for
from genlab.nn.spec import DataSpec, Phase
from genlab.objectives.adversarial import (GAN, discriminator_loss, encoder_loss, generator_loss, interpolate,
                                           interpolation_weights)
from genlab.registry import EVALUATORS, MODELS, OBJECTIVES, SAMPLERS
from genlab.reports.figures import save_nearest_neighbour_figure
from genlab.reports.images import save_gif, save_strip
from genlab.sampling.adversarial import interpolations, latent_path, nearest_neighbours, sample_gan
from genlab.rng import make_generators
from genlab.toy.nets import Critic, ToyGAN
from genlab.train.step import PhaseOptimizers, train_step
from model_tester import check_model

GREY = DataSpec(1, 28, 28, 8, 10)
COLOUR = DataSpec(3, 32, 32, 8, 10)
DIGITS = DataSpec(1, 8, 8, 4, 10)
FREY = DataSpec(1, 28, 20, 8, 0)
SPECS = {"grey28": GREY, "colour32": COLOUR, "digits8": DIGITS, "frey28x20": FREY}
MODEL_CLASSES = {"dcgan": DCGAN, "cgan": CGAN, "bigan": BiGAN}


def tiny(name: str, data: DataSpec, seed: int = 0, **overrides):
    cls = MODEL_CLASSES[name]
    cfg = replace(cls.Config(), latent_dim=6, width=4, **overrides)
    if name == "bigan":
        cfg = replace(cfg, d_hidden=16)
    torch.manual_seed(seed)
    return cls(cfg, data)


def batch_for(data: DataSpec, n: int = 4, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {"x": torch.rand(n, data.channels, data.height, data.width, generator=g)}
    if data.num_classes:
        out["y"] = torch.randint(0, data.num_classes, (n,), generator=g)
    return out


def cases():
    for name in MODEL_CLASSES:
        for key, spec in SPECS.items():
            if name == "cgan" and not spec.num_classes:
                continue
            yield pytest.param(name, spec, id=f"{name}-{key}")


# ----------------------------------------------------------------------------------------------
# Registration and configuration


def test_registered():
    for name in MODEL_CLASSES:
        cls = MODELS.get(name)
        assert cls.card.family == "adversarial" and cls.card.default_objective == "gan" and cls.card.sampler_names == ("gan",)
    assert OBJECTIVES.get("gan") is GAN
    assert SAMPLERS.get("gan") is sample_gan
    assert EVALUATORS.get("bigan-probe") is evaluate_bigan_probe
    assert "bigan-probe" in BiGAN.card.evaluators


@pytest.mark.parametrize("spec, expected", [(GREY, (2, 7, 7)), (COLOUR, (3, 4, 4)), (DIGITS, (1, 4, 4)),
                                            (FREY, (2, 7, 5)), (DataSpec(3, 64, 64, 8), (4, 4, 4))])
def test_stages_follow_the_image_size(spec, expected):
    assert stages_for(spec) == expected


def test_bad_configs_say_what_to_do():
    with pytest.raises(ValueError, match="cannot be halved"):
        DCGAN(DCGAN.Config(), DataSpec(1, 7, 7, 8))
    with pytest.raises(ValueError, match="labelled dataset"):
        CGAN(CGAN.Config(), FREY)
    with pytest.raises(ValueError, match="n_critic"):
        DCGAN(replace(DCGAN.Config(), n_critic=0), GREY)
    with pytest.raises(ValueError, match="prior=normal"):
        BiGAN(replace(BiGAN.Config(), encoder="gaussian", prior="uniform"), GREY)
    with pytest.raises(ValueError, match="penalty_weight"):
        GAN(GAN.Config(penalty_weight=-1.0))


def test_n_critic_sets_the_generator_phase_period():
    phases = tiny("dcgan", DIGITS, n_critic=5).phases()
    assert [(p.name, p.modules, p.every) for p in phases] == [("D", ("discriminator",), 1), ("G", ("generator",), 5)]
    assert tiny("bigan", DIGITS).phases()[1].modules == ("generator", "encoder")


# ----------------------------------------------------------------------------------------------
# Networks: shapes, ranges, determinism, per-sample independence, save/load


@pytest.mark.parametrize("name, spec", list(cases()))
def test_shapes_and_ranges(name, spec):
    model = tiny(name, spec)
    batch = batch_for(spec, 5)
    z = model.sample_latent(5)
    y = batch.get("y") if name == "cgan" else None
    x = model.generate(z, y)
    assert x.shape == (5, spec.channels, spec.height, spec.width)
    assert x.min() >= 0 and x.max() <= 1
    for inputs in (model.real_inputs(batch), model.fake_inputs(batch, z)):
        assert model.critic(inputs, batch).shape == (5,)
    if name == "bigan":
        assert model.encode(batch["x"]).shape == (5, 6)


@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_same_seed_same_network_and_eval_outputs_are_per_sample(name):
    a, b = tiny(name, GREY, seed=3), tiny(name, GREY, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    a.eval()
    z = a.sample_latent(6)
    y = torch.arange(6) % 10 if name == "cgan" else None
    full = a.generate(z, y)
    part = a.generate(z[2:4], None if y is None else y[2:4])
    assert torch.allclose(full[2:4], part, atol=1e-6)  # no batch statistics in eval mode
    batch = {"x": full.detach(), "y": torch.arange(6) % 10}
    d_full = a.critic(a.real_inputs(batch), batch)
    half = {k: v[:3] for k, v in batch.items()}
    assert torch.allclose(d_full[:3], a.critic(a.real_inputs(half), half), atol=1e-5)


@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_safetensors_round_trip(name, tmp_path):
    from safetensors.torch import load_file, save_file

    model = tiny(name, DIGITS, d_norm="spectral")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    other = tiny(name, DIGITS, seed=9, d_norm="spectral")
    other.load_state_dict(load_file(tmp_path / "w.safetensors"))
    model.eval(), other.eval()
    batch = batch_for(DIGITS)
    z = model.sample_latent(4)
    ours = model.critic(model.fake_inputs(batch, z), batch)
    assert torch.equal(ours, other.critic(other.fake_inputs(batch, z), batch))


def test_upsampling_choices_and_labels_change_the_output():
    for up in ("transposed", "nearest-conv"):
        assert tiny("dcgan", COLOUR, upsample=up).generate(torch.randn(2, 6)).shape == (2, 3, 32, 32)
    model = tiny("cgan", GREY).eval()
    z = torch.randn(1, 6).expand(2, 6)
    with torch.no_grad():  # conditional batch norm gains start at N(1, 0.02): classes already differ
        x = model.generate(z, torch.tensor([0, 7]))
    assert not torch.allclose(x[0], x[1])
    with pytest.raises(ValueError, match="unconditional"):
        tiny("dcgan", GREY).generate(z, torch.tensor([0, 7]))


def test_uniform_prior_and_bounded_encoder():
    z = latent_noise("uniform", 1000, 3)
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.9 and z.max() > 0.9
    x = torch.rand(3, 1, 28, 28) * 50
    bounded = tiny("bigan", GREY, prior="uniform")
    assert bounded.encode(x).abs().max() <= 1  # tanh code in the prior's support
    default = tiny("bigan", GREY)  # normal prior: the code is the encoder's linear output, no squashing
    assert default.cfg.prior == "normal"
    with torch.no_grad():
        assert torch.equal(default.encode(x), default.encoder(x))


@pytest.mark.parametrize("name, loss, penalty", [("dcgan", "nonsaturating", "none"), ("cgan", "hinge", "none"),
                                                  ("bigan", "minimax", "none"), ("dcgan", "wasserstein", "wgan-gp"),
                                                  ("bigan", "lsgan", "r1")])
def test_shared_model_tester(name, loss, penalty, tmp_path):
    model = tiny(name, GREY, d_norm="layer" if penalty != "none" else "batch")
    check_model(model, GAN(GAN.Config(loss=loss, penalty=penalty)), batch_for(GREY), tmp_path)


# ----------------------------------------------------------------------------------------------
# Phase routing: a D step changes only D, a G step only G (and E), as the trainer runs them


def run_phase(model, objective, batch, phase, opts):
    """One phase of the trainer's step (genlab.train.step.train_step) at step 0."""
    result = train_step(model, objective, [batch], 0, opts.select(phase.name))[phase.name]
    assert not result.skipped
    return result.terms


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(module, before):
    return {k for k, v in module.named_parameters() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("name, loss, penalty", [("dcgan", "nonsaturating", "none"), ("cgan", "hinge", "none"),
                                                  ("bigan", "minimax", "none"), ("dcgan", "wasserstein", "wgan-gp"),
                                                  ("bigan", "lsgan", "r1")])
def test_each_phase_updates_only_its_players(name, loss, penalty):
    model = tiny(name, GREY, d_norm="layer" if penalty != "none" else "batch")
    objective = GAN(GAN.Config(loss=loss, penalty=penalty))
    phases = {p.name: p for p in model.phases()}
    opts = PhaseOptimizers(model, model.phases(), lambda params: torch.optim.Adam(params, lr=1e-2))
    batch = batch_for(GREY)
    players = {"D": {"discriminator"}, "G": set(phases["G"].modules)}
    all_parts = {"discriminator", "generator"} | ({"encoder"} if name == "bigan" else set())

    for phase_name in ("D", "G"):
        before = {part: snapshot(model.get_submodule(part)) for part in all_parts}
        run_phase(model, objective, batch, phases[phase_name], opts)
        for part in all_parts:
            moved = changed(model.get_submodule(part), before[part])
            if part in players[phase_name]:
                assert moved, f"{phase_name} step left {part} unchanged"
            else:
                assert not moved, f"{phase_name} step changed {part}: {sorted(moved)[:3]}"
        grads = {part: [p.grad for p in model.get_submodule(part).parameters()] for part in all_parts}
        if phase_name == "D":  # the fakes (and E(x)) carry no graph: G and E get no gradient at all
            assert all(g is None for part in all_parts - {"discriminator"} for g in grads[part])
        else:  # D's parameters do receive gradients in phase G; only its optimizer is not stepped
            assert any(g is not None and g.abs().sum() > 0 for g in grads["discriminator"])


# ----------------------------------------------------------------------------------------------
# Loss formulas on hand-computed values

R = torch.tensor([0.0, 2.0, -1.0, 0.5])
F_ = torch.tensor([0.0, -1.0, 3.0, -0.5])
LN2 = math.log(2.0)


def test_discriminator_losses_match_their_formulas():
    # -log s(r) - log(1 - s(f)) = log(1 + e^-r) + log(1 + e^f)
    expected = torch.tensor([2 * LN2, math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)),
                             math.log1p(math.e) + math.log1p(math.exp(3)), 2 * math.log1p(math.exp(-0.5))])
    for loss in ("minimax", "nonsaturating"):
        assert torch.allclose(discriminator_loss(loss, R, F_), expected, atol=1e-6)
    assert torch.allclose(discriminator_loss("lsgan", R, F_), torch.tensor([0.5, 1.0, 6.5, 0.25]))
    assert torch.allclose(discriminator_loss("hinge", R, F_), torch.tensor([2.0, 0.0, 6.0, 1.0]))
    assert torch.allclose(discriminator_loss("wasserstein", R, F_), torch.tensor([0.0, -3.0, 4.0, -1.0]))


def test_generator_and_encoder_losses_match_their_formulas():
    # minimax: log(1 - s(f)) = -log(1 + e^f); non-saturating: -log s(f) = log(1 + e^-f)
    assert torch.allclose(generator_loss("minimax", F_),
                          torch.tensor([-LN2, -math.log1p(math.exp(-1)), -math.log1p(math.exp(3)),
                                        -math.log1p(math.exp(-0.5))]), atol=1e-6)
    assert torch.allclose(generator_loss("nonsaturating", F_),
                          torch.tensor([LN2, math.log1p(math.e), math.log1p(math.exp(-3)), math.log1p(math.exp(0.5))]),
                          atol=1e-6)
    assert torch.allclose(generator_loss("lsgan", F_), torch.tensor([0.5, 2.0, 2.0, 1.125]))
    for loss in ("hinge", "wasserstein"):
        assert torch.equal(generator_loss(loss, F_), -F_)
        assert torch.equal(encoder_loss(loss, R), R)
    # encoder: minimax log s(r) = -log(1 + e^-r); non-saturating -log(1 - s(r)) = log(1 + e^r)
    assert torch.allclose(encoder_loss("minimax", R), -torch.log1p(torch.exp(-R)), atol=1e-6)
    assert torch.allclose(encoder_loss("nonsaturating", R), torch.log1p(torch.exp(R)), atol=1e-6)
    assert torch.allclose(encoder_loss("lsgan", R), torch.tensor([0.0, 2.0, 0.5, 0.125]))


def test_logistic_losses_are_stable_at_extreme_logits():
    big = torch.tensor([-200.0, 200.0])
    d = discriminator_loss("minimax", big, -big)  # r=-200, f=200: both terms ~ 200
    assert torch.allclose(d, torch.tensor([400.0, 0.0]))
    assert torch.allclose(generator_loss("nonsaturating", big), torch.tensor([200.0, 0.0]))
    assert torch.allclose(generator_loss("minimax", big), torch.tensor([0.0, -200.0]))


def test_minimax_generator_gradient_saturates_and_nonsaturating_does_not():
    # d/df log(1 - s(f)) = -s(f);  d/df -log s(f) = -s(-f)
    f = torch.tensor([-10.0, -2.0, 0.0, 3.0], requires_grad=True)
    (g_mm,) = torch.autograd.grad(generator_loss("minimax", f).sum(), f)
    (g_ns,) = torch.autograd.grad(generator_loss("nonsaturating", f).sum(), f)
    assert torch.allclose(g_mm, -torch.sigmoid(f.detach()), atol=1e-7)
    assert torch.allclose(g_ns, -torch.sigmoid(-f.detach()), atol=1e-7)
    assert g_mm[0].abs() < 1e-4 and g_ns[0].abs() > 0.9999  # D rejects the fake: only one still learns


class StubModel(nn.Module):
    """A protocol-complete model whose critic is a given function of the flat input."""

    def __init__(self, score, dim: int = 3):
        super().__init__()
        self.discriminator = nn.Linear(dim, 1, bias=False)  # holds D's parameter w
        self.generator = nn.Linear(dim, dim)
        self.score, self.dim, self.seen = score, dim, []

    def phases(self):
        return [Phase("D", ("discriminator",)), Phase("G", ("generator",))]

    def sample_latent(self, n, device=None, generators=None):
        return torch.randn(n, self.dim, device=device)

    def real_inputs(self, batch):
        return (batch["x"],)

    def fake_inputs(self, batch, z):
        return (batch["fake"] + 0 * self.generator(z),)

    def critic(self, inputs, batch):
        self.seen.append(inputs[0].detach().clone())
        return self.score(self, inputs[0])


def test_objective_terms_use_the_formulas():
    model = StubModel(lambda m, x: x[:, 0])
    batch = {"x": R[:, None].expand(4, 3).clone(), "fake": F_[:, None].expand(4, 3).clone()}
    for loss in ("minimax", "lsgan", "hinge"):
        terms = GAN(GAN.Config(loss=loss))(model, batch, "D", 0)
        assert torch.allclose(terms["loss"], discriminator_loss(loss, R, F_))
        assert torch.equal(terms["d_real"], R) and torch.equal(terms["d_fake"], F_)
        g_terms = GAN(GAN.Config(loss=loss))(model, batch, "G", 0)
        assert torch.allclose(g_terms["loss"], generator_loss(loss, F_)) and "d_real" not in g_terms
    terms = GAN(GAN.Config(loss="minimax"))(model, batch, "D", 0)
    assert torch.allclose(terms["p_real"], torch.sigmoid(R)) and torch.allclose(terms["value"], -terms["loss"])
    with pytest.raises(ValueError, match="phases 'D' and 'G'"):
        GAN()(model, batch, "main", 0)


# ----------------------------------------------------------------------------------------------
# Gradient penalties


def linear_score(m, x):
    return m.discriminator(x.flatten(1)).squeeze(1)


def test_r1_and_wgan_gp_of_a_linear_critic():
    # D(x) = <w, x>: grad_x D = w everywhere, so R1 = gamma/2 |w|^2 and WGAN-GP = lambda (|w| - 1)^2.
    model = StubModel(linear_score)
    with torch.no_grad():
        model.discriminator.weight.copy_(torch.tensor([[2.0, -1.0, 2.0]]))  # |w| = 3
    x = torch.randn(5, 3)
    batch = {"x": x, "fake": x.clone()}  # equal real and fake: the Wasserstein term is 0
    r1 = GAN(GAN.Config(loss="wasserstein", penalty="r1", penalty_weight=4.0))(model, batch, "D", 0)
    assert torch.allclose(r1["penalty"], torch.full((5,), 0.5 * 4.0 * 9.0))
    assert torch.allclose(r1["input_grad_norm"], torch.full((5,), 3.0))
    # The penalty is differentiable in D's parameters: d/dw (gamma/2 |w|^2) = gamma w.
    model.zero_grad()
    r1["loss"].mean().backward()
    assert torch.allclose(model.discriminator.weight.grad, 4.0 * model.discriminator.weight.detach())
    gp = GAN(GAN.Config(loss="wasserstein", penalty="wgan-gp", penalty_weight=10.0))(model, batch, "D", 0)
    assert torch.allclose(gp["penalty"], torch.full((5,), 10.0 * (3.0 - 1.0) ** 2))


def test_wgan_gp_interpolates_whole_examples_with_one_weight_each():
    # D(x) = |x|^2 / 2: grad = x, so the penalty is lambda (|x_hat| - 1)^2 at the points the critic saw.
    model = StubModel(lambda m, x: 0.5 * x.flatten(1).pow(2).sum(1), dim=12)
    real, fake = torch.randn(6, 12), torch.randn(6, 12)
    torch.manual_seed(0)
    terms = GAN(GAN.Config(loss="hinge", penalty="wgan-gp", penalty_weight=1.0))(
        model, {"x": real, "fake": fake}, "D", 0)
    x_hat = model.seen[-1]  # the penalty's critic call comes last
    ratio = (x_hat - fake) / (real - fake)  # the weight e of each element
    per_example = ratio[:, :1]
    assert torch.allclose(ratio, per_example.expand_as(ratio), atol=1e-4), "weights differ within an example"
    assert per_example.std() > 0.05, "every example got the same weight"
    assert ((per_example >= 0) & (per_example <= 1)).all()
    assert torch.allclose(terms["input_grad_norm"], x_hat.norm(dim=1), atol=1e-5)
    assert torch.allclose(terms["penalty"], (x_hat.norm(dim=1) - 1).pow(2), atol=1e-5)


def test_interpolation_helpers_are_per_example():
    w = interpolation_weights(4, generator=torch.Generator().manual_seed(0))
    assert w.shape == (4,)
    a, b = torch.ones(4, 2, 3, 3), torch.zeros(4, 2, 3, 3)
    za, zb = torch.ones(4, 5), torch.zeros(4, 5)
    x_hat, z_hat = interpolate((a, za), (b, zb), w)
    assert torch.allclose(x_hat, w.view(4, 1, 1, 1).expand_as(a)) and torch.allclose(z_hat, w[:, None].expand_as(za))


def test_penalties_refuse_batch_norm_and_wasserstein_needs_a_constraint():
    model = tiny("dcgan", GREY)  # batch norm in D (8x8 digits have one D layer, which has no norm)
    batch = batch_for(GREY)
    with pytest.raises(ValueError, match="d_norm=layer"):
        GAN(GAN.Config(penalty="r1"))(model, batch, "D", 0)
    with pytest.raises(ValueError, match="Lipschitz"):
        GAN(GAN.Config(loss="wasserstein"))(tiny("dcgan", GREY, d_norm="layer"), batch, "D", 0)
    terms = GAN(GAN.Config(loss="wasserstein"))(tiny("dcgan", GREY, d_norm="spectral"), batch, "D", 0)
    assert terms["loss"].shape == (4,)


def test_the_objective_checks_the_networks_the_D_phase_declares():
    # The discriminator is what phases() says phase D trains, whatever the attribute is called; a model
    # that declares no D phase is refused by name instead of being searched for a 'discriminator'.
    class Renamed(ToyGAN):
        def __init__(self):
            super().__init__(nn.Linear(2, 2), Critic(2, 8, 1), latent_dim=2)
            self.judge = nn.Sequential(nn.BatchNorm1d(2), self.discriminator)
            del self.discriminator

        def phases(self):
            return [Phase("D", ("judge",)), Phase("G", ("generator",))]

        def critic(self, inputs, batch):
            return self.judge(inputs[0])

    batch = {"x": torch.randn(4, 2)}
    with pytest.raises(ValueError, match="d_norm=layer"):  # the batch norm inside "judge" is seen
        GAN(GAN.Config(penalty="r1"))(Renamed(), batch, "D", 0)
    with pytest.raises(ValueError, match="Phase\\('D'"):
        GAN()(type("NoD", (Renamed,), {"phases": lambda self: [Phase("main")]})(), batch, "D", 0)


def test_bigan_generator_phase_trains_the_encoder_through_data_pairs():
    model = tiny("bigan", DIGITS)
    batch = batch_for(DIGITS)
    terms = GAN(GAN.Config(loss="nonsaturating"))(model, batch, "G", 0)
    assert {"d_real", "d_fake"} <= set(terms)
    terms["loss"].mean().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    # the G-phase loss is the sum of the generator's and the encoder's losses
    assert torch.allclose(terms["loss"], generator_loss("nonsaturating", terms["d_fake"])
                          + encoder_loss("nonsaturating", terms["d_real"]), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Sampling


@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_sample_i_does_not_depend_on_the_batch(name):
    model = tiny(name, DIGITS)
    model.train()
    whole = sample_gan(model, 6, make_generators(11, 6), "cpu")
    first = sample_gan(model, 2, make_generators(11, 2), "cpu")
    rest = sample_gan(model, 4, make_generators(11, 4, start=2), "cpu")
    assert whole.shape == (6, 1, 8, 8) and whole.min() >= 0 and whole.max() <= 1
    assert torch.allclose(whole, torch.cat([first, rest]), atol=1e-6)
    assert model.training, "the sampler must restore the model's mode"


def test_cgan_samples_take_a_label():
    model = tiny("cgan", DIGITS).eval()
    gens = make_generators(5, 3)
    x = sample_gan(model, 3, gens, "cpu", label=7)
    z = model.sample_latent(3, "cpu", make_generators(5, 3))
    assert torch.allclose(x, model.generate(z, torch.full((3,), 7)), atol=1e-6)
    drawn = sample_gan(model, 3, make_generators(5, 3), "cpu")  # no label: a class per sample
    assert drawn.shape == x.shape
    with pytest.raises(ValueError, match="labels must be in"):
        sample_gan(model, 3, make_generators(5, 3), "cpu", label=10)
    with pytest.raises(ValueError, match="drop --label"):
        sample_gan(tiny("dcgan", DIGITS), 3, make_generators(5, 3), "cpu", label=1)


def test_latent_paths_and_their_figures(tmp_path):
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    lin = latent_path(a, b, 3, "linear")
    assert torch.allclose(lin, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    sl = latent_path(a, b, 3, "slerp")
    assert torch.allclose(sl.norm(dim=1), torch.ones(3), atol=1e-6)  # stays on the sphere
    model = tiny("cgan", DIGITS)
    rows = interpolations(model, pairs=2, steps=5, seed=0, label=3)
    assert rows.shape == (2, 5, 1, 8, 8)
    gens = make_generators(0, 4)
    ends = model.sample_latent(4, "cpu", gens)
    model.eval()
    assert torch.allclose(rows[1, -1], model.generate(ends[3:4], torch.tensor([3]))[0], atol=1e-5)
    png = save_strip(rows, tmp_path / "strip.png")
    gif = save_gif(rows, tmp_path / "walk.gif")
    from PIL import Image

    assert Image.open(png).size[0] > Image.open(png).size[1]  # a row per path, 5 steps across
    assert Image.open(gif).n_frames == 5 + 3  # forward, then back without repeating the ends


def test_nearest_neighbours_find_copies(tmp_path):
    g = torch.Generator().manual_seed(0)
    train = torch.rand(50, 1, 8, 8, generator=g)
    samples = torch.cat([train[[7, 23]], torch.rand(2, 1, 8, 8, generator=g)])
    dist, idx = nearest_neighbours(samples, train, k=2, chunk=16)  # chunks smaller than the set
    assert idx[0, 0] == 7 and idx[1, 0] == 23 and dist[:2, 0].abs().max() < 1e-6
    brute = torch.cdist(samples.flatten(1).double(), train.flatten(1).double())
    assert torch.equal(idx[2:], brute[2:].topk(2, largest=False).indices)
    path, d = save_nearest_neighbour_figure(samples, (train * 255).round().to(torch.uint8), tmp_path / "nn.png", k=3)
    assert path.exists() and d.shape == (4, 3)


# ----------------------------------------------------------------------------------------------
# BiGAN probes


def test_linear_probe_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 3
    feats = torch.randn(200, 4, generator=g) * 0.1
    feats[torch.arange(200), y] += 3.0
    acc = linear_probe_accuracy(feats[:100].numpy(), y[:100].numpy(), feats[100:].numpy(), y[100:].numpy())
    assert acc == 1.0
    shuffled = y[torch.randperm(200, generator=g)]
    chance = linear_probe_accuracy(feats[:100].numpy(), shuffled[:100].numpy(), feats[100:].numpy(),
                                   shuffled[100:].numpy())
    assert chance < 0.6


def test_bigan_probe_evaluator_reports_its_metrics():
    from genlab.data.base import ImageSet
    from genlab.eval.options import EvalOptions

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 1, 8, 8, generator=g) * 255).to(torch.uint8)
    labels = torch.arange(40) % 4
    data = ImageSet("toy", "test", images, labels, DataSpec(1, 8, 8, 8, 4), "scale")
    model = tiny("bigan", DataSpec(1, 8, 8, 8, 4))
    out = evaluate_bigan_probe(model, None, data, "cpu", EvalOptions(batch_size=16))
    assert set(out) == {"recon_mse", "recon_mse_other_image", "code_std", "probe_accuracy",
                        "probe_accuracy_random_encoder", "probe_accuracy_pixels"}
    for rec in out.values():
        assert rec["kind"] == "estimate" and "40 images" in rec["protocol"]
    assert 0 <= out["probe_accuracy"]["value"] <= 1 and out["recon_mse"]["value"] > 0
    x = data.batch(torch.arange(40))["x"]
    assert encode_all(model, x, 16).shape == (40, 6)
    self_err, other = reconstruction_errors(reconstruct_all(model, x, 16), x)
    assert self_err.shape == (40,)
    # the evaluator's subset is a permutation of all 40 images, so the means agree
    assert out["recon_mse"]["value"] == pytest.approx(self_err.mean().item(), rel=1e-5)


def test_class_agreement_matches_hand_counts():
    classes_x = torch.tensor([0, 1, 2, 3])
    classes_recon = torch.tensor([0, 1, 0, 0])
    # same image: positions 0 and 1 agree; next image (1, 2, 3, 0): only position 3 agrees
    assert class_agreement(classes_x, classes_recon) == (0.5, 0.25)
    with pytest.raises(ValueError, match="same length"):
        class_agreement(classes_x, classes_recon[:3])


class _PixelIdentity(torch.nn.Module):
    """E(x) = the pixels, G(z) = the image again: a perfect inverse pair, for the probe's exact values."""

    def __init__(self, cfg=None, data=None, collapsed: bool = False):
        super().__init__()
        self.cfg, self.data, self.collapsed = cfg, data, collapsed
        self.unused = torch.nn.Linear(1, 1)

    def sample_latent(self, n, device=None, generators=None):
        return torch.randn(n, 784)

    def encode(self, x, y=None):
        return torch.zeros_like(x.flatten(1)) if self.collapsed else x.flatten(1)

    def generate(self, z):
        return z.view(-1, 1, 28, 28)


def test_bigan_probe_on_a_perfect_inverse_has_exact_values():
    from genlab.data.base import ImageSet
    from genlab.eval.features import extract, load_feature_net
    from genlab.eval.options import EvalOptions

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(60, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    data = ImageSet("mnist", "test", images, torch.arange(60) % 10, DataSpec(1, 28, 28, 256, 10), "scale")
    out = evaluate_bigan_probe(_PixelIdentity(), None, data, "cpu", EvalOptions(batch_size=16))
    assert out["recon_mse"]["value"] == 0.0
    assert out["recon_class_agreement_mnist-lenet-v1"]["value"] == 1.0
    assert out["probe_accuracy"]["value"] == out["probe_accuracy_pixels"]["value"]  # E(x) is the pixels
    # the chance reference: the classifier's classes of each image against those of the next image
    x = data.batch(torch.randperm(60, generator=torch.Generator().manual_seed(0)))["x"]
    classes = extract(load_feature_net("mnist-lenet-v1"), x).logits.argmax(1)
    expected_other = (classes == classes.roll(-1)).double().mean().item()
    assert out["recon_class_agreement_other_image_mnist-lenet-v1"]["value"] == pytest.approx(expected_other)
    assert torch.equal(reconstruct_all(_PixelIdentity(), x), x)
    assert out["code_std"]["value"] == pytest.approx(x.flatten(1).std(0).mean().item(), rel=1e-5)
    prior_std = float(re.search(r"the prior's is ([0-9.]+)", out["code_std"]["protocol"]).group(1))
    assert prior_std == pytest.approx(1.0, abs=0.01)  # 10,000 N(0, 1) draws of the stub's prior

    collapsed = evaluate_bigan_probe(_PixelIdentity(collapsed=True), None, data, "cpu", EvalOptions(batch_size=16))
    assert collapsed["code_std"]["value"] == 0.0


# ----------------------------------------------------------------------------------------------
# Through the real trainer and data


@pytest.mark.parametrize("name, extra", [("dcgan", ["objective.loss=minimax"]),
                                         ("cgan", ["model.n_critic=2"]),
                                         ("bigan", ["objective.penalty=r1", "model.d_norm=layer"])])
def test_trains_with_the_one_loop_and_samples(name, extra, tmp_path):
    from genlab.config import RunConfig, apply_overrides
    from genlab.sampling.api import draw
    from genlab.train.loop import train
    from genlab.train.run import load_run

    tiny_run = ["data.name=digits", "model.width=4", "model.latent_dim=6", "train.batch_size=16", "train.steps=4",
                "train.log_every=2", "train.progress=false", "train.device=cpu"]
    cfg = apply_overrides(RunConfig.create(name), tiny_run + extra)
    assert cfg.optim.lr == 2e-4 and cfg.optim.beta1 == 0.5  # the model's paper defaults
    result = train(cfg, tmp_path / "run")
    assert result.step == 4 and result.skipped_steps == 0
    import json

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"train/D/loss", "train/G/loss", "train/D/d_real", "train/D/d_fake"} <= set(rows[-1])
    run = load_run(tmp_path / "run")
    label = 7 if name == "cgan" else None
    a = draw(run.model, 5, seed=3, device="cpu", batch_size=2, label=label)
    b = draw(run.model, 5, seed=3, device="cpu", batch_size=5, label=label)
    assert a.shape == (5, 1, 8, 8) and torch.allclose(a, b, atol=1e-6)


def test_one_step_on_real_mnist(data_root):
    from genlab.config import DataConfig
    from genlab.data import load_dataset

    mnist = load_dataset("mnist", "test", DataConfig(name="mnist", root=str(data_root)))
    batch = mnist.batch(torch.arange(8))
    model = tiny("cgan", mnist.spec)
    objective = GAN(GAN.Config(loss="hinge"), mnist.spec)
    for phase in model.phases():
        terms = objective(model, batch, phase.name, 0)
        assert torch.isfinite(terms["loss"]).all() and terms["loss"].shape == (8,)
