"""A user's own folder of images (PNG, JPEG, ...), read with Pillow.

Layout: either images directly in ``data.path`` (unlabelled), or one subfolder
per class (labels are the indices of the sorted subfolder names; images may sit
deeper inside a class folder). Every image is brought to the same 8-bit form:

* 16-bit grey (Pillow modes I;16*, I) is mapped to 8 bits by v / 257 rounded
  (65535 -> 255 exactly), not clipped as a plain Pillow conversion would do;
* transparency (RGBA, LA, palette with transparency) is composited over white;
* colour becomes grey with Pillow's ITU-R 601-2 luma when ``data.image_channels == 1``;
* EXIF orientation is applied, then the image is centre-cropped to a square and
  resized with Lanczos to ``data.image_size`` (0 keeps the size the images
  have, which must then be the same for all).

There is no official split: ``data.test_fraction`` of the images (at least one)
are held out by ``seeded_split(..., seed=0)`` over the sorted file list.

Config fields read (with these defaults until they exist in ``DataConfig``):
``path`` (""), ``image_size`` (0), ``channels`` (3), ``test_fraction`` (0.1).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from genlab.data.base import ImageSet
from genlab.data.catalog import Dataset, DatasetInfo, seeded_split
from genlab.data.download import data_root
from genlab.data.errors import DatasetError, describe
from genlab.errors import InputError
from genlab.nn.spec import DataSpec
from genlab.registry import DATASETS

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
SPLIT_SEED = 0
# Formats decoded by Pillow's own code. Never EPS/PS: Pillow hands those to Ghostscript, a program.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")
# Decompression bombs: a 30 kB PNG can claim 10^10 pixels. Refused from the header, before any
# pixel is decoded, below Pillow's own threshold (89.5 Mpixel, only a warning up to twice that).
MAX_IMAGE_PIXELS = 8192 * 8192


def open_image(path: str | Path):
    """``path`` opened by Pillow with its pixels not yet decoded (use as a context manager).

    Raises:
        InputError: more than ``MAX_IMAGE_PIXELS`` pixels (a decompression bomb).
        OSError (PIL.UnidentifiedImageError): not one of ``IMAGE_FORMATS``.
    """
    from PIL import Image

    im = Image.open(path, formats=IMAGE_FORMATS)
    width, height = im.size
    if width * height > MAX_IMAGE_PIXELS:
        im.close()
        raise InputError(f"{width}x{height} pixels is over genlab's limit of {MAX_IMAGE_PIXELS:,} "
                         "(a decompression bomb, or a photo to shrink first)")
    return im


def _options(cfg) -> tuple[str, int, int, float]:
    path = str(getattr(cfg, "path", ""))
    size, channels = int(getattr(cfg, "image_size", 0)), int(getattr(cfg, "image_channels", 3))
    fraction = float(getattr(cfg, "test_fraction", 0.1))
    if channels not in (1, 3):
        raise DatasetError(f"data.image_channels={channels}: the folder dataset makes grey (1) or RGB (3) images")
    if size < 0:
        raise DatasetError(f"data.image_size={size} must be >= 0 (0 keeps the images' own size)")
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"data.test_fraction={fraction} must be strictly between 0 and 1")
    return path, size, channels, fraction


def resolve_folder(path: str, cfg) -> Path:
    """``path`` as given (relative to the working directory), else under the data root."""
    if not path:
        raise DatasetError("the folder dataset needs data.path: --set data.path=/path/to/images "
                           "(images directly inside, or one subfolder per class)")
    direct = Path(path).expanduser()
    for candidate in (direct, data_root(cfg) / path):
        if candidate.is_dir():
            return candidate
    raise DatasetError(f"image folder not found: {direct} (nor {data_root(cfg) / path}); set data.path to an existing folder", direct)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")


def scan_folder(root: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """Image files in sorted order, their class indices (None when unlabelled), and the class names."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_class = [(d.name, sorted(p for p in d.rglob("*") if _is_image(p))) for d in subdirs]
    per_class = [(name, files) for name, files in per_class if files]
    loose = sorted(p for p in root.iterdir() if _is_image(p))
    if per_class and loose:
        raise DatasetError(f"{root} mixes images ({loose[0].name}, ...) with class subfolders "
                           f"({per_class[0][0]}, ...): move the loose images into a class folder", root)
    if not per_class:
        if not loose:
            raise DatasetError(f"no images in {root} (looked for {', '.join(sorted(EXTENSIONS))}, "
                               "directly inside or in one subfolder per class)", root)
        return loose, None, []
    files = [p for _, fs in per_class for p in fs]
    labels = [k for k, (_, fs) in enumerate(per_class) for _ in fs]
    return files, labels, [name for name, _ in per_class]


