"""Progressive growing (Karras et al. 2018): the fade-in schedule, equalized-lr layers, minibatch
stddev, the growing networks and exact resume in the middle of a fade-in."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genlab.config import RunConfig, apply_overrides
from genlab.errors import InputError
from genlab.models.adversarial.dcgan import DCGAN
from genlab.models.adversarial.progan import ProGAN
from genlab.nn.progressive import FadeSchedule, ScaledConv2d, ScaledLinear, minibatch_stddev, pixel_norm
from genlab.nn.spec import DataSpec
from genlab.objectives.adversarial import GAN
from genlab.registry import OBJECTIVES
from genlab.reports.figures import resolution_figure
from genlab.train.checkpoint import load_latest
from genlab.train.loop import train

MNIST = DataSpec(1, 28, 28, 8, 10)


# ----------------------------------------------------------------------------------------------
# The fade-in schedule


def test_schedule_phases_endpoints_and_monotone_alpha():
    s = FadeSchedule(start=4, final=32, fade_steps=5, stable_steps=3)
    assert s.levels == 4 and s.length() == 4 * 3 + 3 * 5
    stages = [s.at(t) for t in range(s.length() + 10)]
    # Stabilization at 4x4, then per level: fade (alpha 0, 0.2, ..., 0.8), stabilization (alpha 1).
    expected = [(0, 1.0)] * 3
    for level in (1, 2, 3):
        expected += [(level, k / 5) for k in range(5)] + [(level, 1.0)] * 3
    expected += [(3, 1.0)] * 10  # the final resolution, for ever
    assert [lv for lv, _ in stages] == [lv for lv, _ in expected]
    assert [a for _, a in stages] == pytest.approx([a for _, a in expected], abs=1e-12)
    assert [s.resolution(t) for t in (0, 2, 3, 10, 11, 18, 19, 100)] == [4, 4, 8, 8, 16, 16, 32, 32]
    # Within each fade phase alpha starts at exactly 0, rises strictly and reaches 1 at the boundary.
    for level in (1, 2, 3):
        first = 3 + (level - 1) * 8
        alphas = [s.at(t)[1] for t in range(first, first + 6)]
        assert alphas[0] == 0.0 and alphas[-1] == 1.0
        assert all(a < b for a, b in zip(alphas, alphas[1:]))
        assert s.at(first - 1) == (level - 1, 1.0)  # the step before a fade is the old level, stable


def test_schedule_refuses_sides_that_do_not_double():
    with pytest.raises(InputError, match="power of two"):
        FadeSchedule(4, 24, 1, 1)
    assert FadeSchedule(8, 8, 1, 1).at(1000) == (0, 1.0)  # one level: nothing to grow


def test_model_stage_follows_the_step_and_mnist_is_padded_to_32():
    model = ProGAN(replace(ProGAN.Config(), latent_dim=4, fmap_base=16, fmap_max=4, fade_steps=2, stable_steps=2),
                   MNIST)
    assert model.final == 32 and model.schedule.levels == 4
    x = torch.rand(2, 1, 28, 28)
    model.set_step(0)
    (real,) = model.real_inputs({"x": x})
    assert real.shape == (2, 1, 4, 4)
    model.set_step(model.schedule.length())
    (real,) = model.real_inputs({"x": x})
    assert real.shape == (2, 1, 32, 32)
    assert torch.equal(real[:, :, 2:30, 2:30], x * 2 - 1) and (real[:, :, :2] == -1).all()  # black border
    z = model.sample_latent(2)
    for step in (0, 3, 9, 30):
        model.set_step(step)
        assert model.generate(z).shape == (2, 1, 28, 28)  # cropped back for samples and metrics
        side = model.schedule.resolution(step)
        assert model.fake_inputs({"x": x}, z)[0].shape == (2, 1, side, side)
        assert model.critic(model.fake_inputs({"x": x}, z), {"x": x}).shape == (2,)


def test_fade_blends_the_new_and_old_paths():
    """At alpha 0 the grown networks compute exactly what the smaller ones did (upsampled / pooled)."""
    cfg = replace(ProGAN.Config(), latent_dim=4, fmap_base=32, fmap_max=8, fade_steps=4, stable_steps=2)
    torch.manual_seed(0)
    model = ProGAN(cfg, DataSpec(1, 8, 8, 8, 0))
    z, x = model.sample_latent(3), torch.rand(3, 1, 8, 8)
    g_old = model.generator(z, 0, 1.0)  # (3, 1, 4, 4)
    assert torch.allclose(model.generator(z, 1, 0.0), F.interpolate(g_old, scale_factor=2), atol=1e-6)
    x8 = x * 2 - 1
    assert torch.allclose(model.discriminator(x8, 1, 0.0), model.discriminator(F.avg_pool2d(x8, 2), 0, 1.0),
                          atol=1e-5)
    model.set_step(2)  # the first fade step: alpha = 0, the real images are the 4x4 ones, upsampled
    (real,) = model.real_inputs({"x": x})
    assert torch.allclose(real, F.interpolate(F.avg_pool2d(x8, 2), scale_factor=2), atol=1e-6)
    model.set_step(4)  # alpha = 0.5
    g = model.generator(z, 1, 0.5)
    assert torch.allclose(g, 0.5 * model.generator(z, 1, 1.0) + 0.5 * F.interpolate(g_old, scale_factor=2),
                          atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Equalized learning rate, pixel norm, minibatch stddev


@pytest.mark.parametrize("make", [lambda eq: ScaledConv2d(3, 5, 3, equalized=eq),
                                  lambda eq: ScaledLinear(40, 7, equalized=eq)], ids=["conv", "linear"])
def test_equalized_layers_store_unit_weights_and_scale_at_run_time(make):
    torch.manual_seed(0)
    layer = make(True)
    fan_in = layer.weight[0].numel()
    c = math.sqrt(2) / math.sqrt(fan_in)
    # The stored weight is a N(0, 1) draw; He's constant is applied in forward, not folded in.
    assert abs(layer.weight.std().item() - 1.0) < 0.25 and layer.scale == pytest.approx(c)
    x = torch.randn(2, 3, 6, 6) if isinstance(layer, ScaledConv2d) else torch.randn(2, 40)

    def plain(w, b):
        return F.conv2d(x, w, b, padding=1) if isinstance(layer, ScaledConv2d) else F.linear(x, w, b)

    with torch.no_grad():
        layer.bias.normal_()
    assert torch.allclose(layer(x), plain(layer.weight * c, layer.bias), atol=1e-6)
    # Changing the stored weight after init changes the output through the same constant (run time).
    with torch.no_grad():
        layer.weight.mul_(2)
    assert torch.allclose(layer(x), plain(layer.weight * c, layer.bias), atol=1e-5)
    # Gradient: d loss / d stored weight = c x d loss / d effective weight.
    layer.zero_grad()
    layer(x).pow(2).sum().backward()
    w_eff = (layer.weight.detach() * c).requires_grad_(True)
    plain(w_eff, layer.bias.detach()).pow(2).sum().backward()
    assert torch.allclose(layer.weight.grad, c * w_eff.grad, rtol=1e-4, atol=1e-6)
    # The whole map is differentiable as stated (finite differences, double precision).
    layer = layer.double()
    x = x.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda xx, w: (F.conv2d(xx, w * c, layer.bias, padding=1)
                                                   if isinstance(layer, ScaledConv2d)
                                                   else F.linear(xx, w * c, layer.bias)),
                                    (x, layer.weight.detach().clone().requires_grad_(True)))
    # The ablation: the constant is folded into the initial weights and nothing is scaled at run time.
    torch.manual_seed(0)
    he = make(False)
    assert he.scale == 1.0 and abs(he.weight.std().item() - c) < 0.25 * c


def test_pixel_norm_gives_unit_rms_feature_vectors():
    h = torch.randn(2, 6, 3, 3) * 5
    assert torch.allclose(pixel_norm(h).pow(2).mean(dim=1), torch.ones(2, 3, 3), atol=1e-5)


def test_minibatch_stddev_on_a_hand_made_batch():
    # Two examples, 2 channels, 1x2 pixels: per-feature population std = |a - b| / 2.
    h = torch.tensor([[[[0.0, 1.0]], [[2.0, 2.0]]],
                      [[[2.0, 5.0]], [[2.0, 6.0]]]])  # (2, 2, 1, 2)
    out = minibatch_stddev(h, group_size=4)
    assert out.shape == (2, 3, 1, 2)
    assert torch.equal(out[:, :2], h)
    stds = torch.tensor([1.0, 2.0, 0.0, 2.0])  # |a - b| / 2 for each of the 4 features
    expected = float((stds**2 + 1e-8).sqrt().mean())  # eps 1e-8 under the root, as in the released code
    assert torch.allclose(out[:, 2], torch.full((2, 1, 2), expected), atol=1e-6)
    # Groups of 2 in a batch of 4: examples i and i + 2 form a group, each gets its group's value.
    four = torch.cat([h[:1], torch.zeros(1, 2, 1, 2), h[1:], torch.zeros(1, 2, 1, 2)])
    out = minibatch_stddev(four, group_size=2)
    assert out[:, 2, 0, 0].tolist() == pytest.approx([expected, 1e-4, expected, 1e-4], abs=1e-6)  # sqrt(eps)
    assert minibatch_stddev(torch.randn(3, 4, 2, 2), group_size=2).shape == (3, 5, 2, 2)  # 3 % 2: groups of 1


# ----------------------------------------------------------------------------------------------
# The objective and exact resume mid-fade


def test_progressive_objective_is_the_gan_objective_with_the_step_and_drift():
    assert issubclass(OBJECTIVES.get("progressive-gan"), GAN)
    cfg = RunConfig.create("progan")  # the paper's loss from the card: WGAN-GP with the drift term
    assert (cfg.objective.loss, cfg.objective.penalty, cfg.objective.drift) == ("wasserstein", "wgan-gp", 1e-3)
    model = ProGAN(replace(ProGAN.Config(), latent_dim=4, fmap_base=16, fmap_max=4, fade_steps=2, stable_steps=2),
                   DataSpec(1, 8, 8, 8, 0))
    objective = OBJECTIVES.get("progressive-gan")(cfg.objective)
    batch = {"x": torch.rand(4, 1, 8, 8)}
    terms = objective(model, batch, "D", 3)
    assert int(model.step) == 3 and model.stage() == (1, 0.5)
    (real,) = model.real_inputs(batch)
    assert torch.allclose(terms["drift"], 1e-3 * model.critic((real,), batch).detach() ** 2, atol=1e-6)
    with pytest.raises(InputError, match="progan"):
        objective(DCGAN(replace(DCGAN.Config(), latent_dim=4, width=4), DataSpec(1, 8, 8, 8, 0)), batch, "D", 0)


def test_progan_resumes_bit_exactly_in_the_middle_of_a_fade_in(tmp_path):
    extra = ["data.name=digits", "train.steps=6", "train.batch_size=8", "train.ema_decay=0.9",
             "train.progress=false", "train.device=cpu", "train.log_every=3", "model.latent_dim=4",
             "model.fmap_base=32", "model.fmap_max=4", "model.fade_steps=4", "model.stable_steps=2"]

    def cfg():
        return apply_overrides(RunConfig.create("progan"), extra)

    assert ProGAN(cfg().model, DataSpec(1, 8, 8, 4, 10)).schedule.at(3) == (1, 0.25)  # stopped mid-fade
    train(cfg(), tmp_path / "full")
    train(cfg(), tmp_path / "part", until_step=3)
    train(None, tmp_path / "part", resume=True)
    for name in ("model", "ema", "optim"):
        a, b = load_latest(tmp_path / "full")[name], load_latest(tmp_path / "part")[name]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert int(load_latest(tmp_path / "full")["model"]["step"]) == 5  # the step last trained


def test_report_figure_draws_the_same_latents_at_every_resolution(tmp_path):
    model = ProGAN(replace(ProGAN.Config(), latent_dim=4, fmap_base=16, fmap_max=4), MNIST)
    z = model.sample_latent(2)
    low = model.generate(z, level=0)  # 4x4 upsampled to 32, cropped to 28: blocks of 8x8 pixels
    assert low.shape == (2, 1, 28, 28) and torch.equal(low[:, :, 6:14, 6:14], low[:, :, 6:7, 6:7].expand(-1, -1, 8, 8))
    caption, name = resolution_figure(model, tmp_path / "res.png", "cpu")
    assert "4 -> 8 -> 16 -> 32" in caption and (tmp_path / name).exists()
    assert Image.open(tmp_path / name).size[1] > Image.open(tmp_path / name).size[0] / 10 * 3  # 4 rows
