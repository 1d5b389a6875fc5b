"""Self-supervised encoders and the probe protocol: pretext labels, losses against their formulas, MoCo / DINO
state across save and resume, and probes that must reach 100 % on features that are the labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genlab.config import DataConfig, RunConfig, apply_overrides
from genlab.data import load_dataset
from genlab.eval.probe import (ALL, ProbeOptions, knn_accuracy, labelled_subset, linear_probe_accuracy,
                               probe_dataset)
from genlab.eval.representations import floor, pooled
from genlab.nn.ssl import (ViewsConfig, permutation_set, random_square_masks, random_view, rotations, shuffle_tiles,
                           tiles_of)
from genlab.objectives.self_supervised import dino_loss, info_nce, nt_xent
from genlab.rng import make_generators
from genlab.train.checkpoint import load_latest
from genlab.train.loop import train


def _images(n=3, c=1, h=9, w=9, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


# ---- pretext labels ----

def test_rotation_labels_name_the_quarter_turn():
    x = _images(h=6, w=6)
    turned, labels = rotations(x)
    assert turned.shape == (12, 1, 6, 6) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for row in range(12):
        k, i = int(labels[row]), row % 3
        assert torch.equal(torch.rot90(turned[row], -k, (1, 2)), x[i])  # turning back by k gives the image
    # k = 1 is a counter-clockwise quarter turn: the top-right corner goes to the top-left.
    assert turned[3, 0, 0, 0] == x[0, 0, 0, -1]


def test_jigsaw_permutations_are_distinct_and_their_labels_undo_the_shuffle():
    perms = permutation_set(10, 9, seed=0)
    assert perms.shape == (10, 9) and torch.equal(perms[0], torch.arange(9))
    assert len({tuple(p.tolist()) for p in perms}) == 10
    assert all(sorted(p.tolist()) == list(range(9)) for p in perms)
    distance = (perms[:, None] != perms[None]).sum(-1) + 9 * torch.eye(10, dtype=torch.long)
    assert distance.min() >= 6  # chosen far apart, not merely distinct
    x = _images(n=4, h=10, w=10)  # a 9 x 9 centre crop in 3 x 3 tiles
    tiles = tiles_of(x, 3)
    assert tiles.shape == (4, 9, 1, 3, 3) and torch.equal(tiles[:, 4], x[:, :, 3:6, 3:6].reshape(4, 1, 3, 3))
    labels = torch.tensor([0, 3, 7, 9])
    shuffled = shuffle_tiles(tiles, perms, labels)
    for i, p in enumerate(labels.tolist()):
        for pos in range(9):  # position pos holds tile perms[p, pos]
            assert torch.equal(shuffled[i, pos], tiles[i, perms[p, pos]])
        assert torch.equal(shuffled[i, perms[p].argsort()], tiles[i])  # the label's inverse restores the image
    assert torch.equal(shuffled[0], tiles[0])  # label 0 is the identity


def test_masks_are_one_square_each_drawn_per_image():
    shape = (5, 1, 12, 10)
    masks = random_square_masks(shape, 4, make_generators(3, 5))
    assert masks.shape == (5, 1, 12, 10)
    for m in masks[:, 0]:
        rows, cols = m.nonzero(as_tuple=True)
        assert m.sum() == 16 and rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3
    alone = random_square_masks((1, 1, 12, 10), 4, make_generators(3, 1, start=2))
    assert torch.equal(alone[0], masks[2])  # image 2's hole depends on its generator, not on the batch


def test_views_are_per_image_and_stay_in_range():
    x = _images(n=4, h=12, w=12)
    cfg = ViewsConfig()
    views = random_view(x, make_generators(0, 4), cfg)
    assert views.shape == x.shape and views.min() >= 0 and views.max() <= 1
    one = random_view(x[2:3], make_generators(0, 1, start=2), cfg)
    torch.testing.assert_close(one[0], views[2], rtol=0, atol=1e-6)


# ---- losses against their formulas ----

def test_nt_xent_is_the_simclr_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2, tau = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g), 0.7
    u = [v / v.norm() for v in torch.cat([z1, z2])]
    per_anchor = []
    for i in range(6):
        partner = (i + 3) % 6
        denominator = sum(math.exp(float(u[i] @ u[k]) / tau) for k in range(6) if k != i)
        per_anchor.append(-math.log(math.exp(float(u[i] @ u[partner]) / tau) / denominator))
    expected = [(per_anchor[i] + per_anchor[i + 3]) / 2 for i in range(3)]
    torch.testing.assert_close(nt_xent(z1, z2, tau), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_info_nce_is_the_moco_formula():
    g = torch.Generator().manual_seed(1)
    q, k, queue, tau = (torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g),
                        torch.randn(5, 4, generator=g), 0.2)
    unit = lambda v: v / v.norm()  # noqa: E731
    expected = []
    for i in range(2):
        pos = math.exp(float(unit(q[i]) @ unit(k[i])) / tau)
        neg = sum(math.exp(float(unit(q[i]) @ unit(n)) / tau) for n in queue)
        expected.append(-math.log(pos / (pos + neg)))
    torch.testing.assert_close(info_nce(q, k, queue, tau), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_dino_loss_is_cross_entropy_between_different_views():
    g = torch.Generator().manual_seed(2)
    teacher = [torch.randn(2, 3, generator=g) for _ in range(2)]
    student = [torch.randn(2, 3, generator=g) for _ in range(3)]  # two global views, then one local
    center, ts, tt = torch.tensor([0.1, -0.2, 0.3]), 0.1, 0.04
    expected = torch.zeros(2)
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # (teacher view, student view), never the same view
    for t, s in pairs:
        p = torch.exp((teacher[t] - center) / tt)
        p = p / p.sum(1, keepdim=True)
        log_q = torch.log(torch.exp(student[s] / ts) / torch.exp(student[s] / ts).sum(1, keepdim=True))
        expected += -(p * log_q).sum(1) / len(pairs)
    torch.testing.assert_close(dino_loss(student, teacher, center, ts, tt), expected, rtol=1e-5, atol=1e-5)


# ---- MoCo's queue and momentum encoder, DINO's centre and teacher: saved and resumed exactly ----

TINY_SSL = ["data.name=digits", "model.width=4", "train.batch_size=16", "train.log_every=1", "train.progress=false",
            "train.device=cpu", "train.steps=4", "train.ckpt_every=2"]


@pytest.mark.parametrize("model, extra", [("moco", ["model.projection=8", "objective.queue_size=24"]),
                                          ("dino", ["model.prototypes=16", "model.bottleneck=8",
                                                    "objective.local_crops=1"])])
def test_momentum_state_survives_save_and_resume_bit_exactly(model, extra, tmp_path):
    cfg = lambda: apply_overrides(RunConfig.create(model), TINY_SSL + extra)  # noqa: E731
    train(cfg(), tmp_path / "full")
    train(cfg(), tmp_path / "part", until_step=2)
    train(None, tmp_path / "part", resume=True)
    full, part = load_latest(tmp_path / "full"), load_latest(tmp_path / "part")
    assert full["state"]["step"] == part["state"]["step"] == 4
    for key in ("model", "objective", "optim"):
        assert full[key].keys() == part[key].keys() and full[key]
        for name in full[key]:
            assert torch.equal(full[key][name], part[key][name]), f"{key}/{name} differs after resuming"
    teacher = "momentum" if model == "moco" else "teacher"
    moved = [n for n in full["model"] if n.startswith(f"{teacher}.backbone.") and n.endswith("weight")]
    student = {n: full["model"][n.removeprefix(teacher + ".")] for n in moved}
    assert moved and any(not torch.equal(full["model"][n], student[n]) for n in moved)  # a lagging average
    state = {k.removeprefix("objective/"): v for k, v in full["objective"].items()}
    if model == "moco":  # 4 steps of 16 keys went through a queue of 24: the pointer wrapped to 64 % 24
        assert state["queue"].shape == (24, 8) and int(state["ptr"]) == 64 % 24
        torch.testing.assert_close(state["queue"].norm(dim=1), torch.ones(24))
    else:
        assert state["center"].shape == (16,) and state["center"].abs().sum() > 0


# ---- the probe protocol ----

def test_labelled_subsets_are_per_class_seeded_and_nested():
    labels = torch.arange(300) % 3
    small, large = labelled_subset(labels, 5, seed=1), labelled_subset(labels, 20, seed=1)
    assert torch.bincount(labels[small]).tolist() == [5, 5, 5]
    assert set(small.tolist()) <= set(large.tolist())  # more labels extend fewer
    assert not torch.equal(small, labelled_subset(labels, 5, seed=2))
    assert labelled_subset(labels, ALL, seed=0).numel() == 300


def test_probes_on_features_that_are_the_labels_reach_100_percent():
    g = np.random.default_rng(0)
    train_y, test_y = g.integers(0, 10, 200), g.integers(0, 10, 100)
    one_hot = np.eye(10)
    assert linear_probe_accuracy(one_hot[train_y], train_y, one_hot[test_y], test_y) == 1.0
    assert knn_accuracy(one_hot[train_y], train_y, one_hot[test_y], test_y, k=20) == 1.0
    # Constant noise on the unused features changes nothing: standardisation and cosine leave the labels.
    noisy = lambda y: np.concatenate([one_hot[y], np.ones((len(y), 3))], 1)  # noqa: E731
    assert knn_accuracy(noisy(train_y), train_y, noisy(test_y), test_y) == 1.0


def test_untrained_and_pixel_floors_run_the_protocol():
    cfg = DataConfig(name="digits")
    train_set, test_set = load_dataset("digits", "train", cfg), load_dataset("digits", "test", cfg)
    opts = ProbeOptions(labels_per_class=(5, ALL), seeds=2, test_examples=120, batch_size=64)
    for name in ("untrained", "pixels"):
        records = probe_dataset(floor(name, 1, seed=0), train_set, test_set, opts, "cpu", log=lambda line: None)
        assert [(r["labels_per_class"], r["probe"]) for r in records] == [
            (5, "linear"), (5, "knn"), ("all", "linear"), ("all", "knn")]
        assert all(0.3 < r["mean"] <= 1 and r["n_test"] == 120 for r in records)  # well above chance (0.1)
        assert len(records[0]["accuracy"]) == 2 and len(records[2]["accuracy"]) == 1  # 'all' is one fit


def test_feature_maps_are_pooled_to_a_small_grid():
    assert pooled(torch.zeros(2, 64, 28, 28)).shape == (2, 64 * 16)
    assert pooled(torch.zeros(2, 256, 28, 28)).shape == (2, 256 * 4)
    assert pooled(torch.zeros(2, 7, 5)).shape == (2, 5) and pooled(torch.zeros(2, 9)).shape == (2, 9)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(pooled(x), x.flatten(1))  # a map no larger than the grid is kept as is
    assert F.adaptive_avg_pool2d(x, 2).flatten(1).tolist() == pooled(torch.cat([x] * 256, 1))[:, :4].tolist()


def test_probe_table_merges_a_runs_files_ranks_rows_and_refuses_mixed_protocols(tmp_path, capsys):
    import importlib.util
    import json

    from conftest import REPO
    from genlab.eval.probe import run_probe

    spec = importlib.util.spec_from_file_location("probe_table", REPO / "benchmarks" / "probe_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    cfg = DataConfig(name="digits")

    def probe(name, labels, test_examples=120):
        opts = ProbeOptions(labels_per_class=labels, seeds=2, test_examples=test_examples, batch_size=64)
        path = tmp_path / f"{name}-{'-'.join(map(str, labels))}-{test_examples}.json"
        path.write_text(json.dumps(run_probe(floor(name, 1, seed=0), ["digits"], cfg, opts, "cpu", log=lambda s: None)))
        return path

    pixels_few, pixels_all, untrained = probe("pixels", (5,)), probe("pixels", (ALL,)), probe("untrained", (5, ALL))
    table.main([f"pixels={pixels_few}", f"pixels={pixels_all}", f"untrained={untrained}", "--rank", "linear@all"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| pixels") or line.startswith("| untrained")]
    records = {p: json.loads(p.read_text())["results"] for p in (pixels_few, pixels_all, untrained)}
    lin_all = {"pixels": records[pixels_all][0]["mean"], "untrained": records[untrained][2]["mean"]}
    assert [r.split(" |")[0][2:] for r in rows] == sorted(lin_all, key=lin_all.get, reverse=True)
    pixel_row = next(r for r in rows if r.startswith("| pixels"))
    assert pixel_row.count(" +- ") == 2 and "-" not in pixel_row.replace(" +- ", "").replace("| pixels", "")
    assert f"{100 * records[pixels_few][0]['mean']:.2f} +- {100 * records[pixels_few][0]['std']:.2f}" in pixel_row
    # Files of the same run agree where they overlap; a disagreement or another test split is refused.
    other = json.loads(pixels_few.read_text())
    other["results"][0]["mean"] += 0.01
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="disagree"):
        table.main([f"pixels={pixels_few}", f"pixels={tmp_path / 'other.json'}"])
    (tmp_path / "not_probe.json").write_text(json.dumps({"results": [{"data": "digits"}]}))
    with pytest.raises(SystemExit, match="not a probe.json written by `genlab probe`"):
        table.main([f"pixels={tmp_path / 'not_probe.json'}"])
    with pytest.raises(SystemExit, match="different probe protocols"):
        table.main([f"pixels={pixels_few}", f"untrained={probe('untrained', (5,), test_examples=100)}"])
