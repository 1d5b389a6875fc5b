"""Out-of-distribution detection (genlab/ood): metrics, scores, image conversion, commands.

Layers: detection metrics against hand-computed values and sklearn; the mutation of
background models and its objective; compressors; exact conversions of odd user
images; per-family likelihoods of tiny models trained through the normal loop (a
digit scores below noise); and `genlab ood` / `genlab score` end to end.
"""

from __future__ import annotations

import io
import json
import math
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import genlab  # noqa: F401  (fills the registries)
import genlab.eval.exact  # noqa: F401
import genlab.models.autoregressive  # noqa: F401
import genlab.objectives.autoregressive  # noqa: F401
from genlab.card import ModelCard
from genlab.config import DataConfig, RunConfig, apply_overrides
from genlab.data import load_dataset
from genlab.data.base import ImageSet, to_model_input
from genlab.nn.spec import DataSpec
from genlab.ood.background import MutatedELBO, mutate
from genlab.ood.compress import code_lengths, png_bits, zlib_bits
from genlab.ood.images import ImageReadError, background_of, convert_imageset, read_user_image
from genlab.ood.likelihood import LikelihoodOptions, family_likelihood
from genlab.ood.metrics import aupr, aupr_in, auroc, detection_metrics, fpr_at_tpr
from genlab.ood.scorer import OutlierScorer, ScorerOptions
from genlab.ood.scores import Reference, SetTerms, batch_typicality, compute_scores
from genlab.objectives.latent import ELBO
from genlab.train.loop import train
from genlab.train.run import load_run

GREY_2x2 = DataSpec(channels=1, height=2, width=2, bits=8)


# ---- detection metrics -------------------------------------------------------------------

# In-distribution and OOD scores with one tie across the sets (0.35).
IN = [0.1, 0.4, 0.35, 0.8]
OUT = [0.9, 0.35, 0.5]


def test_metrics_on_a_hand_computed_example():
    # AUROC: OOD 0.9 beats all 4; 0.35 beats 0.1 and ties 0.35 (1.5); 0.5 beats 3 -> 8.5 / 12.
    assert auroc(IN, OUT) == pytest.approx(8.5 / 12, abs=1e-12)
    # AP with OOD positive, thresholds high to low: 0.9 (P=1, R=1/3), 0.5 (P=2/3, R=2/3),
    # 0.35 (TP=3, FP=3: P=1/2, R=1) -> (1 + 2/3 + 1/2) / 3 = 13/18.
    assert aupr(IN, OUT) == pytest.approx(13 / 18, abs=1e-12)
    # AP with in-distribution positive on -score: P = 1, 2/3, 3/4, 4/6 at R = 1/4, 2/4, 3/4, 1 -> 37/48.
    assert aupr_in(IN, OUT) == pytest.approx(37 / 48, abs=1e-12)
    # 95% of 4 in-distribution images -> keep all 4: t = 0.8; OOD 0.35 and 0.5 pass -> 2/3.
    assert fpr_at_tpr(IN, OUT, 0.95) == pytest.approx(2 / 3, abs=1e-12)
    # Keep 2 of 4: t = 0.35; the tied OOD 0.35 counts as accepted -> 1/3.
    assert fpr_at_tpr(IN, OUT, 0.5) == pytest.approx(1 / 3, abs=1e-12)
    m = detection_metrics(IN, OUT)
    assert (m["n_in"], m["n_ood"]) == (4, 3) and m["aupr_chance"] == pytest.approx(3 / 7)


def test_metrics_at_perfect_and_reversed_separation():
    a, b = np.arange(10.0), np.arange(10.0) + 100
    assert auroc(a, b) == 1.0 and aupr(a, b) == 1.0 and fpr_at_tpr(a, b) == 0.0
    assert auroc(b, a) == 0.0 and fpr_at_tpr(b, a) == 1.0
    assert auroc(a, a) == 0.5  # identical sets: all ties


