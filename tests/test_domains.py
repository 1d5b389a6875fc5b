"""Translation domains beyond the exact MNIST transforms: digits-28, coloured MNIST, and grey <-> colour runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.config import RunConfig, apply_overrides
from genlab.data import load_dataset
from genlab.data.base import ImageSet
from genlab.data.digits import to_mnist_format
from genlab.data.domains import (PALETTE, as_channels, colour_labels, colourize, grey_view, reader_of, split_domains,
                                 true_map, two_domain_spec)
from genlab.errors import InputError
from genlab.nn.spec import DataSpec
from genlab.train.run import build_model, build_objective


def test_digits_28_is_the_8x8_digits_bilinear_in_a_centred_20x20_box():
    from genlab.config import DataConfig

    small, big = (load_dataset(name, "test", DataConfig()) for name in ("digits", "digits-28"))
    assert big.images.shape == (300, 1, 28, 28) and big.images.dtype == torch.uint8
    assert torch.equal(small.labels, big.labels)  # the same images and split
    frame = torch.ones(28, 28, dtype=torch.bool)
    frame[4:24, 4:24] = False
    assert (big.images[..., frame] == 0).all()  # MNIST's 4-pixel margin around the 20x20 box
    assert reader_of("digits-28") == "mnist"
    # A constant 8x8 stays constant under bilinear resampling; a single bright pixel spreads symmetrically.
    const = to_mnist_format(np.full((1, 8, 8), 16.0))
    assert (const[0, 0, 4:24, 4:24] == 255).all()
    dot = np.zeros((1, 8, 8))
    dot[0, 3:5, 3:5] = 16
    box = to_mnist_format(dot)[0, 0, 4:24, 4:24]
    for mirror in (box.flip(0), box.flip(1), box.T):  # symmetric up to the rounding of float sums
        assert (box.int() - mirror.int()).abs().max() <= 1
    assert box[9, 9] == 255 and box[0].sum() == 0
    assert torch.equal(to_mnist_format(dot), to_mnist_format(dot))


def test_colour_labels_are_seeded_distinct_and_pinned():
    fg, bg = colour_labels(2000)
    assert torch.equal(fg, colour_labels(2000)[0]) and torch.equal(bg, colour_labels(2000)[1])
    assert (fg != bg).all() and fg.min() == 0 and fg.max() == 7 and bg.min() == 0 and bg.max() == 7
    assert torch.equal(colour_labels(5)[0], fg[:5])  # image i's colours do not depend on how many are drawn
    # Pinned (SplitMix64 of (16, i)): a change here changes every coloured-MNIST image.
    assert fg[:6].tolist() == [3, 1, 2, 1, 6, 2] and bg[:6].tolist() == [6, 4, 3, 0, 2, 7]
    assert not torch.equal(colour_labels(50, seed=1)[0], fg[:50])


def test_colourize_paints_the_known_colours_and_grey_view_undoes_it():
    g = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (6, 1, 10, 10), generator=g, dtype=torch.uint8)
    grey[:, :, 0, :] = grey[:, :, -1, :] = grey[:, :, :, 0] = grey[:, :, :, -1] = 0  # background border
    grey[:, :, 5, 5] = 255  # the brightest pixel at full ink, as in MNIST
    fg, bg = colour_labels(6)
    rgb = colourize(grey, fg, bg)
    assert rgb.shape == (6, 3, 10, 10) and rgb.dtype == torch.uint8
    for i in range(6):  # ground truth: ink is exactly the foreground colour, paper the background colour
        assert torch.equal(rgb[i, :, 5, 5], PALETTE[fg[i]]) and torch.equal(rgb[i, :, 0, 0], PALETTE[bg[i]])
    # Between the two: bg + (fg - bg) * p / 255 per channel, which the palette's corners keep integral.
    want = PALETTE[bg].double().view(-1, 3, 1, 1) + (PALETTE[fg].double() - PALETTE[bg].double()).view(-1, 3, 1, 1) \
        * grey.double() / 255
    assert torch.equal(rgb.double(), want)
    assert torch.equal(colourize(grey), rgb)  # default colours: colour_labels of the image index
    assert (grey_view(rgb).int() - grey.int()).abs().max() <= 1  # rounding only
    assert (grey_view(torch.full((1, 3, 4, 4), 77, dtype=torch.uint8)) == 0).all()  # one colour: no ink
    assert torch.equal(as_channels(grey, 3), grey.expand(-1, 3, -1, -1))
    assert torch.equal(as_channels(as_channels(grey, 3), 1), grey)  # luma weights sum to 1
    with pytest.raises(InputError):
        as_channels(rgb, 2)


def test_coloured_mnist_is_a_colouring_of_the_same_mnist_images(data_root):
    from genlab.config import DataConfig

    cfg = DataConfig(root=str(data_root))
    mnist, colour = (load_dataset(name, "test", cfg) for name in ("mnist", "mnist-colour"))
    assert colour.images.shape == (10000, 3, 28, 28) and torch.equal(colour.labels, mnist.labels)
    assert torch.equal(colour.images, colourize(mnist.images, *colour_labels(10000)))
    assert (grey_view(colour.images).int() - mnist.images.int()).abs().max() <= 1
    assert true_map("mnist", "mnist-colour") is None  # the colour is not a function of the digit
    assert true_map("mnist-colour", "mnist") is grey_view


def _set(name: str, channels: int, size: int = 4, n: int = 20) -> ImageSet:
    images = torch.zeros(n, channels, size, size, dtype=torch.uint8)
    return ImageSet(name, "train", images, None, DataSpec(channels, size, size, 8, 0), "scale")


def test_domains_may_differ_in_channels_but_not_in_size():
    spec = two_domain_spec(_set("mnist", 1), _set("mnist-colour", 3))
    assert spec.channels == 1 and spec.channels_b == 3
    assert spec.domain("b") == DataSpec(3, 4, 4, 8, 0) and spec.domain("a") == DataSpec(1, 4, 4, 8, 0)
    assert "channels_b" in spec.to_dict() and DataSpec(**spec.to_dict()) == spec
    assert two_domain_spec(_set("a", 1), _set("b", 1)).channels_b == 0
    assert "channels_b" not in DataSpec(1, 4, 4, 8).to_dict()  # one-domain run folders read as before
    with pytest.raises(InputError, match="size"):
        split_domains(_set("digits", 1, 8), _set("mnist", 1, 28), True)


def _cfg(extra=()):
    return apply_overrides(RunConfig.create("cyclegan"), [
        "model.width=4", "model.n_down=1", "model.n_blocks=1", "model.d_width=4", "objective.pool_size=3", *extra])


def test_cyclegan_translates_between_grey_and_colour():
    spec = DataSpec(1, 8, 8, 8, 10, channels_b=3)
    with pytest.raises(InputError, match="lambda_idt=0"):
        build_objective(_cfg(), spec)  # G(b) ~ b would compare a colour image with a grey one
    cfg = _cfg(["objective.lambda_idt=0"])
    model, objective = build_model(cfg, spec), build_objective(cfg, spec)
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 3, 8, 8)
    assert model.translate(a, "a2b").shape == (2, 3, 8, 8) and model.translate(b, "b2a").shape == (2, 1, 8, 8)
    for phase in ("G", "D"):
        terms = objective(model, {"x": a, "x_b": b}, phase, 0)
        assert terms["loss"].shape == (2,) and torch.isfinite(terms["loss"]).all()


def test_a_grey_to_colour_run_trains_translates_and_reports(tmp_path):
    """digits (8x8 grey) <-> a folder of 8x8 RGB images: no dataset download needed."""
    from PIL import Image

    import genlab
    from genlab.api import translate_files
    from genlab.reports.translation import translation_figures
    from genlab.train.loop import train
    from genlab.train.run import load_run, read_spec

    folder = tmp_path / "colour"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(12):
        pixels = torch.randint(0, 256, (8, 8, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    cfg = _cfg(["data.name=digits", "data.domain_b=folder", f"data.path={folder}", "objective.lambda_idt=0",
                "train.batch_size=4", "train.steps=2", "train.progress=false", "train.device=cpu"])
    train(cfg, tmp_path / "run")
    assert read_spec(tmp_path / "run").channels_b == 3
    run = genlab.load(tmp_path / "run", device="cpu")
    assert run.translate(torch.rand(2, 1, 8, 8), "a2b").shape == (2, 3, 8, 8)
    assert run.translate(torch.rand(2, 3, 8, 8), "b2a").shape == (2, 1, 8, 8)
    with pytest.raises(InputError):
        run.translate(torch.rand(2, 1, 8, 8), "b2a")  # domain B's images are RGB
    figs = translation_figures(load_run(tmp_path / "run"), tmp_path, "cpu")
    assert len(figs) == 2 and (tmp_path / "translations_b2a.png").exists()
    written = translate_files(tmp_path / "run", [folder / "0.png"], "b2a", tmp_path / "out", device="cpu", log=lambda m: None)
    assert Image.open(written[0]).mode == "L"  # a colour image translated to the grey domain
    written = translate_files(tmp_path / "run", [folder / "1.png"], "a2b", tmp_path / "out", device="cpu", log=lambda m: None)
    assert Image.open(written[0]).mode == "RGB"


class _Decolour(torch.nn.Module):
    """MNIST <-> coloured MNIST: white-on-black RGB one way (a valid colouring), the grey view the other."""

    def translate(self, x, direction="a2b"):
        if direction == "a2b":
            return x.expand(-1, 3, -1, -1)
        return grey_view((x * 255).round().to(torch.uint8)).float() / 255


def test_translation_evaluator_handles_a_channel_change_and_unpaired_digit_domains(data_root, tmp_path):
    from genlab.config import DataConfig
    from genlab.eval.options import EvalOptions
    from genlab.eval.translation import evaluate_translation

    data = DataConfig(name="mnist", domain_b="mnist-colour", root=str(data_root))
    opts = EvalOptions(max_examples=200, n_reference=500, batch_size=100, data=data, cache_dir=str(tmp_path))
    out = evaluate_translation(_Decolour(), None, load_dataset("mnist", "test", data), "cpu", opts)
    assert "gt_l1_a2b" not in out  # no ground truth towards a colour chosen per image
    assert out["gt_l1_b2a"]["value"] < 1 / 255  # the grey view recovers MNIST up to rounding
    for d in ("a2b", "b2a"):
        assert out[f"label_preservation_{d}"]["value"] > 90 and f"label_preservation_{d}_true_map" in out
    # MNIST <-> digits-28: the same ten classes without pairs: label preservation, read by the MNIST LeNet,
    # beside its accuracy on real digits-28 test images; no purity, no ground truth.
    data = DataConfig(name="mnist", domain_b="digits-28", root=str(data_root))
    opts = EvalOptions(max_examples=100, n_reference=300, batch_size=100, data=data, cache_dir=str(tmp_path))
    out = evaluate_translation(_Identity(), None, load_dataset("mnist", "test", data), "cpu", opts)
    assert not any(k.startswith(("purity", "gt_l1")) for k in out)
    assert out["label_preservation_a2b"]["value"] == out["label_preservation_a2b_identity"]["value"] > 90
    assert 50 < out["label_preservation_a2b_target_test"]["value"] < 95  # the LeNet on real upsampled 8x8 digits
    assert "fid_mnist-lenet-v1_b2a_target_test" in out


class _Identity(torch.nn.Module):
    def translate(self, x, direction="a2b"):
        return x


def test_mnist_to_fashion_is_scored_by_the_purity_of_the_digit_to_garment_map(data_root, tmp_path):
    from genlab.config import DataConfig
    from genlab.eval import translation
    from genlab.eval.options import EvalOptions

    data = DataConfig(name="mnist", domain_b="fashion-mnist", root=str(data_root))
    opts = EvalOptions(max_examples=100, n_reference=300, batch_size=100, data=data, cache_dir=str(tmp_path))
    out = translation.evaluate_translation(_Identity(), None, load_dataset("mnist", "test", data), "cpu", opts)
    assert {"purity_a2b", "purity_b2a"} <= out.keys() and "label_preservation_a2b" not in out
    net = translation.domain_feature_net("fashion-mnist", opts)
    garments = load_dataset("fashion-mnist", "test", data)
    digits = torch.arange(200) % 10
    # Every digit of class c becomes the same garment: a consistent map, purity 100 %.
    one_each = torch.stack([garments.images[(garments.labels == (c + 3) % 10).nonzero()[0, 0]] for c in range(10)])
    assert translation._purity(net, one_each[digits].float() / 255, digits, 10) == 100
    # Garments drawn without regard to the digit: each digit class spreads over the garment classes.
    unrelated = garments.images[:200].float() / 255
    assert translation._purity(net, unrelated, digits, 10) < 50