def _to_8bit(im, channels: int):
    """A Pillow image in mode "L" (channels=1) or "RGB" (channels=3)."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.int64)
        if a.min() < 0 or a.max() > 65535:
            raise InputError(f"mode {im.mode} values span {a.min()}..{a.max()}, outside the 16-bit range")
        im = Image.fromarray(np.rint(a / 257.0).astype(np.uint8))  # 2-D uint8 -> mode "L"
    elif im.mode == "F":
        raise InputError("32-bit float images are not supported: save it as 8- or 16-bit")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    target = "L" if channels == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


def _centre_square(im):
    """The largest centred square of the image, cut out before resizing.

    Cropping first (rather than resizing with a crop box, as ``ImageOps.fit`` does) keeps the Lanczos filter from
    reading pixels outside the square, so the border that the square drops cannot bleed into the edge pixels.
    """
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return im.crop((left, top, left + side, top + side))


def read_image(path: Path, channels: int, size: int = 0, expect: tuple[int, int] | None = None) -> np.ndarray:
    """One image as uint8 (channels, H, W).

    Args:
        path: the image file.
        channels: 1 (grey) or 3 (RGB).
        size: resize (centred square crop, Lanczos) to size x size; 0 keeps the image's size.
        expect: with ``size`` 0, the (width, height) every image must have.
    """
    from PIL import Image, ImageOps

    try:
        with open_image(path) as im:
            im.load()
            im = _to_8bit(ImageOps.exif_transpose(im), channels)
            if size and im.size != (size, size):
                im = _centre_square(im).resize((size, size), Image.Resampling.LANCZOS)
            a = np.asarray(im, dtype=np.uint8)
    except Exception as err:  # any decoder failure: name the file, hide Pillow's traceback
        raise DatasetError(f"cannot read image {path}: {describe(err)}\n  remove the file or re-save it as PNG/JPEG",
                           path, kind="unreadable", reason=describe(err)) from None
    if not size and expect is not None and im.size != expect:
        raise DatasetError(f"image {path} is {im.size[0]}x{im.size[1]} but the first image is {expect[0]}x{expect[1]}: "
                           "set data.image_size to resize them all", path)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _first_size(path: Path, channels: int) -> tuple[int, int]:
    """(width, height) of an image as read_image sees it (after EXIF rotation)."""
    c, h, w = read_image(path, channels).shape
    return w, h


@DATASETS.register("folder")
class Folder(Dataset):
    """Your own images (data.path), optionally one subfolder per class, as 8-bit grey or RGB."""

    info = DatasetInfo(
        name="folder",
        description="your images in data.path (PNG/JPEG/...), optional class subfolders; "
                    "data.image_size, data.image_channels, data.test_fraction",
        shape=None, bits=8, classes=0,
        splits={"train": None, "test": None},
    )

    def load(self, split: str, cfg) -> ImageSet:
        path, size, channels, fraction = _options(cfg)
        root = resolve_folder(path, cfg)
        files, labels, classes = scan_folder(root)
        n_test = min(max(1, round(len(files) * fraction)), len(files) - 1)
        if n_test < 1:
            raise DatasetError(f"{root} holds a single image: a train/test split needs at least 2", root)
        index = seeded_split(len(files), n_test, SPLIT_SEED)[split].tolist()
        # Without resizing, every image of either split must have the first file's size.
        expect = None if size else _first_size(files[0], channels)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes without the GIL
            arrays = list(pool.map(lambda i: read_image(files[i], channels, size, expect), index))
        images = torch.from_numpy(np.stack(arrays))
        labels_t = None if labels is None else torch.tensor([labels[i] for i in index], dtype=torch.int64)
        c, h, w = arrays[0].shape
        spec = DataSpec(channels=c, height=h, width=w, bits=8, num_classes=len(classes))
        mode = "grey" if channels == 1 else "RGB"
        note = (f"{root}: {len(files)} images" + (f" in {len(classes)} classes" if classes else "")
                + f", {mode} {h}x{w}; test = {n_test} held out by seeded_split(seed={SPLIT_SEED})")
        return self.imageset(split, images, labels_t, "scale", note, spec=spec)

    def check(self, cfg) -> dict:
        try:
            root = resolve_folder(_options(cfg)[0], cfg)
            files, _, classes = scan_folder(root)
        except DatasetError as err:
            return dict(name="folder", status="missing", path=str(getattr(cfg, "path", "")), message=str(err))
        bad = []
        for p in files:  # header-only open: cheap, catches files that are not images
            try:
                with open_image(p):
                    pass
            except Exception as err:
                bad.append(f"{p}: {describe(err)}")
        message = "\n".join(bad) if bad else f"{len(files)} images" + (f" in {len(classes)} classes" if classes else "")
        return dict(name="folder", status="corrupt" if bad else "ok", path=str(root), message=message)