def test_metrics_agree_with_sklearn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    rng = np.random.default_rng(0)
    for _ in range(12):
        a = rng.integers(0, 8, rng.integers(5, 40)).astype(float)
        b = rng.integers(0, 8, rng.integers(5, 40)).astype(float) + rng.integers(0, 3)
        y, s = np.r_[np.zeros(a.size), np.ones(b.size)], np.r_[a, b]
        assert auroc(a, b) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert aupr(a, b) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert aupr_in(a, b) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
        fpr, tpr, _ = roc_curve(1 - y, -s, drop_intermediate=False)  # in-distribution positive
        assert fpr_at_tpr(a, b) == pytest.approx(fpr[np.flatnonzero(tpr >= 0.95)[0]], abs=1e-12)


def test_metrics_reject_empty_and_non_finite_scores():
    with pytest.raises(ValueError, match="empty"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="not finite"):
        auroc([1.0, float("nan")], [2.0])


# ---- scores --------------------------------------------------------------------------------


def test_scores_from_terms_follow_their_formulas():
    t = SetTerms(bpd=np.array([2.0, 5.0]), code_bpd={"png": np.array([1.5, 0.5]), "zlib": np.array([1.0, 4.0])},
                 background_bpd=np.array([1.0, 6.0]))
    ref = Reference(mean_bpd=3.0, n=10, protocol="test")
    s = compute_scores(t, ref, ["bpd", "complexity-png", "complexity-zlib", "likelihood-ratio", "typicality"])
    np.testing.assert_allclose(s["bpd"], [2.0, 5.0])
    np.testing.assert_allclose(s["complexity-png"], [0.5, 4.5])
    np.testing.assert_allclose(s["complexity-zlib"], [1.0, 1.0])
    np.testing.assert_allclose(s["likelihood-ratio"], [1.0, -1.0])
    np.testing.assert_allclose(s["typicality"], [1.0, 2.0])  # too likely and too unlikely both count


def test_batch_typicality_uses_disjoint_batches():
    in_bpd = np.full(20, 3.0)
    out_bpd = np.full(25, 1.0)  # far more likely than typical: the batch test flags it
    m = batch_typicality(in_bpd, out_bpd, mean_bpd=3.0, m=5, seed=0)
    assert (m["n_in"], m["n_ood"], m["m"]) == (4, 5, 5)  # 20 // 5 and 25 // 5 batches
    assert m["auroc"] == 1.0
    assert batch_typicality(in_bpd[:3], out_bpd, 3.0, m=5, seed=0) == {}


# ---- complexity ------------------------------------------------------------------------------


def test_constant_image_compresses_better_than_noise():
    rng = np.random.default_rng(0)
    flat8 = np.full((1, 28, 28), 17, dtype=np.uint8)
    noise8 = rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)
    flat1, noise1 = np.zeros((1, 28, 28), np.uint8), rng.integers(0, 2, (1, 28, 28), dtype=np.uint8)
    for fn in (png_bits, zlib_bits):
        assert fn(flat8, 8) < fn(noise8, 8)
        assert fn(flat1, 1) < fn(noise1, 1)
    # Noise cannot be compressed below its entropy: 8 bits per sub-pixel (1 for binary).
    assert zlib_bits(noise8, 8) >= 8 * 784 and png_bits(noise8, 8) >= 8 * 784
    assert zlib_bits(noise1, 1) >= 784
    # Same model bpd, simpler image -> higher complexity-corrected score.
    lengths = code_lengths(torch.from_numpy(np.stack([flat8, noise8])), 8, "png") / 784
    s = compute_scores(SetTerms(np.array([4.0, 4.0]), {"png": lengths}), None, ["complexity-png"])["complexity-png"]
    assert s[0] > s[1]


@pytest.mark.parametrize("bits,channels", [(1, 1), (8, 1), (8, 3)])
def test_png_code_is_lossless(bits, channels):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 2 if bits == 1 else 256, (channels, 5, 7), dtype=np.uint8)
    buf = io.BytesIO()
    # Write exactly what png_bits measures and decode it back.
    from genlab.ood import compress

    im = (Image.fromarray(image[0].astype(bool)) if bits == 1 else
          Image.fromarray(image[0], "L") if channels == 1 else Image.fromarray(compress._hwc(image), "RGB"))
    im.save(buf, format="PNG", optimize=True)
    assert png_bits(image, bits) == 8 * len(buf.getvalue())
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L" if channels == 1 else "RGB"))
    back = back[None] if back.ndim == 2 else back.transpose(2, 0, 1)
    np.testing.assert_array_equal(back // 255 if bits == 1 else back, image)
    if bits == 1:  # bit-packed: 35 pixels -> 5 bytes before zlib
        assert zlib_bits(image, 1) == 8 * len(zlib.compress(np.packbits(image.reshape(-1)).tobytes(), 9))


def test_code_lengths_checks_levels():
    with pytest.raises(ValueError, match="levels 0..1"):
        code_lengths(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), 1, "png")
    with pytest.raises(ValueError, match="unknown compressor"):
        code_lengths(torch.zeros((1, 1, 2, 2), dtype=torch.uint8), 8, "flif")


