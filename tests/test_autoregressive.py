"""Autoregressive family: causality, exact normalization, sampling, and the logistic mixture.

Every check here follows from the maths: a causal model's output for sub-pixel i
has exactly zero derivative with respect to every input at or after i; an
autoregressive likelihood sums to one over all images; the cached samplers
compute the same conditionals as full recomputation, so they draw the same
images from the same generators.
"""

from __future__ import annotations

import contextlib
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from genlab.data.base import ImageSet
from genlab.eval.exact import evaluate as exact_nll
from genlab.eval.surprise import pixel_nll
from genlab.reports.autoregressive import save_completion_figure, save_surprise_figure
from genlab.models.autoregressive.gated_pixelcnn import GatedPixelCNN
from genlab.models.autoregressive.heads import AutoregressiveHead
from genlab.models.autoregressive.pixel_transformer import PixelTransformer
from genlab.models.autoregressive.pixelcnn import PixelCNN
from genlab.models.autoregressive.pixelrnn import PixelRNN
from genlab.nn.distributions import DiscretizedLogistic
from genlab.nn.logistic_mixture import DiscretizedLogisticMixture, mixture_raw_channels
from genlab.nn.masked import MaskedConv2d, causal_mask, channel_groups
from genlab.nn.spec import DataSpec
from genlab.objectives.autoregressive import NLL
from genlab.sampling.autoregressive import complete, sample
from genlab.rng import make_generators
from model_tester import check_model

# Keys name a model and its tiny config (PixelRNN twice: one key per recurrent layer type).
MODELS = {"pixelcnn": PixelCNN, "gated-pixelcnn": GatedPixelCNN, "pixel-transformer": PixelTransformer,
          "pixelrnn-row": PixelRNN, "pixelrnn-diagonal": PixelRNN}
TINY = {
    "pixelcnn": dict(channels=6, residual_blocks=2, first_kernel=3, kernel=3, head_channels=6),
    "gated-pixelcnn": dict(channels=6, layers=3, first_kernel=3, kernel=3, head_channels=6),
    "pixel-transformer": dict(d_model=8, layers=2, heads=2, mlp_ratio=2),
    "pixelrnn-row": dict(layer="row", hidden=3, layers=2, first_kernel=3, head_channels=6),
    "pixelrnn-diagonal": dict(layer="diagonal", hidden=3, layers=2, first_kernel=3, head_channels=6),
}
BINARY = DataSpec(1, 3, 3, bits=1)
BINARY_RGB = DataSpec(3, 2, 2, bits=1)
RGB = DataSpec(3, 3, 3, bits=8, num_classes=3)
# (data, likelihood) pairs: per-sub-pixel heads (colour-ordered masks) and the per-pixel mixture.
CASES = [(BINARY, "auto"), (RGB, "categorical"), (RGB, "logistic-mixture")]


def tiny(name: str, spec: DataSpec, likelihood: str = "auto", dtype=torch.float64, seed=0, **over):
    torch.manual_seed(seed)
    cls = MODELS[name]
    cfg = cls.Config(**{**TINY[name], "likelihood": likelihood, **over})
    return cls(cfg, spec).to(dtype)


def random_images(spec: DataSpec, n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n, spec.channels, spec.height, spec.width)
    if spec.bits == 1:
        return torch.randint(0, 2, shape, generator=g).to(dtype)
    return torch.randint(0, 256, shape, generator=g).to(dtype) / 255


def all_images(spec: DataSpec, dtype=torch.float64) -> torch.Tensor:
    """Every image of the spec, (levels ** D, C, H, W)."""
    levels = torch.arange(spec.levels, dtype=dtype) / (spec.levels - 1)
    grid = torch.cartesian_prod(*([levels] * spec.dims)) if spec.dims > 1 else levels[:, None]
    return grid.view(-1, spec.channels, spec.height, spec.width)


def log_likelihood(model, x, y=None) -> torch.Tensor:
    return model.distribution(model(x, y)).log_prob(x).flatten(1).sum(1)


# ---- causality --------------------------------------------------------------------------


@contextlib.contextmanager
def leaky_relus():
    """Swap ReLU for a leaky ReLU, so that a zero gradient can only come from the wiring.

    A tiny ReLU network can have every unit of a colour group switched off at some
    pixel, which zeroes gradients that the masks allow; the masks are what is tested.
    """
    relu = F.relu
    F.relu = lambda x, inplace=False: F.leaky_relu(x, 0.2)
    try:
        yield
    finally:
        F.relu = relu


