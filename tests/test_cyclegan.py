"""CycleGAN and two-domain data: exact domain transforms, unpaired resumable batches, phases, image history, lr decay."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from genlab.config import RunConfig, apply_overrides
from genlab.data import load_dataset
from genlab.data.base import ImageSet
from genlab.data.domains import SYNTHETIC, TwoDomainStream, split_domains, thicken, thin, true_map
from genlab.nn.spec import DataSpec
from genlab.objectives.translation import ImageHistory
from genlab.sampling.api import draw
from genlab.train.checkpoint import load_latest
from genlab.train.loop import learning_rate, train
from genlab.train.run import build_model, build_objective
from genlab.train.step import PhaseOptimizers, train_step


def _images(n=6, size=12, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)


def test_morphology_is_scipy_grey_dilation_and_erosion():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _images()
    square = torch.ones(3, 3).bool().numpy()
    plus = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]]).bool().numpy()
    for i in range(len(x)):
        want_thick = ndimage.grey_dilation(x[i, 0].numpy(), footprint=square, mode="nearest")
        want_thin = ndimage.grey_erosion(x[i, 0].numpy(), footprint=plus, mode="nearest")
        assert (thicken(x)[i, 0].numpy() == want_thick).all()
        assert (thin(x)[i, 0].numpy() == want_thin).all()


def test_invertible_domains_round_trip_exactly_and_true_maps_compose():
    x = _images()
    for name in ("mnist-inverted", "mnist-rot90"):
        d = SYNTHETIC[name]
        assert torch.equal(d.inverse(d.forward(x)), x) and not torch.equal(d.forward(x), x)
        assert torch.equal(true_map("mnist", name)(x), d.forward(x))
        assert torch.equal(true_map(name, "mnist")(d.forward(x)), x)
    assert torch.equal(SYNTHETIC["mnist-inverted"].forward(x), 255 - x)
    assert true_map("mnist-thick", "mnist") is None and true_map("mnist", "fashion-mnist") is None


def test_registered_domains_are_the_transform_of_the_same_mnist_images(data_root):
    from genlab.config import DataConfig

    cfg = DataConfig(root=str(data_root))
    mnist = load_dataset("mnist", "test", cfg)
    for name, domain in SYNTHETIC.items():
        data = load_dataset(name, "test", cfg)
        assert torch.equal(data.images, domain.forward(mnist.images)), name  # exact ground-truth pairs
        assert torch.equal(data.labels, mnist.labels)


def _set(name: str, n: int = 40) -> ImageSet:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return ImageSet(name, "train", images, torch.arange(n) % 10, DataSpec(1, 4, 4, 8, 10), "scale")


def test_two_domain_batches_are_a_pure_function_of_seed_and_step_and_unpaired():
    a, b = split_domains(_set("mnist"), _set("mnist-inverted"), unpaired_halves=True)
    ids_a, ids_b = set(a.images[:, 0, 0, 0].tolist()), set(b.images[:, 0, 0, 0].tolist())
    assert ids_a and ids_b and not ids_a & ids_b  # the same source images: disjoint halves
    first = TwoDomainStream(a, b, 8, 2, seed=3).micro_batches(5)
    again = TwoDomainStream(a, b, 8, 2, seed=3).micro_batches(5)
    assert len(first) == 2 and first[0]["x"].shape == first[0]["x_b"].shape == (4, 1, 4, 4)
    for m, n in zip(first, again):
        assert m.keys() == n.keys() == {"x", "y", "x_b", "y_b"}
        assert all(torch.equal(m[k], n[k]) for k in m)
    # Domain B's order is its own, not domain A's order shifted by the half.
    order_a = torch.cat([m["y"] for s in range(2) for m in TwoDomainStream(a, b, 8, 1, 3).micro_batches(s)])
    order_b = torch.cat([m["y_b"] for s in range(2) for m in TwoDomainStream(a, b, 8, 1, 3).micro_batches(s)])
    assert not torch.equal(order_a, order_b)
    whole_a, whole_b = split_domains(_set("mnist"), _set("fashion-mnist"), unpaired_halves=True)
    assert len(whole_a) == len(whole_b) == 40  # different sources keep every image


def _cyclegan_cfg(extra=()):
    return apply_overrides(RunConfig.create("cyclegan"), [
        "data.name=digits", "data.domain_b=digits", "model.width=4", "model.n_down=1", "model.n_blocks=1",
        "model.d_width=4", "objective.pool_size=3", "train.batch_size=4", "train.steps=6", "train.ckpt_every=3",
        "train.progress=false", "train.device=cpu", "train.log_every=3", *extra])


def test_a_two_domain_run_resumes_bit_exactly(tmp_path):
    train(_cyclegan_cfg(), tmp_path / "full")
    train(_cyclegan_cfg(), tmp_path / "part", until_step=3)
    train(None, tmp_path / "part", resume=True)
    full, part = load_latest(tmp_path / "full"), load_latest(tmp_path / "part")
    for name in ("model", "optim"):
        assert full[name].keys() == part[name].keys()
        for k in full[name]:
            assert torch.equal(full[name][k], part[name][k]), f"{name} {k} differs after resume"


def test_a_cyclegan_phase_updates_only_its_own_networks():
    cfg = _cyclegan_cfg()
    spec = DataSpec(1, 8, 8, 8, 10)
    torch.manual_seed(0)
    model, objective = build_model(cfg, spec), build_objective(cfg, spec)
    g = torch.Generator().manual_seed(1)
    batch = {"x": torch.rand(4, 1, 8, 8, generator=g), "x_b": torch.rand(4, 1, 8, 8, generator=g)}
    groups = {"G": ("gen_ab", "gen_ba"), "D": ("disc_a", "disc_b")}
    for phase in model.phases():
        assert phase.modules == groups[phase.name]
        model.zero_grad(set_to_none=True)
        objective(model, batch, phase.name, 0)["loss"].mean().backward()
        for name in ("gen_ab", "gen_ba", "disc_a", "disc_b"):
            grads = [p.grad for p in model.get_submodule(name).parameters()]
            if phase.name == "D" and name not in phase.modules:
                # no graph through the translators in phase D: they get no gradient at all
                assert all(gr is None for gr in grads), f"phase D reached {name}"
            if name in phase.modules:
                assert any(gr is not None and gr.abs().sum() > 0 for gr in grads), f"phase {phase.name} misses {name}"
    # One training step of each phase, as the loop runs it, moves that phase's networks and no other.
    opts = PhaseOptimizers(model, model.phases(), lambda params: torch.optim.Adam(params, lr=1e-2))
    for phase in model.phases():
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train_step(model, objective, [batch], 0, opts.select(phase.name))
        moved = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
        assert moved == set(groups[phase.name]), f"phase {phase.name} moved {moved}"


def test_each_cycle_scale_weighs_its_own_cycle_only():
    spec = DataSpec(1, 8, 8, 8, 10)
    g = torch.Generator().manual_seed(2)
    batch = {"x": torch.rand(4, 1, 8, 8, generator=g), "x_b": torch.rand(4, 1, 8, 8, generator=g)}
    torch.manual_seed(0)
    model = build_model(_cyclegan_cfg(), spec)

    def g_terms(*extra):
        objective = build_objective(_cyclegan_cfg(["objective.lambda_idt=0", *extra]), spec)
        return objective(model, batch, "G", 0)

    full = g_terms()
    lam = _cyclegan_cfg().objective.lambda_cyc
    for cycle, key in (("a", "cycle_a"), ("b", "cycle_b")):
        scaled = g_terms(f"objective.cycle_scale_{cycle}=0.25")
        torch.testing.assert_close(full["loss"] - scaled["loss"], 0.75 * lam * full[key].detach())


def test_image_history_mixes_new_and_stored_images_with_the_stated_probability(tmp_path):
    history = ImageHistory(size=50, swap=0.5)
    torch.manual_seed(0)
    first = torch.arange(50.0).view(50, 1, 1, 1)
    assert torch.equal(history.query(first), first)  # filling: every image is returned and kept
    new = 1000 + torch.arange(4000.0).view(4000, 1, 1, 1)
    out = history.query(new)
    stored = (out < 1000).flatten() | (out != new).flatten()
    share = stored.float().mean().item()
    assert abs(share - 0.5) < 0.03  # 4000 draws: 4.5 standard errors of 0.0079
    assert set(out[stored].flatten().tolist()) <= set(range(50)) | set(new.flatten().tolist())
    # Save and load through safetensors: the same history answers the same draws.
    path = tmp_path / "history.safetensors"
    save_file({k: v.contiguous() for k, v in history.state_dict().items()}, str(path))
    twin = ImageHistory(size=50, swap=0.5)
    twin.load_state_dict(load_file(str(path)))
    probe = -torch.arange(1.0, 9.0).view(8, 1, 1, 1)
    torch.manual_seed(5)
    a = history.query(probe)
    torch.manual_seed(5)
    b = twin.query(probe)
    assert torch.equal(a, b) and torch.equal(history.images, twin.images)


def test_objective_state_is_tensors_and_an_eval_pass_leaves_the_history_alone():
    cfg = _cyclegan_cfg()
    spec = DataSpec(1, 8, 8, 8, 10)
    model, objective = build_model(cfg, spec), build_objective(cfg, spec)
    batch = {"x": torch.rand(4, 1, 8, 8), "x_b": torch.rand(4, 1, 8, 8)}
    model.eval()
    with torch.no_grad():
        objective(model, batch, "D", 0)
    assert int(objective.state_dict()["history_a/count"]) == 0
    model.train()
    objective(model, batch, "D", 0)
    state = objective.state_dict()
    assert all(torch.is_tensor(v) for v in state.values()) and int(state["history_b/count"]) == 3


def test_linear_learning_rate_decay():
    cfg = apply_overrides(RunConfig.create("cyclegan"), ["train.steps=100", "optim.lr=0.001"])
    assert cfg.optim.schedule == "linear" and cfg.optim.decay_start == 0.5  # the paper's schedule is the default
    lrs = [learning_rate(cfg, s) for s in range(100)]
    assert all(lr == 0.001 for lr in lrs[:51])
    assert lrs[60] == pytest.approx(0.001 * (1 - 10 / 50)) and lrs[99] == pytest.approx(0.001 / 50)
    assert all(x > y for x, y in zip(lrs[50:], lrs[51:]))


class _TrueInversion(torch.nn.Module):
    """A perfect MNIST <-> inverted-MNIST translator: the exact map both ways."""

    def translate(self, x, direction="a2b"):
        return 1 - x


def test_translation_evaluator_scores_the_true_map_as_its_baseline(data_root, tmp_path):
    from genlab.config import DataConfig
    from genlab.eval.options import EvalOptions
    from genlab.eval.translation import evaluate_translation

    data = DataConfig(name="mnist", domain_b="mnist-inverted", root=str(data_root))
    opts = EvalOptions(max_examples=200, n_reference=500, batch_size=100, data=data, cache_dir=str(tmp_path))
    out = evaluate_translation(_TrueInversion(), None, load_dataset("mnist", "test", data), "cpu", opts)
    for d in ("a2b", "b2a"):
        assert out[f"gt_l1_{d}"]["value"] == 0 and out[f"gt_l1_{d}_identity"]["value"] > 0.5
        assert out[f"cycle_l1_{d}"]["value"] < 1e-6  # 1 - (1 - x) in float32
        assert out[f"label_preservation_{d}"]["value"] == out[f"label_preservation_{d}_true_map"]["value"] > 90
        assert out[f"label_preservation_{d}_identity"]["value"] < 50  # the classifier reads the wrong polarity
        fid = out[f"fid_mnist-lenet-v1_{d}"]["value"]
        assert fid == pytest.approx(out[f"fid_mnist-lenet-v1_{d}_true_map"]["value"], rel=1e-6)
        assert fid < out[f"fid_mnist-lenet-v1_{d}_identity"]["value"]


def test_translate_command_writes_translations_of_user_images(tmp_path):
    from PIL import Image

    from genlab.cli import main

    train(_cyclegan_cfg(["train.steps=1"]), tmp_path / "run")
    Image.fromarray((torch.arange(64).view(8, 8) * 4).to(torch.uint8).numpy()).resize((16, 16)).save(tmp_path / "a.png")
    rc = main(["translate", str(tmp_path / "run"), str(tmp_path / "a.png"), "--direction", "b2a",
               "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert rc == 0
    assert (tmp_path / "out" / "a_b2a.png").exists() and (tmp_path / "out" / "translations_b2a.png").exists()
    assert Image.open(tmp_path / "out" / "a_b2a.png").size == (8, 8)
    assert main(["translate", str(tmp_path / "run"), str(tmp_path / "missing.png")]) == 2
    assert main(["sample", str(tmp_path / "run"), "--out", str(tmp_path / "s.png")]) == 2  # nothing to translate
    from genlab.reports.translation import translation_figures  # what `genlab report` shows of a cyclegan run
    from genlab.train.run import load_run

    import genlab

    image = torch.rand(2, 1, 8, 8)
    assert torch.equal(genlab.load(tmp_path / "run", device="cpu").translate(image, "b2a"),
                       draw(load_run(tmp_path / "run").model, 2, 0, "cpu", source=image, direction="b2a"))
    figs = translation_figures(load_run(tmp_path / "run"), tmp_path, "cpu")
    assert [f for _, f in figs] == ["translations_a2b.png", "translations_b2a.png"]


def test_translation_table_steps_take_a_count_or_each_presets_length(monkeypatch):
    import argparse
    import importlib.util

    from conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the script imports runs_common beside it
    spec = importlib.util.spec_from_file_location("translation_table", REPO / "benchmarks" / "translation_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert table.steps_arg("300") == 300 and table.steps_arg("preset") == "preset"
    for bad in ("0", "-5", "abc", "3.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive step count nor 'preset'"):
            table.steps_arg(bad)
    # 'preset' resolves per pair: grey <-> colour needs its 4,000 steps, the others train 800.
    assert table.pair_steps("colour", "preset") == 4000 and table.pair_steps("inverted", "preset") == 800
    assert table.pair_steps("colour", 300) == 300
