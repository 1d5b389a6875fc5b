"""Diffusion beyond the core maths: EDM churn, the EMA warm-up and its warning, guidance sweeps, figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genlab.nn import diffusion as proc
from genlab.nn.spec import DataSpec
from genlab.registry import SAMPLER_OPTIONS, SAMPLERS
from genlab.rng import make_generators
from genlab.sampling import diffusion as samplers
from test_diffusion import _analytic, _Counter, _model, _shaken


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


def test_report_draws_trajectory_completion_interpolation_and_sweep_figures(tmp_path):
    import json

    from genlab.reports.report import write_report

    run = _tiny_diffusion_run(tmp_path / "run", "model.conditional=true", "train.ema_warmup=count")
    row = {"options": {"steps": 5}, "n_samples": 10, "fid": 50.0, "precision": 0.5, "recall": 0.4,
           "label_accuracy": 60.0}
    sweeps = {"nfe": {"checkpoint_step": 3, "weights": "EMA",
                      "rows": [{**row, "sampler": s, "nfe": n} for s in ("ddim", "heun") for n in (5, 9)]},
              "guidance": {"checkpoint_step": 3, "weights": "EMA",
                           "rows": [{**row, "sampler": "ddim", "nfe": 5, "guidance": g} for g in (0.0, 1.0, 3.0)]}}
    (run / "diffusion_sweeps.json").write_text(json.dumps(sweeps))
    md, _ = write_report(run, "cpu")
    text = md.read_text()
    for name in ("samples_by_nfe", "samples_by_class", "trajectory", "completions", "interpolation", "fid_vs_nfe",
                 "guidance_sweep"):
        assert f"figures/{name}.png" in text and (run / "figures" / f"{name}.png").exists(), name
    assert "replacement (not RePaint" in text


def test_trajectory_ends_at_the_ddim_sample():
    model = _shaken()
    states = samplers.ddim_trajectory(model, 2, make_generators(3, 2), "cpu", label=1, steps=4)
    assert states.shape == (5, 2, 1, 8, 8)
    final = samplers.sample_ddim(model, 2, make_generators(3, 2), "cpu", label=1, steps=4)
    torch.testing.assert_close(states[-1], final, rtol=0, atol=0.5 / 255 + 1e-6)  # the sample is rounded to levels


def test_guidance_sweep_and_fid_vs_nfe_rows(data_root, tmp_path):
    """On a tiny MNIST-shaped model (untrained numbers, real protocol): one row per setting, the NFE of
    each sampler's budget, the label accuracy of conditional samples, rows stored by sampler and options."""
    from genlab.config import DataConfig
    from genlab.data import load_dataset
    from genlab.errors import InputError
    from genlab.eval import diffusion_sweeps as sw

    spec = DataSpec(channels=1, height=28, width=28, bits=8, num_classes=10)
    model = _model(spec, attention_resolutions=(7,))[0].eval()
    test = load_dataset("mnist", "test", DataConfig(name="mnist", root=str(data_root)))
    rows = sw.fid_vs_nfe(model, test, "cpu", ["ddim", "heun"], [3], 12, batch_size=12, n_reference=100,
                         log=lambda *_: 0)
    assert [(r["sampler"], r["nfe"], r["options"]["steps"]) for r in rows] == [("ddim", 3, 3), ("heun", 3, 2)]
    assert all(r["fid"] > 0 and 0 <= r["label_accuracy"] <= 100 and r["images_per_s"] > 0 for r in rows)
    with torch.no_grad():
        model.net.label_emb.weight.normal_()  # labels now change the output, so guidance has something to amplify
    guided = sw.guidance_sweep(model, test, "cpu", [0.0, 2.0], 12, steps=2, batch_size=12, n_reference=100,
                               log=lambda *_: 0)
    assert [r["guidance"] for r in guided] == [0.0, 2.0] and guided[0]["fid"] != guided[1]["fid"]
    sw.write_sweep(tmp_path, "nfe", rows, 7, "EMA")
    sw.write_sweep(tmp_path, "nfe", rows[:1], 7, "EMA")  # the same setting again replaces its row
    assert len(sw.read_sweeps(tmp_path)["nfe"]["rows"]) == 2
    fewer = [{**rows[0], "n_samples": rows[0]["n_samples"] // 2, "fid": 99.0}]
    sw.write_sweep(tmp_path, "nfe", fewer, 7, "EMA")  # another sample count is another measurement
    stored = sw.read_sweeps(tmp_path)["nfe"]["rows"]
    assert len(stored) == 3 and {r["fid"] for r in stored} >= {rows[0]["fid"], 99.0}
    with torch.no_grad():
        model.net.label_emb.weight.zero_()
    with pytest.raises(InputError, match="ignores its label"):
        sw.guidance_sweep(model, test, "cpu", [2.0], 12, steps=2, batch_size=12, n_reference=100)


def test_ood_scores_a_diffusion_run_by_its_vdm_bound(tmp_path, data_root):
    from genlab.ood.run import OODOptions
    from genlab.reports.ood import ood_run

    run = _tiny_diffusion_run(tmp_path / "run", "model.conditional=true")
    opts = OODOptions(ood=["mnist"], max_examples=12, reference_examples=8, typicality_m=4, batch_size=12, seed=0,
                      device="cpu", data_root=str(data_root), report=False)
    result = ood_run(run, opts, log=lambda *_: None)
    assert result["run"]["likelihood_kind"] == "bound" and "VDM" in result["run"]["likelihood"]
    assert "over 10 classes" in result["run"]["likelihood"]
    assert 0 <= result["ood"]["mnist"]["metrics"]["bpd"]["auroc"] <= 1


def test_score_draws_a_diffusion_runs_surprise_map(tmp_path):
    from PIL import Image

    from genlab.cli import main

    run = _tiny_diffusion_run(tmp_path / "run")
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8), "L").save(tmp_path / "ramp.png")
    out = tmp_path / "maps"
    assert main(["score", str(run), str(tmp_path / "ramp.png"), "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "scores.json").read_text())
    assert "VDM" in summary["surprise_map"] and summary["likelihood_kind"] == "bound" and summary["iwae_k"] is None
    assert len(list(out.glob("*.png"))) == 1


def test_guidance_refuses_a_network_whose_forward_drops_the_label():
    model = _shaken()
    assert model.label_sensitive()  # the embedding differs from the null token's...
    net_forward = model.net.forward
    model.net.forward = lambda x, t, y=None: net_forward(x, t, torch.full_like(y, model.null_label))
    with pytest.raises(ValueError, match="ignores its label"):  # ... but the outputs do not depend on it
        samplers.sample_heun(model, 2, make_generators(0, 2), "cpu", label=1, steps=2, guidance=2.0)
    # The null label itself (the unconditional samples) is no reason to refuse.
    samplers.sample_heun(model, 2, make_generators(0, 2), "cpu", label=model.null_label, steps=2, guidance=2.0)
