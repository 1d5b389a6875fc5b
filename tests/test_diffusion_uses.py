"""Diffusion beyond the core maths: EDM churn, the EMA warm-up and its warning, guidance sweeps, figures."""

from __future__ import annotations

import pytest
import torch

from genlab.nn import diffusion as proc
from genlab.nn.spec import DataSpec
from genlab.registry import SAMPLER_OPTIONS, SAMPLERS
from genlab.rng import make_generators
from genlab.sampling import diffusion as samplers
from test_diffusion import _analytic, _Counter, _shaken


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_churn_zero_is_the_deterministic_sampler_and_churn_keeps_the_nfe(name):
    model = _shaken()
    fn = SAMPLERS.get(name)
    plain = fn(model, 3, make_generators(2, 3), "cpu", label=4, steps=5)
    zero = fn(model, 3, make_generators(2, 3), "cpu", label=4, steps=5, s_churn=0.0, s_noise=1.007)
    assert torch.equal(zero, plain)
    # Churn confined to noise levels above the largest one adds nothing either.
    above = fn(model, 3, make_generators(2, 3), "cpu", label=4, steps=5, s_churn=40.0, s_tmin=1e6)
    assert torch.equal(above, plain)
    counter = _Counter(model)
    churned = fn(model, 3, make_generators(2, 3), "cpu", label=4, steps=5, s_churn=40.0)
    expected = samplers.nfe(name, SAMPLER_OPTIONS.get(name)(steps=5, s_churn=40.0), model)
    assert counter.calls == expected == (5 if name == "euler" else 9)
    assert not torch.equal(churned, plain)
    # One generator per sample: sample 1 is the same image drawn alone.
    alone = fn(model, 1, make_generators(2, 3)[1:2], "cpu", label=4, steps=5, s_churn=40.0)
    torch.testing.assert_close(alone, churned[1:2], rtol=0, atol=1e-6)


def test_churned_heun_with_the_exact_denoiser_samples_the_data_distribution():
    """EDM Algorithm 2 keeps the marginals: with the exact score of N(mu, std^2) data the churned sampler's
    samples have the data's mean and standard deviation. Churn adds discretization error (gamma = 0.2 at
    40 steps: std 0.309), which more steps remove (100 steps: 0.3006 for a true 0.3)."""
    spec = DataSpec(channels=1, height=8, width=8, bits=8)
    model = _analytic(spec, mu=0.1, std=0.3, conditional=False, timesteps=1000, mult=(1,))
    x = samplers.sample_heun(model, 200, make_generators(0, 200), "cpu", steps=100, s_churn=20.0, s_tmin=0.05)
    x = proc.to_process(x)
    assert x.mean().item() == pytest.approx(0.1, abs=0.012)
    assert x.std().item() == pytest.approx(0.3, rel=0.02)


def test_ema_warmup_decays():
    from genlab.train.ema import ema_decay_at

    assert ema_decay_at(0.999, "none", 0) == 0.999
    assert [ema_decay_at(0.999, "count", n) for n in (0, 1, 90)] == [0.1, 2 / 11, 0.91]
    assert ema_decay_at(0.9, "count", 10_000) == 0.9
    # EDM: after 10 updates of 64 images the half-life is at most 5 % of 640 images, 32 images: half a batch.
    assert ema_decay_at(0.9999, "halflife", 9, 64, 0.05) == pytest.approx(0.25)
    assert ema_decay_at(0.99, "halflife", 10**6, 64, 0.05) == 0.99


def test_young_ema_warning_rule():
    from genlab.train.ema import young_ema_warning

    # Constant decay 0.995: the initial weights' share 0.995^n falls under 1 % after 919 updates.
    assert "make up 1.0 %" in young_ema_warning({}, 918, 0.995)
    assert young_ema_warning({}, 919, 0.995) is None
    assert young_ema_warning({"ema_updates": 5, "ema_init_share": 0.004}, 5, 0.9999) is None
    assert "5 updates" in young_ema_warning({"ema_updates": 5, "ema_init_share": 0.6}, 5, 0.9999)


def _tiny_diffusion_run(tmp_path, *extra):
    from genlab.config import RunConfig, apply_overrides
    from genlab.models.diffusion.diffusion import Diffusion
    from genlab.train.loop import train

    cfg = RunConfig.create("diffusion")
    tiny = {**Diffusion.card.tiny, "conditional": False, "attention_resolutions": (2,)}
    apply_overrides(cfg, [f"model.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in tiny.items()]
                    + ["data.name=digits", "train.steps=3", "train.batch_size=8", "train.progress=false",
                       "train.device=cpu", "train.ema_decay=0.99", *extra])
    train(cfg, tmp_path)
    return tmp_path


def test_eval_reports_raw_and_ema_weights_and_warns_about_a_young_ema(tmp_path):
    from genlab.eval.options import EvalOptions
    from genlab.eval.run import evaluate_run

    run = _tiny_diffusion_run(tmp_path / "young")
    lines = []
    out = evaluate_run(run, EvalOptions(max_examples=4, batch_size=4), "cpu", ["diffusion-vdm"], log=lines.append,
                       raw_too=True)
    keys = set(out["metrics"])
    assert "vdm_bpd" in keys and "raw/vdm_bpd" in keys
    assert out["metrics"]["vdm_bpd"]["weights"] == "ema" and out["metrics"]["raw/vdm_bpd"]["weights"] == "raw"
    assert out["metrics"]["vdm_bpd"]["value"] != out["metrics"]["raw/vdm_bpd"]["value"]
    # 3 updates at decay 0.99: the initial weights are 97 % of the average.
    assert "97.0 %" in out["run"]["ema_warning"] and any(line.startswith("warning: the EMA") for line in lines)
    warm = _tiny_diffusion_run(tmp_path / "warm", "train.ema_warmup=count")
    out = evaluate_run(warm, EvalOptions(max_examples=4, batch_size=4), "cpu", ["diffusion-vdm"], log=lambda *_: 0)
    assert "ema_warning" not in out["run"] and "raw/vdm_bpd" not in out["metrics"]