def dependency(model, n_inputs: int = 2) -> torch.Tensor:
    """(D, D) bool: does the output for sub-pixel o depend on input sub-pixel d?

    "Depends" means a nonzero gradient at one of ``n_inputs`` random images (with
    leaky ReLUs, see ``leaky_relus``).

    Sub-pixels are numbered in the model's order, (i * W + j) * C + c. For a per-pixel
    head (logistic mixture) the outputs of pixel p are attributed to its first sub-pixel
    p * C. The transformer's input is discrete, so its gradient is taken with respect to
    the embedding vector of each input sub-pixel.
    """
    dep = torch.zeros(model.data.dims, model.data.dims, dtype=torch.bool)
    with leaky_relus():
        for seed in range(n_inputs):
            dep |= _dependency_at(model, random_images(model.data, 1, seed=seed))
    return dep


def _dependency_at(model, x: torch.Tensor) -> torch.Tensor:
    """One backward pass: copy k of the image in a batch carries the gradient of output k.

    Batch elements never interact in these models, so the gradient on copy k is
    exactly d output_k / d input.
    """
    spec, head = model.data, model.head
    C, H, W = spec.channels, spec.height, spec.width
    outputs = [(i, j, c) for i, j in itertools.product(range(H), range(W)) for c, _ in head.steps()]
    xb = x.expand(len(outputs), -1, -1, -1).clone()
    captured = {}
    if isinstance(model, PixelTransformer):
        hook = model.value_embed.register_forward_hook(lambda m, i, out: captured.update(e=out))
        raw = model(xb)
        hook.remove()
        inputs = captured["e"]  # (K, T - 1, per_token, d): token s, channel k of that token
    else:
        inputs = xb.requires_grad_(True)
        raw = model(inputs)
    g = torch.Generator().manual_seed(1)
    total = 0
    for k, (i, j, c) in enumerate(outputs):
        picked = raw[k, head.step_raw(c), i, j]
        total = total + (picked * torch.randn(picked.shape, generator=g, dtype=raw.dtype)).sum()
    (grad,) = torch.autograd.grad(total, inputs)
    dep = torch.zeros(spec.dims, spec.dims, dtype=torch.bool)
    for k, (i, j, c) in enumerate(outputs):
        o = (i * W + j) * C + c
        if isinstance(model, PixelTransformer):
            per_sub = grad[k].abs().sum(-1).flatten()  # token-major, channel within token: sub-pixel order
            dep[o, : per_sub.numel()] = per_sub != 0
        else:
            dep[o] = grad[k].abs().permute(1, 2, 0).flatten() != 0  # (H, W, C) -> sub-pixel order
    return dep


@pytest.mark.parametrize("spec,likelihood", CASES)
@pytest.mark.parametrize("name", list(MODELS))
def test_no_output_depends_on_its_own_or_later_subpixels(name, spec, likelihood):
    model = tiny(name, spec, likelihood)
    dep = dependency(model)
    D = spec.dims
    at_or_after = ~torch.ones(D, D, dtype=torch.bool).tril(-1)  # [o, d] True when d >= o
    assert not (dep & at_or_after).any(), f"{name}: outputs depend on inputs at or after them"
    # The check has teeth: every output but the first uses some of its past.
    C = spec.channels
    outputs = [p * C + c for p in range(spec.height * spec.width) for c, _ in model.head.steps()]
    assert all(dep[o].any() for o in outputs[1:])


def _reachable(footprints: list[set[tuple[int, int]]]) -> set[tuple[int, int]]:
    """Offsets (di, dj) reachable by one tap of each stacked kernel (a Minkowski sum)."""
    reach = {(0, 0)}
    for fp in footprints:
        reach = {(a + c, b + d) for a, b in reach for c, d in fp}
    return reach


def test_pixelcnn_has_the_blind_spot_where_the_paper_says():
    spec = DataSpec(1, 5, 5, bits=1)
    model = tiny("pixelcnn", spec, residual_blocks=2)  # three stacked 3x3 masked kernels: A, B, B
    dep = dependency(model)
    type_a = {(-1, -1), (-1, 0), (-1, 1), (0, -1)}
    reach = _reachable([type_a, type_a | {(0, 0)}, type_a | {(0, 0)}]) - {(0, 0)}
    for o in range(25):
        i, j = divmod(o, 5)
        expected = torch.tensor([(r - i, c - j) in reach for r in range(5) for c in range(5)])
        assert torch.equal(dep[o], expected), f"pixel {(i, j)}"
    # The blind spot: (2, 2) sees (1, 3) and (0, 4) but not (1, 4), although (1, 4) comes first.
    assert dep[12, 8] and dep[12, 4] and not dep[12, 9]


