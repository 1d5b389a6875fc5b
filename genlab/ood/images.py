"""Bringing images from elsewhere into a model's format: size, channels, bits.

Three sources: another dataset's test split (``convert_imageset``, for `genlab ood`),
the user's own files (``read_user_image``, for `genlab score`), and the user's own
outlier set (``read_outlier_set``, for `genlab ood --ood PATH`: a folder of images, an
``.npz`` or an IDX file). All go through one rule, ``to_model_levels``, stated here once:

1. Depth. 16-bit grey (Pillow modes I;16*, I) becomes 8-bit by v / 257 rounded
   (65535 -> 255 exactly); a 1-bit image becomes 0/255; 32-bit float is refused.
   Palette, CMYK, YCbCr, LAB and HSV images are converted to RGB by Pillow.
2. Transparency (RGBA, LA, PA, palette with a transparent index) is composited
   over the dataset's background colour: black for MNIST-like data whose border
   pixels are dark, white otherwise (``background_of``), so a transparent margin
   looks like the training images' margin.
3. Channels. A grey model gets the ITU-R 601-2 luma L = R*299/1000 + G*587/1000 +
   B*114/1000 (Pillow's "L" conversion); a colour model gets grey replicated into R,
   G and B.
4. Size. The largest centred box with the model's aspect ratio is cropped (first, so
   no pixel outside it leaks in through a filter's support), shrunk by the largest
   whole factor that keeps it at least the model's size with a box average (Pillow
   ``reduce``), then resized with Lanczos to the model's width x height (Pillow's
   ``resize(..., reducing_gap=1.0)``). The box step makes the rule exact on images
   enlarged by pixel replication: a 28x28 image saved at 280x280 comes back as
   itself, where Lanczos alone would add ringing the model has never seen.
5. Bits. An 8-bit model takes the levels 0..255 as they are. A binary model takes
   one Bernoulli(k/255) draw per pixel from a seeded generator: the rule genlab uses
   for its binarized MNIST test sets (``genlab.data.dynamic.binarize_once``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from genlab.errors import InputError
from genlab.data.base import ImageSet
from genlab.data.dynamic import binarize_once
from genlab.data.folder import EXTENSIONS, open_image, scan_folder
from genlab.data.idx import parse_idx
from genlab.nn.spec import DataSpec


class ImageReadError(InputError):
    """A user's image file cannot be read or converted; the message names the file in one line."""


def _border(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, P): each image's outermost rows and columns, every channel."""
    return torch.cat([images[..., 0, :].flatten(1), images[..., -1, :].flatten(1),
                      images[..., :, 0].flatten(1), images[..., :, -1].flatten(1)], dim=1)


def _colour(level: float) -> str:
    return "black" if level < 128 else "white"


def background_of(data: ImageSet) -> str:
    """"black" or "white": the median border pixel of (up to 1000 of) the set's images, on the 0..255 scale."""
    images = data.images[:1000].float()
    if data.transform == "binary":
        images = images * 255
    return _colour(_border(images).median().item())


def image_backgrounds(levels: torch.Tensor) -> list[tuple[str, int]]:
    """Per image of uint8 (N, C, H, W) levels 0..255: ("black" | "white", its median border level).

    The border tells the polarity: MNIST-like data has white strokes on a black background,
    a scan of ink on paper the opposite."""
    medians = _border(levels.float()).median(dim=1).values
    return [(_colour(v), int(v)) for v in medians.tolist()]