# ---- background models ------------------------------------------------------------------------


def test_mutation_redraws_the_given_share_of_subpixels_on_the_level_grid():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(200, 1, 28, 28)
    assert torch.equal(mutate(x, 0.0, 8, g), x)
    y = mutate(x, 0.3, 8, g)
    levels = y * 255
    assert torch.equal(levels, levels.round())  # stays on the 8-bit grid
    # A redrawn sub-pixel keeps 0 with probability 1/256.
    assert (y != 0).float().mean().item() == pytest.approx(0.3 * 255 / 256, abs=0.005)
    b = mutate(torch.zeros(200, 1, 28, 28), 1.0, 1, g)
    assert set(b.unique().tolist()) == {0.0, 1.0} and b.mean().item() == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError):
        mutate(x, 1.5, 8)


def test_mutated_objective_perturbs_only_in_training_mode():
    from genlab.models.latent.vae import VAE

    spec = DataSpec(1, 8, 8, 8)
    torch.manual_seed(0)
    model = VAE(VAE.Config(latent_dim=2, channels=(4,), hidden=16), spec)
    x = torch.randint(0, 256, (6, 1, 8, 8)).float() / 255
    plain, mutated = ELBO(ELBO.Config(), spec), MutatedELBO(MutatedELBO.Config(mutation_rate=0.3), spec)
    model.eval()
    torch.manual_seed(1)
    a = plain(model, {"x": x}, "eval", 0)["neg_elbo"]
    torch.manual_seed(1)
    b = mutated(model, {"x": x}, "eval", 0)["neg_elbo"]
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(1)
    c = mutated(model, {"x": x}, "main", 0)["neg_elbo"]
    assert not torch.equal(a, c)
    with pytest.raises(ValueError, match="mutation_rate"):
        MutatedELBO.Config(mutation_rate=0.0).validate()


# ---- image conversion -------------------------------------------------------------------------


def _levels(path, spec, background="black"):
    return read_user_image(path, spec, background).numpy()


def test_16bit_png_is_scaled_by_1_over_257(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 257], [65535, 32896]], dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    np.testing.assert_array_equal(_levels(path, GREY_2x2)[0], [[0, 1], [255, 128]])


def test_rgba_is_composited_over_the_dataset_background(tmp_path):
    path = tmp_path / "alpha.png"
    rgba = np.array([[[255, 255, 255, 128], [255, 0, 0, 255]], [[90, 200, 30, 0], [0, 0, 0, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(path)
    # Half-transparent white: 128 over black, 255 over white. Opaque red: luma 255 * 299/1000 = 76.2 -> 76.
    # Fully transparent: the background itself. Opaque black: 0.
    np.testing.assert_array_equal(_levels(path, GREY_2x2, "black")[0], [[128, 76], [0, 0]])
    np.testing.assert_array_equal(_levels(path, GREY_2x2, "white")[0], [[255, 76], [255, 0]])


def test_grey_jpeg_to_rgb_and_smaller(tmp_path):
    path = tmp_path / "grey.jpg"
    Image.fromarray(np.full((16, 16), 100, np.uint8), "L").save(path, quality=95)
    rgb = _levels(path, DataSpec(3, 4, 4, 8))
    assert rgb.shape == (3, 4, 4)
    np.testing.assert_array_equal(rgb, np.full((3, 4, 4), 100))  # a flat JPEG decodes exactly; grey replicated


def test_huge_image_is_centre_cropped_then_resized(tmp_path):
    path = tmp_path / "huge.png"
    a = np.zeros((1000, 3000, 3), np.uint8)
    a[:, :1000] = (255, 0, 0)  # the sides are cropped away...
    a[:, 2000:] = (0, 0, 255)
    a[:, 1000:2000] = (10, 200, 30)  # ...the centre square stays: luma 2.99 + 117.4 + 3.42 = 123.8 -> 124
    Image.fromarray(a).save(path)
    out = _levels(path, DataSpec(1, 28, 28, 8))
    assert out.shape == (1, 28, 28)
    np.testing.assert_array_equal(out, np.full((1, 28, 28), 124))  # nothing from outside the crop leaks in


def test_an_image_enlarged_by_pixel_replication_comes_back_exactly(tmp_path):
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (7, 7), dtype=np.uint8)
    path = tmp_path / "big.png"
    Image.fromarray(np.kron(small, np.ones((10, 10), np.uint8))).save(path)  # 70x70, each pixel a 10x10 block
    np.testing.assert_array_equal(_levels(path, DataSpec(1, 7, 7, 8))[0], small)


def test_binary_models_get_bernoulli_levels(tmp_path):
    path = tmp_path / "bw.png"
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), "L").save(path)
    out = read_user_image(path, DataSpec(1, 2, 2, 1), seed=3)
    assert out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy()[0], [[0, 1], [1, 0]])  # p = 0 and p = 1 are certain


