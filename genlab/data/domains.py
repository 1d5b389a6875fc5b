"""Two-domain data for unpaired translation: synthetic domains with an exact ground truth, and the two-domain stream.

A synthetic domain is a registered dataset made from MNIST by a pure, exact transform T
of the uint8 pixels, so that the test image i of the domain is exactly T(MNIST test image i)
and a translation can be scored against the true map:

===============  ===============================================  ===========================
name             T (on uint8 pixels, (N, 1, 28, 28))              exact inverse
===============  ===============================================  ===========================
mnist-inverted   255 - x (colour inversion)                       T itself
mnist-thick      grey dilation, flat 3x3 square footprint         none (dilation loses detail)
mnist-thin       grey erosion, flat 3x3 plus-shaped footprint     none
mnist-rot90      rotation by 90 degrees counter-clockwise         rotation by -90 degrees
mnist-colour     digit i in colour fg_i on colour bg_i (RGB,       ``grey_view`` (up to
                 (N, 3, 28, 28)), fg_i != bg_i drawn from 8       rounding; see below)
                 colours by ``colour_labels``
===============  ===============================================  ===========================

Coloured MNIST is a colour domain for grey <-> colour translation: pixel p of image i is
``bg_i + (fg_i - bg_i) * p / 255`` per channel, rounded, with the foreground and background colours
(indices into ``PALETTE``) drawn from ``sample_seed(COLOUR_SEED, i)`` (SplitMix64: the same on
every machine and torch version), so the colour labels of every image are known. Its colours
are not a function of the grey digit, so MNIST -> mnist-colour has no ground truth image; the way
back is the grey view of any RGB image (``grey_view``: distance in RGB from the image's background
colour, the median of its border pixels, scaled so the farthest pixel is 255), which recovers
the MNIST digit up to rounding when its brightest pixel is 255.

Dilation and erosion are taken over the pixels inside the image (as
``scipy.ndimage.grey_dilation``/``grey_erosion`` with ``mode="nearest"``; tests pin them).
Fashion-MNIST (``fashion-mnist``) is the domain with no correspondence to MNIST, and ``digits-28``
(genlab/data/digits.py) a second handwriting domain (other writers, other resolution) with the
same ten classes but no paired images: its translations are read by the MNIST LeNet (``READ_AS``).

A two-domain run names domain A in ``data.name`` and domain B in ``data.domain_b``. Each
step draws a batch from each domain independently (unpaired): two ``BatchStream``s with
different seeds, so batches stay a pure function of (seed, step) and resume exactly. When
both domains are made from the same images (mnist and mnist-inverted), domain A trains on
the first half of the training split and domain B on the second (``data.unpaired_halves``),
so no digit is ever seen in both domains. The two domains may differ in channels (grey <-> colour):
the run's ``DataSpec`` then records domain B's in ``channels_b``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from genlab.data.base import ImageSet
from genlab.data.catalog import Dataset, DatasetInfo
from genlab.data.idx import MNIST_FILES, load_idx_split
from genlab.data.loader import BatchStream
from genlab.errors import InputError
from genlab.nn.spec import DataSpec
from genlab.registry import DATASETS
from genlab.rng import sample_seed

Transform = Callable[[torch.Tensor], torch.Tensor]  # uint8 (N, C, H, W) -> uint8 (N, C, H, W)

SQUARE = torch.ones(3, 3, dtype=torch.bool)
PLUS = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
# Seed offset of domain B's batch order: independent of domain A's, still a function of the run's seed.
DOMAIN_B_SEED = 1_000_003


def _morphology(images: torch.Tensor, footprint: torch.Tensor, take_max: bool) -> torch.Tensor:
    """Grey dilation (max) or erosion (min) over a flat footprint, taken over in-image pixels only.

    The elementwise max/min of shifted views of the padded images: exact on uint8, no float copy
    of the whole set (60,000 MNIST images at once).
    """
    k = footprint.shape[0]
    h, w = images.shape[-2:]
    # Padding with the neutral value (0 for max, 255 for min) keeps windows at the border to in-image pixels.
    padded = F.pad(images, (k // 2,) * 4, value=0 if take_max else 255)
    reduce = torch.maximum if take_max else torch.minimum
    out = None
    for dy, dx in footprint.nonzero().tolist():
        view = padded[..., dy:dy + h, dx:dx + w]
        out = view.clone() if out is None else reduce(out, view)
    return out


def invert(images: torch.Tensor) -> torch.Tensor:
    return 255 - images


def thicken(images: torch.Tensor) -> torch.Tensor:
    return _morphology(images, SQUARE, take_max=True)


def thin(images: torch.Tensor) -> torch.Tensor:
    return _morphology(images, PLUS, take_max=False)


def rotate(images: torch.Tensor) -> torch.Tensor:
    return torch.rot90(images, 1, dims=(2, 3))


def unrotate(images: torch.Tensor) -> torch.Tensor:
    return torch.rot90(images, -1, dims=(2, 3))


# Coloured MNIST: 8 colours, the corners of the RGB cube; any two differ by at least 255 in one channel.
PALETTE = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                        [255, 255, 0], [0, 255, 255], [255, 0, 255]], dtype=torch.uint8)
PALETTE_NAMES = ("black", "white", "red", "green", "blue", "yellow", "cyan", "magenta")
COLOUR_SEED = 16  # the colours of image i come from sample_seed(COLOUR_SEED, i), in every split
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: RGB -> grey, the identity map's channel change


def colour_labels(n: int, seed: int = COLOUR_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground and background colour indices (n,) into ``PALETTE`` of images 0..n-1, never equal.

    Pure integer arithmetic on ``sample_seed(seed, i)``: the same on any machine or torch version.
    """
    k = len(PALETTE_NAMES)
    draws = [sample_seed(seed, i) for i in range(n)]
    fg = torch.tensor([h % k for h in draws], dtype=torch.int64)
    bg = (fg + 1 + torch.tensor([(h >> 8) % (k - 1) for h in draws], dtype=torch.int64)) % k
    return fg, bg


