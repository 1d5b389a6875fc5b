"""Sample-quality metrics, memorization and the comparison report.

Layers: closed forms and hand-computed examples on tiny feature sets (no data); the
evaluator's plumbing with a stand-in sampler; behaviour on a few hundred real MNIST
images in the shipped mnist-lenet-v1 feature space.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy import linalg

from genlab.card import ConditioningSpec, ModelCard, SamplerSpec
from genlab.config import DataConfig
from genlab.data import load_dataset
from genlab.data.base import ImageSet
from genlab.eval import sample_metrics as sm
from genlab.eval.feature_nets import LeNet, LeNetConfig
from genlab.eval.features import FeatureNet, load_feature_net
from genlab.eval.memorization import (COPYING_Z, copy_statistics, data_copying_test, mann_whitney_z, memorization,
                                      nearest_neighbours)
from genlab.nn.spec import DataSpec
from genlab.registry import SAMPLERS
from genlab.reports.compare import compare_runs, metric_table
from genlab.stats import standard_error


# ----------------------------------------------------------------------------------------------
# FID


def test_frechet_distance_equals_closed_form_for_commuting_covariances():
    # Diagonal covariances commute: FID = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()  # 7.25 + 4 + 1 + 0
    assert sm.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(float(expected), abs=1e-10)


def test_frechet_distance_matches_sqrtm_formula_for_general_covariances():
    g = torch.Generator().manual_seed(0)
    d = 6
    a_ = torch.randn(d, d, generator=g, dtype=torch.float64)
    b_ = torch.randn(d, d, generator=g, dtype=torch.float64)
    s1, s2 = a_ @ a_.T + 0.1 * torch.eye(d, dtype=torch.float64), b_ @ b_.T
    mu1, mu2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    cross = linalg.sqrtm(s1.numpy() @ s2.numpy())
    expected = float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * np.trace(cross).real)
    assert sm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert sm.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    assert sm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(sm.frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_frechet_distance_handles_singular_covariances():
    # Rank-1 covariances (more dimensions than samples, dead units): still the exact value.
    v = torch.tensor([[1.0], [2.0], [0.0]], dtype=torch.float64)
    s1, s2 = v @ v.T, 4 * v @ v.T  # same direction: tr sqrt(S1 S2) = 2 |v|^2 = 10
    assert sm.frechet_distance(torch.zeros(3), s1, torch.zeros(3), s2) == pytest.approx(5 + 20 - 2 * 10, abs=1e-9)


def test_fid_of_gaussian_samples_approaches_the_closed_form():
    g = torch.Generator().manual_seed(1)
    n = 100_000
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, 0.0])
    expected = 1.0 + (1 - 2) ** 2 + (1 - 0.5) ** 2  # 2.25
    assert sm.fid(x, y) == pytest.approx(expected, abs=0.03)
    mu, sigma = sm.gaussian_stats(y)
    assert torch.allclose(sigma, torch.from_numpy(np.cov(y.numpy().T)), atol=1e-12)  # unbiased (N - 1)


def test_fid_rejects_mismatched_features():
    with pytest.raises(ValueError, match="dimensions differ"):
        sm.fid(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="at least 2"):
        sm.fid(torch.zeros(1, 3), torch.zeros(5, 3))


# ----------------------------------------------------------------------------------------------
# KID


def _expected_cubic_kernel(a: float, b: float) -> float:
    """E (x y + 1)^3 for independent x ~ N(a, 1), y ~ N(b, 1) (1-D, so gamma = 1/D = 1)."""
    return (a**3 + 3 * a) * (b**3 + 3 * b) + 3 * (1 + a * a) * (1 + b * b) + 3 * a * b + 1


def test_kid_is_unbiased_for_the_population_mmd():
    a, b, m, reps = 0.0, 0.5, 10, 3000
    true = _expected_cubic_kernel(a, a) + _expected_cubic_kernel(b, b) - 2 * _expected_cubic_kernel(a, b)  # 3.578
    g = torch.Generator().manual_seed(0)
    x = torch.randn(reps, m, 1, generator=g, dtype=torch.float64) + a
    y = torch.randn(reps, m, 1, generator=g, dtype=torch.float64) + b
    est = torch.tensor([sm.kid(x[r], y[r], subsets=1, subset_size=m)[0] for r in range(reps)])
    se = standard_error(est)
    assert abs(est.mean().item() - true) < 4 * se
    # The biased (V-statistic) estimate would be off by ~(E k(x,x) - E k(x,x'))*2/m = 4.8 here.
    assert 4 * se < 2.0


def test_kid_of_identical_distributions_is_near_zero_and_of_shifted_is_not():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2000, 8, generator=g)
    y = torch.randn(2000, 8, generator=g)
    same, same_std = sm.kid(x, y, subsets=50, subset_size=500, seed=0)
    itself, _ = sm.kid(x, x, subsets=50, subset_size=500, seed=0)
    shifted, _ = sm.kid(x, y + 0.5, subsets=50, subset_size=500, seed=0)
    assert abs(same) < 3 * same_std / math.sqrt(50) + 1e-3
    # Subsets of one set share ~1/4 of their points, whose k(x, x) terms enlarge the cross
    # term: slightly negative (~ -2 * 125 * (E k(x,x) - E k(x,x')) / 500^2 = -0.008 here).
    assert -0.02 < itself <= 0
    assert shifted > 50 * max(abs(same), abs(itself))


def test_kid_is_reproducible_for_a_seed():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(300, 4, generator=g), torch.randn(300, 4, generator=g) + 0.2
    assert sm.kid(x, y, 20, 100, seed=5) == sm.kid(x, y, 20, 100, seed=5)
    assert sm.kid(x, y, 20, 100, seed=5) != sm.kid(x, y, 20, 100, seed=6)


# ----------------------------------------------------------------------------------------------
# Precision / recall, density / coverage: hand-computed on 1-D features

REAL_1D = torch.tensor([[0.0], [1.0], [3.0], [6.0], [7.0]])
FAKE_1D = torch.tensor([[0.5], [4.0], [10.0]])
# k = 1: real radii 1, 1, 2, 1, 1 -> balls [-1,1] [0,2] [1,5] [5,7] [6,8].
#   0.5 lies in 2 balls, 4 in 1, 10 in none; the balls of 0, 1, 3 hold a sample, those of 6, 7 none.
# Fake radii (k = 1 among fakes): 3.5, 3.5, 6 -> balls [-3,4] [0.5,7.5] [4,16] hold every real point.


def test_precision_recall_on_a_hand_computed_example():
    precision, recall = sm.precision_recall(REAL_1D, FAKE_1D, k=1)
    assert precision == pytest.approx(2 / 3)
    assert recall == pytest.approx(1.0)


def test_density_coverage_on_a_hand_computed_example():
    density, coverage = sm.density_coverage(REAL_1D, FAKE_1D, k=1)
    assert density == pytest.approx((2 + 1 + 0) / (1 * 3))
    assert coverage == pytest.approx(3 / 5)


def test_density_coverage_use_open_balls_as_the_reference_on_ties():
    # Naeem et al.'s code (prdc) counts d < r. With duplicated real points (radius 0) and a sample
    # on them, closed balls (d <= r) would count the sample in every duplicate's empty ball.
    real = torch.tensor([[0.0], [0.0], [1.0], [3.0]])  # k = 1 radii: 0, 0, 1, 2
    fake = torch.tensor([[0.0], [2.0]])
    # Brute force of the reference formulas: sample 0.0 lies on the boundary of the balls of 0, 0
    # and 1, so it is in none; 2.0 is in the ball [1, 5) of 3. Only 3's ball holds a sample.
    d = torch.cdist(real, fake)
    radii = torch.tensor([0.0, 0.0, 1.0, 2.0])
    density_ref = (d < radii[:, None]).sum(0).double().mean().item() / 1
    coverage_ref = (d.min(1).values < radii).double().mean().item()
    assert (density_ref, coverage_ref) == (0.5, 0.25)
    assert sm.density_coverage(real, fake, k=1) == pytest.approx((density_ref, coverage_ref))
    # Mode collapse onto a duplicated real point: no density, as in the reference.
    collapsed = sm.density_coverage(torch.tensor([[0.0]] * 6 + [[4.0], [9.0]]), torch.zeros(10, 1), k=5)
    assert collapsed == (0.0, 0.0)


def test_knn_radii_excludes_the_point_itself_and_keeps_duplicates():
    f = torch.tensor([[0.0], [0.0], [2.0], [5.0]])
    assert sm.knn_radii(f, 1).tolist() == [0.0, 0.0, 2.0, 3.0]
    assert sm.knn_radii(f, 2).tolist() == [2.0, 2.0, 2.0, 5.0]
    with pytest.raises(ValueError, match="k \\+ 1"):
        sm.knn_radii(f, 4)


def test_knn_metrics_do_not_depend_on_the_distance_chunk(monkeypatch):
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(300, 5, generator=g), torch.randn(200, 5, generator=g) * 1.3
    full = sm.precision_recall(real, fake), sm.density_coverage(real, fake)
    monkeypatch.setattr(sm, "DISTANCE_CHUNK", 7)
    assert (sm.precision_recall(real, fake), sm.density_coverage(real, fake)) == full


def test_density_and_coverage_of_a_sample_from_the_same_distribution():
    # Naeem et al. (Sec. 3.2): for identical distributions E[density] = 1 and coverage -> 1 - 2^-k.
    g = torch.Generator().manual_seed(5)
    real, fake = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g)
    density, coverage = sm.density_coverage(real, fake, k=5)
    assert density == pytest.approx(1.0, abs=0.06)
    assert coverage == pytest.approx(1 - 2**-5, abs=0.03)


# ----------------------------------------------------------------------------------------------
# Classifier score


def test_classifier_score_bounds():
    k = 10
    confident_balanced = 50 * torch.eye(k).repeat(20, 1)  # 200 samples, every class 20 times
    assert sm.classifier_score(confident_balanced)[0] == pytest.approx(k, rel=1e-6)
    one_class = torch.zeros(200, k)
    one_class[:, 3] = 50
    assert sm.classifier_score(one_class)[0] == pytest.approx(1.0, abs=1e-6)
    assert sm.classifier_score(torch.zeros(200, k))[0] == pytest.approx(1.0, abs=1e-9)  # p(y|x) uniform
    assert sm.label_accuracy(confident_balanced, torch.arange(200) % k) == 100.0


# ----------------------------------------------------------------------------------------------
# Reference cache and the evaluator, with a random (untrained) stand-in network


def _random_net(seed: int = 0) -> FeatureNet:
    torch.manual_seed(seed)
    net = LeNet(LeNetConfig(conv1=4, conv2=8, hidden=16)).eval()
    return FeatureNet("toy-lenet", net, 16, 10, (1, 28, 28), "toy features", f"sha{seed}", "mnist")


def _imageset(n: int, seed: int = 0, name: str = "mnist") -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    return ImageSet(name, "test", images, torch.arange(n) % 10, DataSpec(1, 28, 28, 8, 10), "scale")


def test_reference_stats_are_cached_by_a_key_of_everything_they_depend_on(tmp_path):
    net, data = _random_net(), _imageset(50)
    ref = sm.reference_stats(net, data, n=40, seed=0, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and ref.n == 40
    again = sm.reference_stats(net, data, n=40, seed=0, cache_dir=tmp_path)
    assert torch.equal(again.features, ref.features) and again.key == ref.key and len(list(tmp_path.iterdir())) == 1
    mu, sigma = sm.gaussian_stats(ref.features)
    assert torch.equal(mu, ref.mu) and torch.equal(sigma, ref.sigma)
    keys = {ref.key, sm.reference_stats(net, data, n=30, cache_dir=tmp_path).key,
            sm.reference_stats(net, data, n=40, seed=1, cache_dir=tmp_path).key,
            sm.reference_stats(_random_net(1), data, n=40, cache_dir=tmp_path).key,
            sm.reference_stats(net, _imageset(50, seed=9), n=40, cache_dir=tmp_path).key}
    assert len(keys) == 5
    # A corrupt cache file is recomputed, not trusted.
    files[0].write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable reference cache"):
        fixed = sm.reference_stats(net, data, n=40, seed=0, cache_dir=tmp_path)
    assert torch.equal(fixed.features, ref.features)


class _Toy(torch.nn.Module):
    """A 'model' whose sampler draws smooth random images, one generator per sample."""

    card = ModelCard(family="adversarial", default_objective="gan", samplers=(SamplerSpec("test-sample-quality-toy"),),
                     conditioning=ConditioningSpec(class_label="yes"))

    def __init__(self, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.data = DataSpec(1, 28, 28, 8, num_classes)  # conditioning(model) reads the classes here
        self.seen_labels = []


@SAMPLERS.register("test-sample-quality-toy")
def _toy_sampler(model, n, generators, device, label=None, **_):
    assert len(generators) == n
    if model.num_classes:
        assert label is not None and len(label) == n
        model.seen_labels.append(label.clone())
    elif label is not None:
        raise ValueError("unconditional")
    z = torch.stack([torch.rand(1, 7, 7, generator=g) for g in generators])
    return torch.nn.functional.interpolate(z, size=28, mode="bilinear", align_corners=False)


class _Opts:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_evaluator_gives_identical_records_whatever_the_batch_size(tmp_path):
    test = _imageset(120)
    common = dict(n_samples=50, seed=3, n_reference=100, cache_dir=tmp_path)
    a = sm.evaluate_sample_quality(_Toy(), None, test, "cpu", _Opts(batch_size=7, **common))
    b = sm.evaluate_sample_quality(_Toy(), None, test, "cpu", _Opts(batch_size=50, **common))
    c = sm.evaluate_sample_quality(_Toy(), None, test, "cpu", _Opts(batch_size=50, **{**common, "seed": 4}))
    assert a == b
    assert a["fid_mnist-lenet-v1"]["value"] != c["fid_mnist-lenet-v1"]["value"]
    names = {"fid", "kid", "precision", "recall", "density", "coverage", "is"}
    assert set(a) == {f"{m}_mnist-lenet-v1" for m in names}
    rec = a["fid_mnist-lenet-v1"]
    assert rec["kind"] == "estimate" and rec["n_real"] == 100 and rec["n_generated"] == 50 and rec["seed"] == 3
    for text in ("mnist-lenet-v1", "mnist/test", "100 real images", "50 generated samples", "seed 3"):
        assert text in rec["protocol"]
    assert a["precision_mnist-lenet-v1"]["k"] == 3 and a["coverage_mnist-lenet-v1"]["k"] == 5


def test_evaluator_conditions_a_class_conditional_model_on_balanced_labels(tmp_path):
    model = _Toy(num_classes=10)
    out = sm.evaluate_sample_quality(model, None, _imageset(120), "cpu",
                                     _Opts(n_samples=30, batch_size=8, n_reference=100, cache_dir=tmp_path))
    assert torch.equal(torch.cat(model.seen_labels), torch.arange(30) % 10)
    acc = out["label_accuracy_mnist-lenet-v1"]
    assert acc["unit"] == "%" and 0 <= acc["value"] <= 100


def test_vae_sample_metrics_judge_samples_from_the_likelihood_unless_asked_for_means(tmp_path):
    from genlab.eval.options import EvalOptions
    from genlab.models.latent.vae import VAE

    torch.manual_seed(0)
    vae = VAE(VAE.Config(latent_dim=4, channels=(4,), hidden=16), DataSpec(1, 28, 28, bits=1, num_classes=10)).eval()
    binary = ImageSet("binarized-mnist", "test", (torch.rand(60, 1, 28, 28) < 0.2).to(torch.uint8), None,
                      DataSpec(1, 28, 28, bits=1), "binary")
    opts = EvalOptions(n_samples=24, batch_size=10, n_reference=50, cache_dir=str(tmp_path))
    images, _, note = sm.model_samples(vae, "cpu", opts)
    assert set(images.unique().tolist()) == {0.0, 1.0}  # binary data, binary samples
    assert "pixels drawn from the likelihood p(x|z)" in note
    means, _, mean_note = sm.model_samples(vae, "cpu", dataclasses.replace(opts, sample_output="mean"))
    assert ((means > 0) & (means < 1)).float().mean() > 0.9  # grey decoder means
    assert "decoder means E[x|z], not samples" in mean_note
    records = sm.evaluate_sample_quality(vae, None, binary, "cpu", opts)
    assert "pixels drawn from the likelihood" in records["fid_mnist-lenet-v1"]["protocol"]
    with pytest.raises(ValueError, match="sample_output"):
        sm.model_samples(vae, "cpu", dataclasses.replace(opts, sample_output="mode"))


def test_evaluator_skips_with_a_reason_when_the_dataset_has_no_feature_network(tmp_path):
    with pytest.warns(UserWarning, match="no domain feature network"):
        out = sm.evaluate_sample_quality(_Toy(), None, _imageset(20, name="digits"), "cpu",
                                         _Opts(n_samples=10, cache_dir=tmp_path))
    assert out == {}


# ----------------------------------------------------------------------------------------------
# Memorization


def test_nearest_neighbours_matches_brute_force_with_any_chunking():
    g = torch.Generator().manual_seed(6)
    q, r = torch.randn(37, 5, generator=g), torch.randn(53, 5, generator=g)
    brute = torch.cdist(q.double(), r.double())
    d, i = nearest_neighbours(q, r, query_chunk=6, reference_chunk=11)
    assert torch.equal(i, brute.argmin(1))
    assert torch.allclose(d.double(), brute.min(1).values, atol=1e-5)
    d2, i2 = nearest_neighbours(q, r)
    assert torch.equal(i2, i)


def test_copy_statistics_threshold_is_the_test_percentile():
    test_d = torch.arange(1, 101, dtype=torch.float32)  # 1st percentile = 1.99
    stats = copy_statistics(torch.tensor([0.5, 1.5, 2.5, 50.0]), test_d)
    assert stats["threshold"] == pytest.approx(1.99)
    assert stats["fraction_below"] == pytest.approx(0.5)
    assert stats["median_test"] == pytest.approx(50.0)


def test_memorization_flags_copies_and_not_fresh_images(tmp_path):
    net = _random_net()
    train, test = _imageset(300, seed=1), _imageset(200, seed=2)
    copies = train.images[:40].float() / 255
    fresh = _imageset(40, seed=3).images.float() / 255
    out = memorization(copies, train, test, net, figure=tmp_path / "nn.png", figure_count=5)
    assert out["data_copying_ct_pixels"]["copying"] and out["data_copying_ct_toy-lenet"]["copying"]
    assert out["copy_fraction_pixels"]["value"] == 1.0
    assert out["copy_fraction_toy-lenet"]["value"] == 1.0
    assert out["nn_train_median_pixels"]["value"] < 0.05  # float32 cdist round-off only
    assert (tmp_path / "nn.png").stat().st_size > 1000
    novel = memorization(fresh, train, test, net)
    assert not novel["data_copying_ct_pixels"]["copying"]
    assert novel["copy_fraction_pixels"]["value"] <= 0.1
    assert novel["nn_train_median_pixels"]["value"] == pytest.approx(novel["nn_train_median_test_pixels"]["value"],
                                                                    rel=0.05)


def test_mann_whitney_z_matches_scipy_with_ties():
    from scipy.stats import mannwhitneyu, norm

    g = np.random.default_rng(0)
    test_d = g.integers(0, 6, 70).astype(float)  # discrete distances: many ties
    sample_d = g.integers(0, 5, 50).astype(float)
    p = mannwhitneyu(sample_d, test_d, alternative="less", method="asymptotic", use_continuity=False).pvalue
    assert mann_whitney_z(test_d, sample_d) == pytest.approx(norm.ppf(p), rel=1e-9)
    assert mann_whitney_z(np.ones(5), np.ones(7)) == 0.0


def test_data_copying_test_flags_copies_of_the_training_points_and_not_new_points():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 2, generator=g) * 10  # six clusters, so the cells matter
    draw = lambda n: centres[torch.randint(0, 6, (n,), generator=g)] + torch.randn(n, 2, generator=g)  # noqa: E731
    train, test, new = draw(2000), draw(600), draw(600)
    copies = train[torch.randint(0, 2000, (600,), generator=g)] + 0.05 * torch.randn(600, 2, generator=g)
    copied = data_copying_test(train, test, copies, cells=6)
    assert copied["ct"] < COPYING_Z and copied["cells_used"] == 6
    assert abs(data_copying_test(train, test, new, cells=6)["ct"]) < 2.5  # a z-score under H0
    far = data_copying_test(train, test, new * 1.5, cells=6)["ct"]
    assert far > 3  # samples farther from the training set than new data: underfitting


def test_perfect_memorizer_of_dynamic_mnist_is_flagged_and_held_out_digits_are_not(data_root):
    # A model that outputs fresh binarizations of training digits copies them, although it is no closer
    # to one seeded binarization of the training set than a test image is. Compared with the intensities
    # the model trained on, and judged by the whole distribution of distances, it is caught.
    cfg = DataConfig(name="dynamic-binarized-mnist", root=str(data_root))
    full_train = load_dataset("dynamic-binarized-mnist", "train", cfg)
    full_test = load_dataset("dynamic-binarized-mnist", "test", cfg)
    g = torch.Generator().manual_seed(1)
    pick = torch.randperm(len(full_train), generator=g)[:3000]
    train = ImageSet(full_train.name, "train", full_train.images[pick], None, full_train.spec, "bernoulli")
    order = torch.randperm(len(full_test), generator=g)
    test = ImageSet(full_test.name, "test", full_test.images[order[:1000]], None, full_test.spec, "binary")
    memorizer = torch.bernoulli(train.images[torch.randint(0, 3000, (1000,), generator=g)].float() / 255,
                                generator=g)
    held_out = full_test.images[order[1000:2000]].float()  # new digits from the same distribution
    copied = memorization(memorizer, train, test)
    assert copied["data_copying_ct_pixels"]["copying"] and copied["data_copying_ct_pixels"]["value"] < -5
    assert "intensities k/255" in copied["data_copying_ct_pixels"]["protocol"]
    fresh = memorization(held_out, train, test)
    assert not fresh["data_copying_ct_pixels"]["copying"] and abs(fresh["data_copying_ct_pixels"]["value"]) < 2.5
    assert fresh["copy_fraction_pixels"]["value"] < 0.03 < copied["copy_fraction_pixels"]["value"]


# ----------------------------------------------------------------------------------------------
# Comparison report


def _fake_run(folder, records: dict, curve: list[float], samples: bool):
    folder.mkdir()
    (folder / "eval.json").write_text(json.dumps({"run": {}, "metrics": records}))
    (folder / "metrics.jsonl").write_text("\n".join(
        json.dumps({"step": 10 * i, "train/loss": v, "note": "text"}) for i, v in enumerate(curve)) + "\n")
    if samples:
        from genlab.reports.images import save_grid

        save_grid(torch.rand(4, 1, 8, 8), folder / "samples.png")


def test_compare_runs_writes_a_table_of_every_metric_with_kind_and_unit(tmp_path):
    rec = lambda v, unit, kind: {"value": v, "unit": unit, "kind": kind, "protocol": f"p{kind}"}  # noqa: E731
    _fake_run(tmp_path / "vae", {"nll": rec(85.1, "nats/image", "bound"), "fid_x": rec(3.5, "", "estimate")},
              [3.0, 2.0, 1.5], samples=True)
    _fake_run(tmp_path / "pixelcnn", {"nll": rec(81.2, "nats/image", "exact")}, [2.0, 1.0], samples=False)
    md, page = compare_runs([tmp_path / "vae", tmp_path / "pixelcnn"], tmp_path / "out" / "cmp.md")
    text = md.read_text()
    assert md.name == "cmp.md" and page.name == "cmp.html"
    assert "| fid_x |  | estimate | 3.5000 | - |" in text
    # The NLL is a bound for one run and exact for the other: each cell says which.
    assert "85.1000 nats/image (bound)" in text and "81.2000 nats/image (exact)" in text and "mixed" in text
    assert "(tmp" not in text and "![vae](../vae/samples.png)" in text and "No samples.png in: pixelcnn" in text
    assert (tmp_path / "out" / "cmp_curves.png").exists()
    html_text = page.read_text()
    assert "data:image/png;base64," in html_text and "title='pbound'" in html_text


def test_metric_table_reads_top_level_eval_dicts(tmp_path):
    header, rows, notes = metric_table({"a": {"m": {"value": 1.0, "unit": "u", "kind": "exact", "protocol": "x"}},
                                        "b": {}})
    assert header == ["metric", "unit", "kind", "a", "b"] and rows == [["m", "u", "exact", "1.0000", "-"]]
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        compare_runs([tmp_path / "nope"], tmp_path / "x")


# ----------------------------------------------------------------------------------------------
# Real MNIST in the shipped feature space


@pytest.fixture(scope="module")
def mnist_features(data_root):
    from genlab.config import DataConfig
    from genlab.data import load_dataset

    cfg = DataConfig(root=str(data_root))
    train, test = load_dataset("mnist", "train", cfg), load_dataset("mnist", "test", cfg)
    g = torch.Generator().manual_seed(0)
    train_x = train.batch(torch.randperm(len(train), generator=g)[:1000])["x"]
    idx = torch.randperm(len(test), generator=g)[:400]
    net = load_feature_net("mnist-lenet-v1")
    ref = sm.extract(net, train_x)
    return net, ref.features, test.batch(idx)["x"], test.labels[idx]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, 1, -1)
    x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (radius, radius, 0, 0), mode="reflect"), k)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 0, radius, radius), mode="reflect"),
                                      k.transpose(2, 3))


def test_fid_and_kid_grow_with_corruption_of_real_images(mnist_features):
    net, real, test_x, _ = mnist_features
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(test_x.shape, generator=g)

    def scores(x):
        f = sm.extract(net, x).features
        return sm.fid(real, f), sm.kid(real, f, subsets=20, subset_size=400, seed=0)[0]

    clean = scores(test_x)
    pure_noise = scores(torch.rand(test_x.shape, generator=g))
    assert pure_noise[0] > 20 * clean[0] and pure_noise[1] > 20 * max(clean[1], 1e-3)
    noisy = [scores((test_x + s * noise).clamp(0, 1)) for s in (0.1, 0.25, 0.5)]
    blurred = [scores(_blur(test_x, s)) for s in (0.5, 1.0, 2.0)]
    for series in (noisy, blurred):
        fids, kids = [clean[0]] + [s[0] for s in series], [clean[1]] + [s[1] for s in series]
        assert all(a < b for a, b in zip(fids, fids[1:])), fids
        assert all(a < b for a, b in zip(kids, kids[1:])), kids


def test_precision_drops_for_noise_and_recall_for_a_collapsed_model(mnist_features):
    net, real, test_x, labels = mnist_features
    good = sm.precision_recall(real, sm.extract(net, test_x).features)
    noise = sm.precision_recall(real, sm.extract(net, torch.rand(test_x.shape)).features)
    ones = test_x[labels == 1]
    collapsed = sm.precision_recall(real, sm.extract(net, ones).features)
    assert good[0] > 0.7 and good[1] > 0.7
    assert noise[0] < 0.05
    assert collapsed[0] > 0.7 and collapsed[1] < 0.3
    d_good, c_good = sm.density_coverage(real, sm.extract(net, test_x).features)
    d_col, c_col = sm.density_coverage(real, sm.extract(net, ones).features)
    assert c_col < 0.3 < c_good


def test_classifier_score_of_real_digits_is_near_ten(mnist_features):
    net, _, test_x, labels = mnist_features
    logits = sm.extract(net, test_x).logits
    assert sm.label_accuracy(logits, labels) > 98.0
    assert sm.classifier_score(logits)[0] > 8.0
    assert sm.classifier_score(logits[labels == 1])[0] < 1.5