def test_gated_pixelcnn_sees_every_earlier_pixel():
    spec = DataSpec(1, 5, 5, bits=1)
    model = tiny("gated-pixelcnn", spec, layers=6)  # deep enough for the whole 5x5 past
    dep = dependency(model)
    before = torch.ones(25, 25, dtype=torch.bool).tril(-1)  # [o, d] True when d < o
    assert torch.equal(dep, before)
    assert dep[12, 9]  # exactly where PixelCNN is blind


@pytest.mark.parametrize("spec,likelihood", [(DataSpec(1, 4, 5, bits=1), "auto"), (DataSpec(3, 3, 3, bits=8), "categorical")])
def test_diagonal_bilstm_sees_every_earlier_subpixel_but_the_end_of_the_row_above(spec, likelihood):
    # One layer: left-to-right reaches up and left, the shifted right-to-left map the row above.
    dep = dependency(tiny("pixelrnn-diagonal", spec, likelihood, layers=1))  # 3x3 type-A input convolution
    C, W = spec.channels, spec.width
    expected = torch.ones(spec.dims, spec.dims, dtype=torch.bool).tril(-1)
    # The last sub-pixel of row i - 1 is in no feature of its own row (type-A mask), so only pixels
    # of row i within the input kernel's reach (j >= W - 1 - k // 2) see it: a gap the paper's
    # "full receptive field" glosses over, kept here as in the paper.
    for i in range(1, spec.height):
        last = ((i - 1) * W + W - 1) * C + C - 1
        expected[i * W * C : (i * W + W - 2) * C, last] = False
    assert torch.equal(dep, expected)


def test_row_lstm_field_is_the_triangle_above():
    spec = DataSpec(1, 4, 7, bits=1)
    dep = dependency(tiny("pixelrnn-row", spec, layers=1))  # 3x3 type-A input convolution, one Row LSTM
    first = {(-1, -1), (-1, 0), (-1, 1), (0, -1)}  # the type-A kernel's open taps
    own_row = _reachable([first, {(0, -1), (0, 0)}])  # the 1x3 type-B input-to-state window
    state = set(own_row)
    for _ in range(spec.height):  # the state of row i - 1 at columns j - 1 .. j + 1, recursively
        state = own_row | {(a - 1, b + c) for a, b in state for c in (-1, 0, 1)}
    reach = first | state  # the residual path adds the input features themselves
    for o in range(spec.dims):
        i, j = divmod(o, 7)
        expected = torch.tensor([(r - i, c - j) in reach for r in range(4) for c in range(7)])
        assert torch.equal(dep[o], expected), f"pixel {(i, j)}"
    assert dep[3 * 7 + 3, 0 * 7 + 6] and not dep[3 * 7 + 3, 2 * 7 + 6]  # a triangle: wider further up


def test_gated_pixelcnn_orders_colours_inside_the_pixel():
    spec = DataSpec(3, 3, 3, bits=8)
    dep = dependency(tiny("gated-pixelcnn", spec, "categorical", layers=4))
    before = torch.ones(27, 27, dtype=torch.bool).tril(-1)
    assert torch.equal(dep, before)  # G sees R, B sees R and G, and every earlier pixel


# ---- normalization ----------------------------------------------------------------------


_SMALL_SPACES = [
    (BINARY, "auto"),  # all 2^9 binary 3x3 images
    (BINARY_RGB, "auto"),  # all 2^12 binary 2x2 images with 3 colour-ordered channels
]
_EIGHT_BIT = [
    (DataSpec(1, 1, 2, bits=8), "categorical"),  # all 256^2 images of two 8-bit pixels
    (DataSpec(1, 1, 2, bits=8), "logistic-mixture"),
]


# PixelRNN shares the heads checked on 8-bit data by the others; its 256^2-image passes take ~5 s each.
@pytest.mark.parametrize("name,spec,likelihood", [(name, spec, lik) for name in MODELS for spec, lik in _SMALL_SPACES]
                         + [(name, spec, lik) for name in MODELS if not name.startswith("pixelrnn")
                            for spec, lik in _EIGHT_BIT])