def colourize(images: torch.Tensor, fg: torch.Tensor | None = None, bg: torch.Tensor | None = None) -> torch.Tensor:
    """Grey digits uint8 (N, 1, H, W) -> RGB uint8 (N, 3, H, W): bg + (fg - bg) * p / 255 per channel.

    The palette's colours are corners of the RGB cube, so each channel is the digit p (fg 255 over
    bg 0), its negative 255 - p (0 over 255) or a constant: exact in uint8, no rounding and no float
    copy of the 60,000 training images. Colours default to ``colour_labels(N)``: image i of a split
    gets the colours of index i.
    """
    if fg is None or bg is None:
        fg, bg = colour_labels(len(images))
    x = images[:, 0]  # (N, H, W)
    out = torch.empty((len(images), 3, *x.shape[1:]), dtype=torch.uint8)
    for c in range(3):
        top, bottom = PALETTE[fg, c].view(-1, 1, 1), PALETTE[bg, c].view(-1, 1, 1)
        out[:, c] = torch.where(top > bottom, x, torch.where(top < bottom, 255 - x, bottom.expand_as(x)))
    return out


def grey_view(images: torch.Tensor) -> torch.Tensor:
    """RGB uint8 (N, 3, H, W) -> grey uint8 (N, 1, H, W): how far each pixel is from the background colour.

    The background colour is the per-channel median of the image's border pixels; the Euclidean
    RGB distance of each pixel from it is scaled so that the image's farthest pixel is 255 (an
    image of one colour is all 0). Inverts ``colourize`` up to rounding when the digit's
    brightest pixel is 255, whatever the two colours.
    """
    x = images.float()
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)  # (N, 3, P)
    background = border.median(dim=-1).values.view(-1, 3, 1, 1)
    distance = (x - background).square().sum(1, keepdim=True).sqrt()  # (N, 1, H, W)
    top = distance.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1, 1)
    return (255 * distance / top).round().clamp(0, 255).to(torch.uint8)


def as_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 images in another channel count, the plain way: grey -> RGB repeats, RGB -> grey is BT.601 luma.

    The identity map between a grey and a colour domain (the baseline a translation must beat).
    """
    have = images.shape[1]
    if have == channels:
        return images
    if (have, channels) == (1, 3):
        return images.expand(-1, 3, -1, -1).contiguous()
    if (have, channels) == (3, 1):
        weights = torch.tensor(LUMA, dtype=torch.float64).view(1, 3, 1, 1)
        return (images.double() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise InputError(f"cannot convert {have}-channel images to {channels} channels: only grey <-> RGB")


@dataclass(frozen=True)
class SyntheticDomain:
    """A domain made from a source dataset by a transform of each image (the true A -> B map when exact)."""

    name: str
    source: str  # the dataset the images come from
    forward: Transform  # source -> domain, exact on uint8 pixels
    inverse: Transform | None  # domain -> source where invertible (exactly, or as stated in the table above)
    description: str
    channels: int = 1
    # The transform draws a style per image (a colour), so a domain image is not a function of its source
    # image: the source -> domain direction has no ground truth to score against.
    styled: bool = False


SYNTHETIC = {d.name: d for d in (
    SyntheticDomain("mnist-inverted", "mnist", invert, invert, "MNIST with colours inverted (255 - x)"),
    SyntheticDomain("mnist-thick", "mnist", thicken, None,
                    "MNIST with thickened strokes: grey dilation, flat 3x3 square footprint"),
    SyntheticDomain("mnist-thin", "mnist", thin, None,
                    "MNIST with thinned strokes: grey erosion, flat 3x3 plus-shaped footprint"),
    SyntheticDomain("mnist-rot90", "mnist", rotate, unrotate, "MNIST rotated by 90 degrees counter-clockwise"),
    SyntheticDomain("mnist-colour", "mnist", colourize, grey_view,
                    "MNIST in colour: digit and background each one of 8 RGB colours, drawn per image "
                    f"(colour_labels, seed {COLOUR_SEED})", channels=3, styled=True),
)}

# Domains read by another dataset's shipped classifier: the 8x8 digits, upsampled into MNIST's 20x20
# box, are read by the MNIST LeNet (its accuracy on their real test images is reported beside it).
READ_AS = {"digits-28": "mnist"}


def source_of(name: str) -> str:
    """The dataset whose images a domain is made of (itself for a plain dataset)."""
    return SYNTHETIC[name].source if name in SYNTHETIC else name


def reader_of(name: str) -> str:
    """The dataset whose shipped classifier reads a domain's images (through ``canonical``)."""
    source = source_of(name)
    return READ_AS.get(source, source)