def test_corrupt_or_missing_image_gives_one_line_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError) as err:
        read_user_image(bad, GREY_2x2)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    good = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(good, format="PNG")
    cut = tmp_path / "truncated.png"
    cut.write_bytes(good.getvalue()[:60])
    with pytest.raises(ImageReadError, match="truncated.png"):
        read_user_image(cut, GREY_2x2)
    with pytest.raises(ImageReadError, match="nowhere.png"):
        read_user_image(tmp_path / "nowhere.png", GREY_2x2)


def test_convert_imageset_size_channels_and_bits():
    rgb = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    rgb[0] = torch.tensor([10, 200, 30], dtype=torch.uint8).view(3, 1, 1)
    rgb[1] = 255
    src = ImageSet("colour", "test", rgb, None, DataSpec(3, 4, 4, 8), "scale")
    out, note = convert_imageset(src, GREY_2x2, "black", seed=0)
    assert out.transform == "scale" and out.images.shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(out.images[:, 0].numpy(), [[[124, 124], [124, 124]], [[255, 255], [255, 255]]])
    assert "luma" in note and "Lanczos" in note and "centre crop" in note
    binary, note = convert_imageset(src, DataSpec(1, 2, 2, 1), "black", seed=0)
    assert binary.transform == "binary" and torch.equal(binary.images[1], torch.ones(1, 2, 2, dtype=torch.uint8))
    assert "Bernoulli" in note
    zero_one = ImageSet("bin", "test", torch.tensor([[[[0, 1], [1, 0]]]], dtype=torch.uint8), None,
                        DataSpec(1, 2, 2, 1), "binary")
    as8, note = convert_imageset(zero_one, GREY_2x2, "black", seed=0)
    assert torch.equal(as8.images[0, 0], torch.tensor([[0, 255], [255, 0]], dtype=torch.uint8))


def test_background_colour_is_read_from_the_border():
    dark = ImageSet("d", "test", torch.zeros(3, 1, 6, 6, dtype=torch.uint8), None, DataSpec(1, 6, 6, 8), "scale")
    light = ImageSet("l", "test", torch.full((3, 1, 6, 6), 250, dtype=torch.uint8), None, DataSpec(1, 6, 6, 8),
                     "scale")
    assert background_of(dark) == "black" and background_of(light) == "white"


# ---- tiny models trained through the normal loop ----------------------------------------------------


def _train_tiny(tmp_path_factory, name, model, overrides, steps, objective=None):
    cfg = RunConfig.create(model, objective)
    apply_overrides(cfg, ["data.name=digits", f"train.steps={steps}", "train.batch_size=64", "train.progress=false",
                          "train.log_every=1000", "train.ckpt_every=1000", "optim.lr=3e-3", *overrides])
    out = tmp_path_factory.mktemp(name)
    train(cfg, out)
    return out


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return _train_tiny(tmp_path_factory, "vae", "vae", ["model.latent_dim=4", "model.channels=8",
                                                        "model.hidden=64", "model.blocks=0"], 200)