def test_likelihood_sums_to_one_over_all_images(name, spec, likelihood):
    model = tiny(name, spec, likelihood)
    with torch.no_grad():
        total = torch.logsumexp(log_likelihood(model, all_images(spec)), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", ["gated-pixelcnn", "pixel-transformer"])
def test_class_conditional_likelihood_sums_to_one_for_every_class(name):
    spec = DataSpec(1, 3, 3, bits=1, num_classes=3)
    model = tiny(name, spec, conditional=True)
    x = all_images(spec)
    with torch.no_grad():
        # Class biases start at zero in the gated model: move them so classes differ.
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        per_class = [log_likelihood(model, x, torch.full((len(x),), k)) for k in range(3)]
    for lp in per_class:
        assert torch.logsumexp(lp, 0).exp().item() == pytest.approx(1.0, abs=1e-9)
    assert not torch.allclose(per_class[0], per_class[1])
    with pytest.raises(ValueError, match="class-conditional"):
        model(x[:2])


# ---- sampling ---------------------------------------------------------------------------


LABELLED = DataSpec(1, 3, 3, bits=1, num_classes=2)
SAMPLING_CASES = [(name, spec, lik) for name in MODELS for spec, lik in CASES] + [
    (name, LABELLED, "auto") for name in ("gated-pixelcnn", "pixel-transformer")]  # class-conditional


@pytest.mark.parametrize("name,spec,likelihood", SAMPLING_CASES)
def test_cached_sampling_equals_full_recomputation(name, spec, likelihood):
    conditional = spec is LABELLED
    if name == "pixelcnn":
        model = tiny(name, spec, likelihood, residual_blocks=0)  # sees 1 row up: the window crops rows
    else:
        model = tiny(name, spec, likelihood, **({"conditional": True} if conditional else {}))
    label = torch.tensor([1, 0, 1]) if conditional else None
    prefix = random_images(spec, 3, seed=5)
    drawn = {}
    for rows in (0, 2):
        a = sample(model, 3, make_generators(7, 3), "cpu", label=label, cache=True, prefix=prefix, prefix_rows=rows)
        b = sample(model, 3, make_generators(7, 3), "cpu", label=label, cache=False, prefix=prefix, prefix_rows=rows)
        assert torch.equal(a, b)
        assert torch.equal(a[:, :, :rows], prefix[:, :, :rows])
        drawn[rows] = a
    # Stopping early draws the same rows as a full draw.
    part = sample(model, 3, make_generators(7, 3), "cpu", label=label, until_row=2)
    assert torch.equal(part[:, :, :2], drawn[0][:, :, :2]) and (part[:, :, 2:] == 0).all()


def test_cache_gives_the_same_raw_outputs_as_the_network():
    spec = DataSpec(3, 4, 4, bits=8)
    for name in MODELS:
        model = tiny(name, spec, "categorical", **({"residual_blocks": 1} if name == "pixelcnn" else {}))
        x = random_images(spec, 2)
        with torch.no_grad():
            full = model(x)
            cache = model.sampling_cache(2, None)
            for i, j in itertools.product(range(4), range(4)):
                for c, _ in model.head.steps():
                    step = cache.step(x, i, j, c)
                    assert torch.allclose(step, full[:, model.head.step_raw(c), i, j], atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_seeded_samples_do_not_depend_on_the_batch_split(name):
    spec = DataSpec(1, 4, 4, bits=1)
    model = tiny(name, spec, dtype=torch.float32)
    whole = sample(model, 8, make_generators(3, 8), "cpu")
    parts = torch.cat([sample(model, 3, make_generators(3, 3), "cpu"),
                       sample(model, 5, make_generators(3, 5, start=3), "cpu")])
    assert torch.equal(whole, parts)
    assert set(whole.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(whole[0], whole[1]) or not torch.equal(whole[1], whole[2])


@pytest.mark.parametrize("name,cache", [("pixelcnn", True), ("pixelcnn", False), ("gated-pixelcnn", True),
                                        ("pixel-transformer", True), ("pixelrnn-row", True)])
def test_samples_follow_the_model_distribution(name, cache):
    """Empirical frequencies of all 8 images of one binary RGB pixel against exp(log p)."""
    spec = DataSpec(3, 1, 1, bits=1)
    model = tiny(name, spec)
    with torch.no_grad():
        for p in model.parameters():  # a peaked, non-uniform distribution
            p.mul_(4.0)
        x = all_images(spec)
        probs = log_likelihood(model, x).exp()
    n = 3000
    draws = sample(model, n, make_generators(11, n), "cpu", cache=cache)
    codes = (draws.view(n, 3) * torch.tensor([4.0, 2.0, 1.0], dtype=draws.dtype)).sum(1).long()
    index = (x.view(8, 3) * torch.tensor([4.0, 2.0, 1.0], dtype=x.dtype)).sum(1).long()
    counts = torch.bincount(codes, minlength=8)[index].double()
    expected = n * probs
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert probs.max() > 0.2  # the check below is not against a near-uniform model
    assert chi2 < 30.0, f"chi-square {chi2:.1f} with 7 degrees of freedom"  # p < 1e-4 under the model


def test_sampled_levels_lie_on_the_8bit_grid():
    spec = DataSpec(3, 2, 2, bits=8)
    for likelihood in ("categorical", "logistic-mixture"):
        x = sample(tiny("gated-pixelcnn", spec, likelihood), 2, make_generators(0, 2), "cpu")
        levels = x * 255
        assert torch.allclose(levels, levels.round(), atol=1e-9) and x.min() >= 0 and x.max() <= 1


def test_sampler_rejects_bad_requests():
    model = tiny("pixelcnn", BINARY)
    with pytest.raises(ValueError, match="one generator per sample"):
        sample(model, 3, make_generators(0, 2), "cpu")
    with pytest.raises(ValueError, match="unconditional"):
        sample(model, 1, make_generators(0, 1), "cpu", label=1)
    with pytest.raises(ValueError, match="prefix"):
        sample(model, 1, make_generators(0, 1), "cpu", prefix_rows=1)
    conditional = tiny("gated-pixelcnn", DataSpec(1, 3, 3, bits=1, num_classes=2), conditional=True)
    with pytest.raises(ValueError, match="class-conditional"):
        sample(conditional, 1, make_generators(0, 1), "cpu")
    with pytest.raises(ValueError, match="labels must be in"):
        sample(conditional, 1, make_generators(0, 1), "cpu", label=2)


def test_completion_keeps_the_given_rows_and_writes_a_figure(tmp_path):
    spec = DataSpec(1, 5, 5, bits=1)
    model = tiny("gated-pixelcnn", spec)
    images = random_images(spec, 2, seed=3)
    out = complete(model, images, rows=2, n_completions=3, seed=0)
    assert out.shape == (2, 3, 1, 5, 5)
    assert torch.equal(out[:, :, :, :2], images[:, None, :, :2].expand(2, 3, 1, 2, 5))
    assert not torch.equal(out[0, 0], out[0, 1]) or not torch.equal(out[0, 1], out[0, 2])
    again = complete(model, images, rows=2, n_completions=3, seed=0)
    assert torch.equal(out, again)
    path = save_completion_figure(images, out, 2, tmp_path / "completion.png")
    assert path.stat().st_size > 1000


# ---- masks and weights ------------------------------------------------------------------


def test_causal_mask_patterns():
    g3 = torch.arange(3)
    a = causal_mask(g3, g3, (3, 3), (1, 1), "A")
    b = causal_mask(g3, g3, (3, 3), (1, 1), "B")
    assert torch.equal(a[:, :, 0], torch.ones(3, 3, 3)) and torch.equal(a[:, :, 2], torch.zeros(3, 3, 3))
    assert torch.equal(a[:, :, 1, 0], torch.ones(3, 3)) and torch.equal(a[:, :, 1, 2], torch.zeros(3, 3))
    assert torch.equal(a[:, :, 1, 1], torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0]]))  # R sees nothing, B sees R, G
    assert torch.equal(b[:, :, 1, 1], torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 1]]))
    assert torch.equal(channel_groups(6, 3), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.equal(channel_groups(7, 3), torch.tensor([0, 0, 0, 1, 1, 2, 2]))
    with pytest.raises(ValueError, match="odd"):
        MaskedConv2d.raster(1, 1, 4, "A")


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_and_training_leave_masked_weights_alone(name, tmp_path):
    spec = RGB
    model = tiny(name, spec, "categorical", dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = random_images(spec, 2, dtype=torch.float32)
    model(x)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "forward changed a weight or buffer"
    masked = [m for m in model.modules() if isinstance(m, MaskedConv2d)]
    if masked:  # the stored weights keep their values under the mask (it is applied functionally)
        assert any(((m.mask == 0) & (m.weight != 0)).any() for m in masked)
        loss = -log_likelihood(model, x).mean()
        loss.backward()
        for m in masked:
            assert (m.weight.grad[m.mask == 0] == 0).all()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    twin = tiny(name, spec, "categorical", dtype=torch.float32, seed=1)
    twin.load_state_dict(load_file(str(path)))
    assert torch.equal(model(x), twin(x))


@pytest.mark.parametrize("spec,likelihood", CASES)
@pytest.mark.parametrize("name", list(MODELS))
def test_models_pass_the_shared_model_tester(name, spec, likelihood, tmp_path):
    model = tiny(name, spec, likelihood, dtype=torch.float32)
    card = model.card
    assert (card.family, card.default_objective, card.sampler_names) == ("autoregressive", "nll", ("autoregressive",))
    check_model(model, NLL(NLL.Config(), spec), {"x": random_images(spec, 4, dtype=torch.float32)}, tmp_path)


def test_likelihood_choice_is_checked():
    with pytest.raises(ValueError, match="binary data"):
        AutoregressiveHead.create("bernoulli", RGB)
    with pytest.raises(ValueError, match="8-bit data"):
        AutoregressiveHead.create("logistic-mixture", BINARY)
    assert AutoregressiveHead.create("auto", BINARY).likelihood == "bernoulli"
    assert AutoregressiveHead.create("auto", RGB).likelihood == "categorical"
    with pytest.raises(ValueError, match="labelled dataset"):
        tiny("gated-pixelcnn", BINARY, conditional=True)


# ---- the discretized logistic mixture ---------------------------------------------------


def _mixture(C: int, M: int, n: int, seed: int = 0) -> DiscretizedLogisticMixture:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, mixture_raw_channels(C, M), 1, 1, generator=g, dtype=torch.float64)
    dist = DiscretizedLogisticMixture.from_raw(raw, C, M)
    # Spread the locations and scales over hard cases: tails, edges, sharp and flat components.
    dist.loc = torch.rand(dist.loc.shape, generator=g, dtype=torch.float64) * 3 - 1.5
    dist.log_scale = torch.rand(dist.log_scale.shape, generator=g, dtype=torch.float64) * 8 - 7
    return dist


def _levels(n: int) -> torch.Tensor:
    return torch.arange(256, dtype=torch.float64) / 255


def test_mixture_masses_of_one_subpixel_sum_to_one():
    dist = _mixture(1, 5, 1)
    x = _levels(256).view(256, 1, 1, 1)
    rep = DiscretizedLogisticMixture(dist.logits.expand(256, -1, -1, -1), dist.loc.expand(256, -1, -1, -1, -1),
                                     dist.log_scale.expand(256, -1, -1, -1, -1),
                                     dist.coeffs.expand(256, -1, -1, -1, -1))
    total = torch.logsumexp(rep.log_prob(x).flatten(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-12)


def test_mixture_colour_conditionals_sum_to_one_and_chain_to_the_joint():
    C, M = 3, 4
    base = _mixture(C, M, 1, seed=2)
    g = torch.Generator().manual_seed(3)
    r, gr = torch.randint(0, 256, (2,), generator=g).tolist()

    def expand(d, n):
        return DiscretizedLogisticMixture(d.logits.expand(n, -1, -1, -1), d.loc.expand(n, -1, -1, -1, -1),
                                          d.log_scale.expand(n, -1, -1, -1, -1), torch.atanh(d.coeffs).expand(
                                              n, -1, -1, -1, -1))
    d = expand(base, 256)
    lv = _levels(256)
    x_g = torch.stack([torch.full((256,), r / 255.0, dtype=torch.float64), lv, torch.zeros(256, dtype=torch.float64)],
                      1).view(256, 3, 1, 1)
    x_b = torch.stack([torch.full((256,), r / 255.0, dtype=torch.float64), torch.full((256,), gr / 255.0,
                       dtype=torch.float64), lv], 1).view(256, 3, 1, 1)
    assert torch.logsumexp(d.log_prob(x_g)[:, 1].flatten(), 0).exp().item() == pytest.approx(1.0, abs=1e-12)
    lp_b = d.log_prob(x_b)
    assert torch.logsumexp(lp_b[:, 2].flatten(), 0).exp().item() == pytest.approx(1.0, abs=1e-12)
    # The chain-rule terms add up to the joint computed directly from the paper's formula.
    from genlab.nn.logistic_mixture import discretized_logistic_log_mass as mass
    y = x_b[5, :, 0, 0] * 2 - 1
    a = torch.tanh(torch.atanh(base.coeffs))[0, :, :, 0, 0]  # (3, M): alpha, beta, gamma
    locs = base.loc[0, :, :, 0, 0]
    means = [locs[0], locs[1] + a[0] * y[0], locs[2] + a[1] * y[0] + a[2] * y[1]]
    log_pi = torch.log_softmax(base.logits[0, :, 0, 0], 0)
    joint = torch.logsumexp(log_pi + sum(mass(y[c], means[c], base.log_scale[0, c, :, 0, 0]) for c in range(3)), 0)
    assert lp_b[5].sum().item() == pytest.approx(joint.item(), abs=1e-12)


def test_one_component_mixture_matches_the_discretized_logistic():
    g = torch.Generator().manual_seed(4)
    loc, log_scale = torch.rand(256, generator=g, dtype=torch.float64) * 2 - 1, torch.full((256,), -2.5,
                                                                                            dtype=torch.float64)
    x = _levels(256).view(256, 1, 1, 1)
    shape = (256, 1, 1, 1, 1)
    mix = DiscretizedLogisticMixture(torch.zeros(256, 1, 1, 1, dtype=torch.float64), loc.view(shape),
                                     log_scale.view(shape), torch.zeros(256, 0, 1, 1, 1, dtype=torch.float64))
    ref = DiscretizedLogistic(loc.view(256, 1, 1, 1), log_scale.view(256, 1, 1, 1)).log_prob(x)
    # Both take every bin's mass in log space, so they agree in the tails too.
    assert torch.allclose(mix.log_prob(x), ref, atol=1e-9)


def test_mixture_sampling_matches_its_probabilities_and_mean():
    dist = _mixture(1, 3, 1, seed=6)
    dist.log_scale = dist.log_scale.clamp(min=-3.5)  # spread over a few dozen bins
    n = 20000
    big = DiscretizedLogisticMixture(dist.logits.expand(1, -1, 1, n), dist.loc.expand(1, -1, -1, 1, n),
                                     dist.log_scale.expand(1, -1, -1, 1, n), torch.zeros(1, 0, 3, 1, n,
                                                                                       dtype=torch.float64))
    draws = big.sample(make_generators(0, 1))  # (1, 1, 1, n)
    hist = torch.bincount((draws.flatten() * 255).round().long(), minlength=256).double() / n
    levels = _levels(256).view(256, 1, 1, 1)
    rep = DiscretizedLogisticMixture(dist.logits.expand(256, -1, -1, -1), dist.loc.expand(256, -1, -1, -1, -1),
                                     dist.log_scale.expand(256, -1, -1, -1, -1), torch.zeros(256, 0, 3, 1, 1,
                                                                                             dtype=torch.float64))
    probs = rep.log_prob(levels).flatten().exp()
    assert 0.5 * (hist - probs).abs().sum().item() < 0.03  # total variation; sampling noise is about 0.02
    exact_mean = (probs * _levels(256)).sum().item()
    assert dist.mean().item() == pytest.approx(exact_mean, abs=0.5 / 255)


# ---- objective and evaluation -----------------------------------------------------------


def test_objective_terms_and_exact_evaluator_agree(tmp_path):
    spec = DataSpec(1, 3, 3, bits=1)
    model = tiny("pixel-transformer", spec, dtype=torch.float32)
    images = all_images(spec).to(torch.uint8)[:50]
    test = ImageSet("toy", "test", images, None, spec, "binary")
    terms = NLL(NLL.Config(), spec)(model, test.batch(torch.arange(50)), "eval", 0)
    direct = -log_likelihood(model, images.float())
    assert torch.allclose(terms["loss"], direct) and torch.allclose(terms["nll_nats"], direct)
    assert torch.allclose(terms["bpd"], direct / (9 * math.log(2)))

    class Opts:
        batch_size = 16
        max_examples = None

    with torch.no_grad():
        result = exact_nll(model, NLL(NLL.Config(), spec), test, "cpu", Opts())
    assert result["nll"]["value"] == pytest.approx(direct.mean().item(), rel=1e-6)
    assert result["bpd"]["value"] == pytest.approx(direct.mean().item() / (9 * math.log(2)), rel=1e-6)
    assert result["nll"]["kind"] == "exact" and "toy/test, 50 images" in result["nll"]["protocol"]
    Opts.max_examples = 20
    assert "random subset of 20 of 50" in exact_nll(model, NLL(NLL.Config(), spec), test, "cpu", Opts())["bpd"][
        "protocol"]

    nll_map = pixel_nll(model, images[7].float())
    assert nll_map.shape == (3, 3)
    assert nll_map.sum().item() == pytest.approx(direct[7].item(), rel=1e-5)
    assert save_surprise_figure(images[7].float(), nll_map, tmp_path / "s.png").stat().st_size > 1000


@pytest.mark.parametrize("name", ["gated-pixelcnn", "pixel-transformer"])
def test_class_conditional_evaluation_reports_the_marginal_and_labels_the_conditional(name):
    from genlab.ood.likelihood import family_likelihood

    spec = DataSpec(1, 2, 2, bits=1, num_classes=3)
    model = tiny(name, spec, conditional=True, dtype=torch.float32)  # the evaluator feeds float32 images
    with torch.no_grad():
        for p in model.parameters():  # class biases start at zero: make the classes differ
            p.add_(0.5 * torch.randn_like(p))
    images = all_images(spec, torch.float32)  # all 16 binary 2x2 images
    labels = torch.arange(16) % 3
    test = ImageSet("toy", "test", images.to(torch.uint8), labels, spec, "binary")
    with torch.no_grad():  # brute force: log p(x|y) for every class, then the uniform mixture
        log_cond = torch.stack([log_likelihood(model, images, torch.full((16,), k)) for k in range(3)])  # (3, 16)
    log_cond = log_cond.double()
    log_px = torch.logsumexp(log_cond, 0) - math.log(3)
    assert torch.logsumexp(log_px, 0).exp().item() == pytest.approx(1.0, abs=1e-6)  # a distribution over x

    class Opts:
        batch_size = 5
        max_examples = None

    with torch.no_grad():
        result = exact_nll(model, NLL(NLL.Config(), spec), test, "cpu", Opts())
    assert set(result) == {"nll", "bpd", "nll_conditional", "bpd_conditional"}
    assert result["nll"]["value"] == pytest.approx(-log_px.mean().item(), rel=1e-5)
    cond = -log_cond.gather(0, labels.view(1, -1)).squeeze(0)
    assert result["nll_conditional"]["value"] == pytest.approx(cond.mean().item(), rel=1e-5)
    assert result["bpd_conditional"]["value"] == pytest.approx(cond.mean().item() / (4 * math.log(2)), rel=1e-5)
    conditional = result["nll_conditional"]
    assert conditional["of"] == "p(x | y)" and "-log p(x | y)" in conditional["protocol"]
    assert result["nll"]["of"] == "p(x)" and "uniform prior" in result["nll"]["protocol"]
    # -log p(x) lies between min_y -log p(x|y) and -log p(x|true y) + log K, image by image.
    per_image = -log_px
    assert (per_image >= -log_cond.max(0).values - 1e-9).all() and (per_image <= cond + math.log(3) + 1e-9).all()
    assert (per_image < cond).any() and (per_image > cond).any()  # neither name stands for the other
    # The OOD scores use the same marginal.
    lik = family_likelihood(model, NLL(NLL.Config(), spec))
    assert torch.allclose(lik.nll(images, None).double(), per_image, atol=1e-5)


def test_transformer_with_learned_positions_is_causal_normalized_and_cacheable():
    spec = DataSpec(3, 2, 2, bits=1)
    model = tiny("pixel-transformer", spec, positions="learned")
    assert not (dependency(model) & ~torch.ones(12, 12, dtype=torch.bool).tril(-1)).any()
    with torch.no_grad():
        assert torch.logsumexp(log_likelihood(model, all_images(spec)), 0).exp().item() == pytest.approx(1, abs=1e-9)
    a = sample(model, 3, make_generators(1, 3), "cpu", cache=True)
    assert torch.equal(a, sample(model, 3, make_generators(1, 3), "cpu", cache=False))


def test_skew_and_unskew_are_inverse():
    from genlab.nn.recurrent import skew, unskew
    x = torch.randn(2, 3, 4, 5)
    s = skew(x)
    assert s.shape == (2, 3, 4, 8)
    assert torch.equal(s[:, :, 2, 2:7], x[:, :, 2]) and (s[:, :, 2, :2] == 0).all() and (s[:, :, 2, 7:] == 0).all()
    assert torch.equal(unskew(s, 5), x)
    # A diagonal of the image (i + j = 3) is a column of the skewed map.
    assert torch.equal(s[0, 0, :, 3], torch.stack([x[0, 0, i, 3 - i] for i in range(4)]))