def canonical(name: str, images: torch.Tensor) -> torch.Tensor:
    """uint8 images of a domain as its reader's classifier reads them: float [0, 1], through the inverse if any."""
    inverse = SYNTHETIC[name].inverse if name in SYNTHETIC else None
    return (inverse(images) if inverse is not None else images).float() / 255


def true_map(a: str, b: str) -> Transform | None:
    """The A -> B map on uint8 images when one is known (exact, or as the table above states), else None."""
    if a == b:
        return lambda images: images
    if b in SYNTHETIC and SYNTHETIC[b].source == a:
        return None if SYNTHETIC[b].styled else SYNTHETIC[b].forward
    if a in SYNTHETIC and SYNTHETIC[a].source == b and SYNTHETIC[a].inverse is not None:
        return SYNTHETIC[a].inverse
    return None


def _register(domain: SyntheticDomain) -> None:
    class _Synthetic(Dataset):
        pairs = " (image i is a colouring of MNIST image i)" if domain.styled else " (exact ground-truth pairs)"
        info = DatasetInfo(name=domain.name, description=domain.description + pairs,
                           shape=(domain.channels, 28, 28), bits=8, classes=10, splits={"train": 60000, "test": 10000},
                           files=tuple(MNIST_FILES.values()), folder="mnist")

        def load(self, split: str, cfg) -> ImageSet:
            images, labels = load_idx_split(MNIST_FILES, split, cfg)
            note = f"{domain.description}; image i is T(MNIST {split} image i)"
            return self.imageset(split, domain.forward(images), labels, "scale", note)

    _Synthetic.__name__ = _Synthetic.__qualname__ = "Synthetic_" + domain.name.replace("-", "_")
    DATASETS.register(domain.name)(_Synthetic)


for _domain in SYNTHETIC.values():
    _register(_domain)


# ----------------------------------------------------------------------------------------------
# Two domains in one training stream


def halves(data: ImageSet, first: bool) -> ImageSet:
    """The first or second half of a split (the unpaired-halves rule)."""
    cut = len(data) // 2
    part = slice(0, cut) if first else slice(cut, len(data))
    labels = None if data.labels is None else data.labels[part]
    note = f"{data.note}; {'first' if first else 'second'} half ({cut} images) for unpaired training"
    return ImageSet(data.name, data.split, data.images[part], labels, data.spec, data.transform, note)


def check_pair(a: ImageSet, b: ImageSet) -> None:
    """Two domains must have images of one size (the translators keep H x W; channels may change)."""
    size_a, size_b = (a.spec.height, a.spec.width), (b.spec.height, b.spec.width)
    if size_a != size_b:
        raise InputError(f"domains {a.name} {size_a[0]}x{size_a[1]} and {b.name} {size_b[0]}x{size_b[1]} differ in "
                         "size: choose two datasets with images of one size (e.g. digits-28, not digits)")


def two_domain_spec(a: ImageSet, b: ImageSet) -> DataSpec:
    """The run's DataSpec: domain A's, with domain B's channels in ``channels_b`` when they differ."""
    check_pair(a, b)
    return replace(a.spec, channels_b=b.spec.channels if b.spec.channels != a.spec.channels else 0)


def split_domains(a: ImageSet, b: ImageSet, unpaired_halves: bool) -> tuple[ImageSet, ImageSet]:
    """Domains A and B of a training run: disjoint halves when both are made of the same images."""
    check_pair(a, b)
    if unpaired_halves and source_of(a.name) == source_of(b.name) and len(a) == len(b):
        return halves(a, True), halves(b, False)
    return a, b


class TwoDomainStream:
    """Unpaired batches: domain A as ``x``/``y``, domain B as ``x_b``/``y_b``, each a pure function of (seed, step).

    Epochs are counted in domain A's images.
    """

    def __init__(self, a: ImageSet, b: ImageSet, global_batch: int, accum: int, seed: int, rank: int = 0,
                 world: int = 1):
        self.a = BatchStream(a, global_batch, accum, seed, rank, world)
        self.b = BatchStream(b, global_batch, accum, seed + DOMAIN_B_SEED, rank, world)

    def micro_batches(self, step: int) -> list[dict]:
        out = []
        for batch_a, batch_b in zip(self.a.micro_batches(step), self.b.micro_batches(step)):
            batch = dict(batch_a, x_b=batch_b["x"])
            if "y" in batch_b:
                batch["y_b"] = batch_b["y"]
            out.append(batch)
        return out

    def epoch_of(self, step: int) -> float:
        return self.a.epoch_of(step)