def _centre_box(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred (left, top, right, bottom) box of ``size`` with the aspect ratio of ``target`` (w, h)."""
    w, h = size
    tw, th = target
    if w * th > h * tw:  # too wide: crop the sides
        cw = max(1, round(h * tw / th))
        left = (w - cw) // 2
        return left, 0, left + cw, h
    ch = max(1, round(w * th / tw))
    top = (h - ch) // 2
    return 0, top, w, top + ch


def to_model_levels(im, spec: DataSpec, background: str = "black"):
    """A Pillow image -> uint8 (C, H, W) levels 0..255 at the model's size and channels (steps 1-4 above).

    Args:
        im: an opened (loaded) Pillow image of any mode and size.
        spec: the model's data spec (channels 1 or 3, height, width).
        background: "black" or "white": what transparent pixels become.
    Returns:
        numpy uint8 (spec.channels, spec.height, spec.width), levels 0..255 (step 5 is the caller's).
    """
    from PIL import Image

    if background not in ("black", "white"):
        raise InputError(f"background must be black or white, not {background!r}")
    if spec.channels not in (1, 3):
        raise InputError(f"images convert to 1 (grey) or 3 (RGB) channels, not {spec.channels}")
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.int64)
        if a.min() < 0 or a.max() > 65535:
            raise InputError(f"mode {im.mode} values span {a.min()}..{a.max()}, outside the 16-bit range")
        im = Image.fromarray(np.rint(a / 257.0).astype(np.uint8), mode="L")
    elif im.mode == "F":
        raise InputError("32-bit float images are not supported: save it as an 8- or 16-bit PNG")
    elif im.mode == "1":
        im = im.convert("L")
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA" if (im.mode == "PA" or "transparency" in im.info) else "RGB")
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        fill = (0, 0, 0, 255) if background == "black" else (255, 255, 255, 255)
        im = Image.alpha_composite(Image.new("RGBA", im.size, fill), im.convert("RGBA"))
    im = im.convert("L" if spec.channels == 1 else "RGB")
    target = (spec.width, spec.height)
    if im.size != target:
        box = _centre_box(im.size, target)
        if box != (0, 0, *im.size):
            im = im.crop(box)
        im = im.resize(target, Image.Resampling.LANCZOS, reducing_gap=1.0)
    a = np.asarray(im, dtype=np.uint8)
    return a[None].copy() if a.ndim == 2 else a.transpose(2, 0, 1).copy()


def binarize_levels(levels: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 0..255 -> uint8 0/1 by one Bernoulli(k/255) draw per pixel (step 5 for binary models)."""
    return binarize_once(levels, seed)


def describe_rule(spec: DataSpec, background: str, seed: int) -> str:
    """One line stating the conversion to this model's format."""
    colour = "grey (ITU-R 601-2 luma)" if spec.channels == 1 else "RGB (grey replicated)"
    bits = ("8-bit levels" if spec.bits == 8 else
            f"binarized by one Bernoulli(k/255) draw per pixel (seed {seed})")
    return (f"16-bit /257, alpha over {background}, {colour}, centre crop to {spec.width}:{spec.height}, box "
            f"shrink by whole factors then Lanczos to {spec.width}x{spec.height}, {bits}")


def read_user_levels(path: str | Path, spec: DataSpec, background: str = "black") -> torch.Tensor:
    """One image file as uint8 (C, H, W) levels 0..255 at the model's size and channels (steps 1-4).

    Raises:
        ImageReadError: the file is missing, not an image, corrupt or of an unsupported kind;
            the one-line message names the file.
    """
    from PIL import ImageOps

    path = Path(path)
    try:
        with open_image(path) as im:
            im.load()
            levels = to_model_levels(ImageOps.exif_transpose(im), spec, background)
    except Exception as err:  # any decoder failure: name the file, keep Pillow's reason, drop the traceback
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ImageReadError(f"cannot read image {path}: {type(err).__name__}: {reason}") from None
    return torch.from_numpy(levels)


def to_model_bits(levels: torch.Tensor, spec: DataSpec, seed: int) -> torch.Tensor:
    """Step 5: 0..255 levels as they are for an 8-bit model, one seeded Bernoulli(k/255) draw for a binary one."""
    return binarize_levels(levels, seed) if spec.bits == 1 else levels


def read_user_image(path: str | Path, spec: DataSpec, background: str = "black", seed: int = 0) -> torch.Tensor:
    """One image file in the model's format.

    Args:
        path: a PNG, JPEG or any file Pillow reads.
        spec: the model's data spec.
        background: "black" or "white": what transparent pixels become.
        seed: seed of the Bernoulli draw for binary models.
    Returns:
        uint8 (C, H, W): 0..255 levels for an 8-bit model, 0/1 for a binary one.
    Raises:
        ImageReadError: as ``read_user_levels``.
    """
    return to_model_bits(read_user_levels(path, spec, background), spec, seed)


def convert_imageset(data: ImageSet, spec: DataSpec, background: str, seed: int) -> tuple[ImageSet, str]:
    """Another dataset's split in a model's format (same size, channels and bits).

    Args:
        data: the source split (uint8 images, any of genlab's transforms).
        spec: the model's data spec.
        background: "black" or "white" (only used by images with transparency; datasets have none).
        seed: seed of the Bernoulli draw when the model is binary and the source is not.
    Returns:
        (the converted ImageSet, with transform "scale" for 8-bit models and "binary" for binary ones,
        a one-line note of what was done).
    """
    from PIL import Image

    src = data.spec
    if data.transform == "bernoulli":
        levels = data.images  # 0..255 intensities, binarized below when the model is binary
    elif data.transform == "binary":
        levels = data.images * 255
    else:
        levels = data.images
    steps = []
    same_shape = (src.channels, src.height, src.width) == (spec.channels, spec.height, spec.width)
    if not same_shape:
        mode = "L" if src.channels == 1 else "RGB"
        arrays = []
        for img in levels.cpu().numpy():
            pil = Image.fromarray(img[0] if src.channels == 1 else img.transpose(1, 2, 0), mode=mode)
            arrays.append(to_model_levels(pil, spec, background))
        levels = torch.from_numpy(np.stack(arrays))
        colour = {(3, 1): "ITU-R 601-2 luma", (1, 3): "grey replicated to RGB"}.get((src.channels, spec.channels))
        steps.append(f"{src.channels}x{src.height}x{src.width} -> {spec.channels}x{spec.height}x{spec.width}"
                     + (f" by {colour}" if colour else "")
                     + ("" if (src.height, src.width) == (spec.height, spec.width)
                        else f", centre crop to {spec.width}:{spec.height}, box shrink, Lanczos"))
    if spec.bits == 1:
        source_binary = data.transform == "binary"
        images = (levels // 255).to(torch.uint8) if source_binary and same_shape else binarize_levels(levels, seed)
        transform = "binary"
        if not (source_binary and same_shape):
            steps.append(f"binarized by one Bernoulli(k/255) draw per pixel (seed {seed})")
    else:
        images, transform = levels, "scale"
        if data.transform == "binary":
            steps.append("binary 0/1 pixels shown to an 8-bit model as levels 0/255")
    note = f"{data.name}/{data.split}: " + ("; ".join(steps) if steps else "already in the model's format")
    out = ImageSet(data.name, data.split, images.contiguous(), data.labels, spec, transform, note)
    return out, note


def is_outlier_path(name: str) -> bool:
    """Whether an --ood value names a user's set (an existing folder or file) rather than a dataset."""
    return Path(name).expanduser().exists()


def _array_images(a: np.ndarray, path: Path) -> torch.Tensor:
    """An .npz/IDX array as uint8 (N, C, H, W) levels 0..255: (N, H, W), (N, C, H, W) or (N, H, W, C), C 1 or 3."""
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255  # binary images: 0/1 -> levels 0/255
    if a.dtype != np.uint8:
        raise InputError(f"{path}: images must be uint8 levels 0..255 (or bool), not {a.dtype}: convert them with "
                         "np.rint(x * 255).astype(np.uint8) for floats in [0, 1]")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)  # channels last -> first
    if a.ndim != 4 or a.shape[1] not in (1, 3) or a.shape[0] < 1:
        raise InputError(f"{path}: an array of shape {a.shape} is not images: give (N, H, W), (N, C, H, W) or "
                         "(N, H, W, C) with C = 1 or 3")
    return torch.from_numpy(np.array(a, dtype=np.uint8, order="C"))  # a copy: np.load gives read-only arrays


def _read_array_file(path: Path) -> torch.Tensor:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:  # no pickles: a file handed to us runs no code
            keys = list(z.files)
            key = "images" if "images" in keys else keys[0] if len(keys) == 1 else None
            if key is None:
                raise InputError(f"{path} holds arrays [{', '.join(keys)}]: save the images as one array, "
                                 "or name it 'images'")
            return _array_images(z[key], path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzipped, as the official MNIST files
        data = gzip.decompress(data)
    return _array_images(parse_idx(data, path), path)


def read_outlier_set(path: str | Path, spec: DataSpec, background: str) -> ImageSet:
    """A user's outlier set as 8-bit levels, ready for ``convert_imageset`` like a dataset's test split.

    Args:
        path: a folder of images (directly inside or in subfolders; each file converted by the rule of
            `genlab score`, steps 1-4), an ``.npz`` holding one uint8 array (or one named "images"), or an
            IDX file of unsigned bytes, gzipped or not (as MNIST's); arrays are (N, H, W), (N, C, H, W) or
            (N, H, W, C).
        spec: the model's data spec.
        background: "black" or "white": what transparent pixels become.
    Returns:
        ImageSet named after the path, split "all", uint8 levels 0..255 with transform "scale" (step 5,
        binarization for binary models, is ``convert_imageset``'s), no labels.
    """
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() in EXTENSIONS:
        raise InputError(f"{path} is one image: score it with `genlab score RUN_DIR {path}`, or give --ood a "
                         "folder of images")
    if path.is_dir():
        files, _, _ = scan_folder(path)
        images = torch.stack([read_user_levels(f, spec, background) for f in files])
        note = f"{path}: {len(files)} image files, each converted by the rule of `genlab score`"
    else:
        images = _read_array_file(path)
        note = f"{path}: {images.shape[0]} uint8 images of {'x'.join(map(str, images.shape[1:]))}"
    c, h, w = images.shape[1:]
    return ImageSet(path.name, "all", images, None, DataSpec(c, h, w, bits=8), "scale", note)