@pytest.fixture(scope="module")
def background_run(tmp_path_factory):
    return _train_tiny(tmp_path_factory, "bg", "vae", ["model.latent_dim=4", "model.channels=8", "model.hidden=64",
                                                       "model.blocks=0", "objective.mutation_rate=0.2"], 100,
                       objective="elbo-mutated")


@pytest.fixture(scope="module")
def pixelcnn_run(tmp_path_factory):
    return _train_tiny(tmp_path_factory, "pcnn", "pixelcnn", ["model.channels=8", "model.residual_blocks=1",
                                                              "model.head_channels=16", "model.first_kernel=3"], 60)


def _digits_and_noise(n=16):
    test = load_dataset("digits", "test", DataConfig(name="digits"))
    digits = test.images[:n]
    noise = torch.randint(0, 256, (n, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return digits, noise


def test_vae_scores_a_digit_below_noise(vae_run, background_run):
    run, bg = load_run(vae_run), load_run(background_run)
    assert bg.cfg.objective_name == "elbo-mutated" and bg.cfg.objective.mutation_rate == 0.2
    scorer = OutlierScorer(run, bg, ScorerOptions(iwae_k=8))
    assert scorer.lik.kind == "bound"
    digits, noise = _digits_and_noise()
    ref = Reference(float(scorer.terms(digits, "scale", stream=5, background=False).bpd.mean()), 16, "test")
    names = ["bpd", "complexity-png", "complexity-zlib", "typicality", "likelihood-ratio"]
    s_in = compute_scores(scorer.terms(digits, "scale", stream=0), ref, names)
    s_out = compute_scores(scorer.terms(noise, "scale", stream=1), ref, names)
    for name in ["bpd", "complexity-png", "complexity-zlib", "typicality"]:
        assert s_in[name].max() < s_out[name].min(), name
    assert s_in["likelihood-ratio"].mean() < s_out["likelihood-ratio"].mean()
    assert s_out["bpd"].min() > 7.0  # uniform noise costs about 8 bits per sub-pixel under any good model


def test_iwae_nll_is_a_bound_consistent_with_the_evaluator(vae_run):
    from genlab.eval.latent import iwae_log_likelihood

    run = load_run(vae_run)
    lik = family_likelihood(run.model, run.objective, LikelihoodOptions(iwae_k=16, iwae_chunk=5))
    x = to_model_input(_digits_and_noise(4)[0], "scale")
    a = lik.nll(x, torch.Generator().manual_seed(0))
    b = -iwae_log_likelihood(run.model, x, 16, 5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    # The VAE's surprise map is -log p(x_ij | z) at z = posterior mean: the model's forward pass with zero
    # noise gives that z, and its distortion must equal the map's sum.
    m = lik.pixel_nll(x)
    assert m.shape == (4, 8, 8) and torch.isfinite(m).all()
    out = run.model(x, noise=torch.zeros(4, run.model.cfg.latent_dim))
    distortion = -run.model.distribution(out["raw"]).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(m.flatten(1).sum(1), distortion)


def test_autoregressive_nll_is_exact_and_the_surprise_map_adds_up(pixelcnn_run):
    run = load_run(pixelcnn_run)
    lik = family_likelihood(run.model, run.objective)
    assert lik.kind == "exact"
    digits, noise = _digits_and_noise(8)
    x = to_model_input(torch.cat([digits, noise]), "scale")
    nll = lik.nll(x, torch.Generator())
    torch.testing.assert_close(nll, run.objective(run.model, {"x": x}, "eval", 0)["nll_nats"])
    torch.testing.assert_close(lik.pixel_nll(x).flatten(1).sum(1), nll, rtol=1e-5, atol=1e-3)
    assert nll[:8].max() < nll[8:].min()  # digits below noise


def test_autoencoder_score_is_labelled_a_proxy_and_unknown_families_are_refused():
    from genlab.models.latent.autoencoder import Autoencoder

    spec = DataSpec(1, 8, 8, 8)
    ae = Autoencoder(Autoencoder.Config(latent_dim=2, channels=(4,), hidden=8), spec).eval()
    lik = family_likelihood(ae, None)
    assert lik.kind == "proxy" and "not a likelihood" in lik.describe()
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(lik.nll(x, torch.Generator()), lik.pixel_nll(x).flatten(1).sum(1))

    class Adversarial(torch.nn.Module):
        card = ModelCard(family="adversarial", default_objective="gan")

    with pytest.raises(ValueError, match="no per-image likelihood"):
        family_likelihood(Adversarial(), None)


# ---- the commands end to end --------------------------------------------------------------------


def test_ood_command_writes_json_scores_and_report(vae_run, background_run, data_root):
    from genlab.ood.run import OODOptions, read_ood_scores
    from genlab.reports.ood import ood_run

    opts = OODOptions(ood=["mnist"], background=str(background_run), max_examples=60, reference_examples=40,
                      typicality_m=5, iwae_k=4, seed=0, device="cpu", data_root=str(data_root))
    result = ood_run(vae_run, opts, log=lambda *_: None)
    on_disk = json.loads((vae_run / "ood.json").read_text())
    assert on_disk["ood"]["mnist"]["n"] == 60 and on_disk["in_distribution"]["n"] == 60
    assert "28x28 -> 1x8x8" in on_disk["ood"]["mnist"]["note"]
    assert set(result["scores"]) == {"bpd", "complexity-png", "complexity-zlib", "likelihood-ratio", "typicality"}
    for m in result["ood"]["mnist"]["metrics"].values():
        assert 0 <= m["auroc"] <= 1 and 0 <= m["aupr"] <= 1 and 0 <= m["fpr95"] <= 1
    assert result["ood"]["mnist"]["typicality_batches"]["n_in"] == 12
    arrays = read_ood_scores(vae_run)
    assert arrays["in-distribution/bpd"].shape == (60,)
    # The stored arrays give back the stored metrics.
    stored = result["ood"]["mnist"]["metrics"]["bpd"]["auroc"]
    assert auroc(arrays["in-distribution/bpd"], arrays["mnist/bpd"]) == stored
    assert (vae_run / "ood_report.md").exists() and (vae_run / "ood_report.html").exists()
    assert (vae_run / "figures" / "ood" / "histograms.png").exists()


def test_score_command_on_user_images(vae_run, tmp_path, capsys):
    from genlab.cli import main

    good = tmp_path / "digit.png"
    digit = load_dataset("digits", "test", DataConfig()).images[0, 0].numpy()
    Image.fromarray(np.kron(digit, np.ones((4, 4), np.uint8)), "L").save(good)  # 32x32, resized back to 8x8
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(noise)
    out = tmp_path / "maps"
    assert main(["score", str(vae_run), str(good), str(noise), "--out", str(out), "--iwae-k", "4",
                 "--device", "cpu", "--alpha-over", "black"]) == 0
    printed = capsys.readouterr().out
    assert "digit.png" in printed and "noise.png" in printed
    scores = json.loads((out / "scores.json").read_text())
    by_name = {e["path"].rsplit("/", 1)[-1]: e["scores"] for e in scores["images"]}
    assert by_name["digit.png"]["bpd"]["value"] < by_name["noise.png"]["bpd"]["value"]
    assert (out / "digit_surprise.png").exists() and (out / "noise_surprise.png").exists()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["score", str(vae_run), str(bad), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and len(err.splitlines()) == 1


def test_ood_options_are_checked_before_any_work(vae_run):
    from genlab.ood.run import OODOptions
    from genlab.reports.ood import ood_run

    with pytest.raises(ValueError, match="unknown OOD dataset 'nope'"):
        ood_run(vae_run, OODOptions(ood=["nope"]))
    with pytest.raises(ValueError, match="at least one OOD dataset"):
        ood_run(vae_run, OODOptions(ood=[]))


def test_typicality_reference_is_finite_and_units_are_bits_per_dim(vae_run):
    run = load_run(vae_run)
    scorer = OutlierScorer(run, None, ScorerOptions(iwae_k=2))
    digits, _ = _digits_and_noise(4)
    t = scorer.terms(digits, "scale")
    x = to_model_input(digits, "scale")
    nats = scorer.lik.nll(x, torch.Generator().manual_seed(0)).double().numpy()
    assert np.all(np.isfinite(t.bpd)) and t.background_bpd is None
    # bits/dim = nats / (D ln 2) with D = 64 for 8x8 grey (a different draw of importance samples: loose).
    np.testing.assert_allclose(t.bpd, nats / (64 * math.log(2)), rtol=0.2)
