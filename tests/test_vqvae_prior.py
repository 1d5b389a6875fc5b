"""VQ-VAE as a two-stage model: a prior over the frozen first stage's tokens (genlab/models/latent/vqvae_prior.py).

A tiny first stage is trained for a few steps on `digits` (8x8), then the prior on its cached codes; the
round trip samples images through the CLI's code path, the prior is causal over tokens (by gradients),
the reported bound is its two terms summed, and a changed first stage is refused in one line.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from genlab.cli import main
from genlab.config import RunConfig, apply_overrides
from genlab.eval.options import EvalOptions
from genlab.nn.spec import DataSpec
from genlab.registry import EVALUATORS, MODELS
from genlab.sampling.api import draw
from genlab.train.run import build_model, build_objective, load_run
from genlab.train.stages import CODES_FILE, CODES_INFO

FIRST = ["--set", "model.channels=8", "--set", "model.blocks=0", "--set", "model.code_dim=4",
         "--set", "model.codebook_size=12"]
COMMON = ["--data", "digits", "--batch-size", "16", "--device", "cpu", "--set", "train.progress=false"]


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """(first-stage run, prior run): 3 steps each on digits, the prior a 2-layer transformer."""
    root = tmp_path_factory.mktemp("vq")
    first, prior = root / "first", root / "prior"
    assert main(["train", "vqvae", "--out", str(first), "--steps", "3", *FIRST, *COMMON]) == 0
    assert main(["train", "vqvae-prior", "--out", str(prior), "--steps", "3", "--set", f"first_stage={first}",
                 "--set", "width=8", "--set", "layers=2", "--set", "heads=2", *COMMON]) == 0
    return first, prior


def test_the_prior_trains_on_cached_codes_and_samples_decode_to_images(stages, capsys):
    first, prior = stages
    cfg = json.loads((prior / "config.json").read_text())["model"]
    assert cfg["first_stage"] == str(first.resolve()) and len(cfg["first_stage_sha256"]) == 64
    info = json.loads((prior / CODES_INFO).read_text())
    assert info["first_stage_sha256"] == cfg["first_stage_sha256"] and info["images"] > 0
    assert (prior / CODES_FILE).exists()
    run = load_run(prior)
    codes = run.model.tokens(run.dataset("train").batch(torch.arange(info["images"]))["x"])
    assert torch.equal(load_file(str(prior / CODES_FILE))["codes"][:, 0].long(), codes)  # the cache is the encoder's
    images = draw(run.model, 3, seed=0, device="cpu")
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    code, _, err = _cli(capsys, "sample", prior, "--n", "4", "--out", prior / "s.png")
    assert code == 0, err


@pytest.mark.parametrize("prior", ["pixel-transformer", "gated-pixelcnn"])
def test_non_tokens_are_masked_and_the_sampling_cache_matches_the_full_pass(prior):
    """The levels that are no code get no mass, and the key/value or row caches give the teacher-forced logits."""
    spec = DataSpec(channels=1, height=8, width=8, bits=8)
    overrides = {**MODELS.get("vqvae-prior").card.tiny, "prior": prior}
    model = build_model(apply_overrides(RunConfig.create("vqvae-prior"), overrides), spec).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.prior.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        tokens = torch.randint(0, model.codes, (2, *model.grid))
        full = model(tokens)  # (2, 256, h, w)
        cache = model.token_cache(2)
        canvas = model.token_image(tokens)
        for i in range(model.grid[0]):
            for j in range(model.grid[1]):
                # float32: the incremental pass sums in another order than the full one
                torch.testing.assert_close(cache.step(canvas, i, j, 0), full[:, :, i, j], rtol=1e-4, atol=1e-4)
    assert torch.isinf(full[:, model.codes:]).all() and torch.isfinite(full[:, :model.codes]).all()


@pytest.mark.parametrize("prior", ["pixel-transformer", "gated-pixelcnn"])
def test_the_prior_is_causal_over_tokens(prior):
    """d logits(token t) / d input(token s) = 0 for every s >= t in raster order, and not all 0 for s < t."""
    spec = DataSpec(channels=1, height=8, width=8, bits=8)
    cfg = apply_overrides(RunConfig.create("vqvae-prior"), {"prior": prior, "width": 8, "layers": 2, "heads": 2})
    torch.manual_seed(0)
    model = build_model(cfg, spec)
    h, w = model.grid
    tokens = torch.randint(0, model.codes, (1, h, w))
    captured = []
    if prior == "pixel-transformer":  # the token values enter through the embedding table
        model.prior.value_embed.register_forward_hook(lambda m, i, out: captured.append(out) or out.retain_grad())
        x = model.token_image(tokens)
    else:  # the gated PixelCNN reads the token image itself
        x = model.token_image(tokens).requires_grad_(True)
    raw = model.prior(x)[:, :model.codes]  # (1, K, h, w): the logits of real tokens
    inputs = captured[0] if captured else x
    for t in range(h * w):
        if inputs.grad is not None:
            inputs.grad = None
        raw[0, :, t // w, t % w].sum().backward(retain_graph=True)
        if captured:  # (1, T - 1, 1, d): entry s is the value of token s (it feeds sequence position s + 1)
            g = inputs.grad[0].abs().sum((-1, -2))
        else:  # (1, 1, h, w)
            g = inputs.grad.abs().flatten()
        assert g[t:].eq(0).all(), f"token {t} sees a token at or after itself"
        if t:
            assert g[:t].gt(0).any(), f"token {t} sees none of the tokens before it"


def test_the_bound_is_its_terms_summed_and_the_prior_a_distribution_over_the_codes():
    spec = DataSpec(channels=1, height=8, width=8, bits=8)
    cfg = apply_overrides(RunConfig.create("vqvae-prior"), dict(MODELS.get("vqvae-prior").card.tiny))
    torch.manual_seed(0)
    model, objective = build_model(cfg, spec).eval(), build_objective(cfg, spec)
    x = torch.randint(0, 256, (5, 1, 8, 8)).float() / 255
    with torch.no_grad():
        terms = objective(model, {"x": x}, "main", 0)
        tokens = model.tokens(x)
        logp = F.log_softmax(model(tokens), dim=1)  # (B, 256, h, w)
        assert torch.allclose(logp[:, :model.codes].exp().sum(1), torch.ones(()))  # the K codes carry all mass
        prior = -logp.gather(1, tokens.unsqueeze(1)).flatten(1).sum(1)
        distortion = -model.distribution(model.decode_tokens(tokens)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(terms["prior_nats"], prior)
    torch.testing.assert_close(terms["distortion"], distortion)
    torch.testing.assert_close(terms["nll_nats"], prior + distortion)
    torch.testing.assert_close(terms["prior_bits_per_token"], prior / (tokens[0].numel() * torch.log(torch.tensor(2.))))


def test_the_evaluator_reports_the_bound_as_a_bound_equal_to_its_terms(stages):
    run = load_run(stages[1])
    records = EVALUATORS.get("vq-bound")(run.model, run.objective, run.dataset("test"), "cpu",
                                         EvalOptions(max_examples=40, batch_size=20))
    bound = records["vq_bound"]
    assert bound["kind"] == "bound" and "-log p(x) <=" in bound["bound"]
    assert records["prior_nll_bits_per_token"]["unit"] == "bits/token"
    assert bound["value"] == pytest.approx(records["prior_nll"]["value"] + records["distortion"]["value"], rel=1e-6)


def test_a_changed_or_missing_first_stage_is_refused_in_one_line(stages, tmp_path, capsys):
    first, prior = stages
    code, _, err = _cli(capsys, "train", "vqvae-prior", "--out", tmp_path / "p", "--steps", "1", *COMMON)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "model.first_stage=RUN_DIR" in err, err
    moved = tmp_path / "first"  # the same first stage trained one step further: its weights change
    shutil.copytree(first, moved)
    assert main(["train", "--resume", str(moved), "--steps", "4"]) == 0
    changed = tmp_path / "prior"
    shutil.copytree(prior, changed)
    cfg = json.loads((changed / "config.json").read_text())
    cfg["model"]["first_stage"] = str(moved)
    (changed / "config.json").write_text(json.dumps(cfg))
    code, _, err = _cli(capsys, "sample", changed, "--n", "2", "--out", tmp_path / "s.png")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "changed since" in err and "train the prior again" in err
    cfg["model"]["first_stage"] = str(tmp_path / "gone")
    (changed / "config.json").write_text(json.dumps(cfg))
    code, _, err = _cli(capsys, "sample", changed, "--n", "2", "--out", tmp_path / "s.png")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is missing" in err, err


def test_token_levels_keep_the_8_bit_head_up_to_256_codes_and_widen_past_it():
    from genlab.models.latent.vqvae_prior import token_bits
    assert [token_bits(k) for k in (2, 12, 256, 257, 512, 513, 65536)] == [8, 8, 8, 9, 9, 10, 16]


@pytest.mark.parametrize("prior", ["pixel-transformer", "gated-pixelcnn"])
def test_a_codebook_past_256_codes_gets_a_wider_head(prior):
    """K = 300 codes: a 512-way head whose 300 real tokens carry all the mass, tokens >= 256 round-trip through
    the prior's canvas, the sampling cache matches the full pass, and the log-mass is the softmax's entry."""
    spec = DataSpec(channels=1, height=8, width=8, bits=8)
    cfg = apply_overrides(RunConfig.create("vqvae-prior"), {**MODELS.get("vqvae-prior").card.tiny, "prior": prior})
    stage_cls = MODELS.get("vqvae")
    stage_cfg = apply_overrides(RunConfig.create("vqvae"), {**stage_cls.card.tiny, "codebook_size": 300})
    torch.manual_seed(0)
    model = MODELS.get("vqvae-prior")(cfg.model, spec, first_stage=build_model(stage_cfg, spec)).eval()
    assert model.codes == 300 and model.token_spec.levels == 512
    tokens = torch.randint(0, 300, (2, *model.grid))
    tokens[0, 0, 0] = 299  # the top code and one past the 8-bit range
    tokens[1, 0, 0] = 256
    assert torch.equal(model.image_tokens(model.token_image(tokens)), tokens)
    with torch.no_grad():
        for p in model.prior.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        full = model(tokens)  # (2, 512, h, w)
        assert full.shape[1] == 512 and torch.isinf(full[:, 300:]).all() and torch.isfinite(full[:, :300]).all()
        logp = F.log_softmax(full, dim=1)
        torch.testing.assert_close(logp.exp().sum(1), torch.ones(2, *model.grid))
        dist = model.prior_distribution(full)
        torch.testing.assert_close(dist.log_prob(model.token_image(tokens))[:, 0],
                                   logp.gather(1, tokens.unsqueeze(1))[:, 0])
        cache, canvas = model.token_cache(2), model.token_image(tokens)
        for i in range(model.grid[0]):
            for j in range(model.grid[1]):
                torch.testing.assert_close(cache.step(canvas, i, j, 0), full[:, :, i, j], rtol=1e-4, atol=1e-4)
    drawn = model.image_tokens(dist.sample([torch.Generator().manual_seed(s) for s in range(2)]))
    assert drawn.max() < 300 and drawn.min() >= 0


def test_a_512_code_first_stage_trains_a_prior_and_samples(tmp_path, capsys):
    """The paper's K = 512 end to end: the codes cache holds indices past 255, and sampling decodes them."""
    first, prior = tmp_path / "first", tmp_path / "prior"
    wide = [a if a != "model.codebook_size=12" else "model.codebook_size=512" for a in FIRST]
    assert main(["train", "vqvae", "--out", str(first), "--steps", "2", *wide, *COMMON]) == 0
    assert main(["train", "vqvae-prior", "--out", str(prior), "--steps", "2", "--set", f"first_stage={first}",
                 "--set", "width=8", "--set", "layers=1", "--set", "heads=2", *COMMON]) == 0
    run = load_run(prior)
    assert run.model.token_spec.levels == 512
    cached = load_file(str(prior / CODES_FILE))["codes"]
    assert cached.dtype == torch.int32
    codes = run.model.tokens(run.dataset("train").batch(torch.arange(cached.shape[0]))["x"])
    assert torch.equal(cached[:, 0].long(), codes)
    images = draw(run.model, 3, seed=0, device="cpu")
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
