"""Lossless code lengths of images: the complexity L(x) of Serra et al. 2020.

Serra, Alvarez, Gomez, Slizovskaia, Nunez & Luque 2020, "Input Complexity and
Out-of-Distribution Detection with Likelihood-based Generative Models"
(arXiv:1909.11480, ICLR 2020), Section 3: a general-purpose lossless compressor
is a universal model of images, and L(x), its code length in bits, measures how
complex the image is. The paper uses PNG, JPEG2000 (lossless) and FLIF; here:

* "png": the whole PNG file Pillow writes with ``optimize=True`` (zlib level 9 and
  the best PNG filter), binary images as 1-bit PNG, grey as 8-bit "L", colour as
  8-bit "RGB". The file's fixed container overhead (signature, IHDR, IEND chunks)
  is the same for every image of one size and mode, so it shifts all scores
  equally and changes no ranking.
* "zlib": zlib (level 9) of the raw sub-pixel bytes in (H, W, C) order, binary
  images bit-packed (8 pixels a byte). No prediction filter, so it is a weaker model
  of smooth images than PNG.

Both compress the image exactly as the model sees it (its levels, size and
channels), so L(x) and -log p(x) describe the same object.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import torch

from genlab.errors import InputError

COMPRESSORS = ("png", "zlib")


def _hwc(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(1, 2, 0))


def png_bits(image: np.ndarray, bits: int) -> int:
    """Size in bits of the PNG file of one uint8 (C, H, W) image of 0/1 (bits=1) or 0..255 (bits=8) levels."""
    from PIL import Image

    c = image.shape[0]
    if bits == 1:
        if c != 1:
            raise InputError("binary images are single-channel")
        im = Image.fromarray(image[0].astype(bool))  # mode "1": one bit per pixel
    elif c == 1:
        im = Image.fromarray(image[0], mode="L")
    elif c == 3:
        im = Image.fromarray(_hwc(image), mode="RGB")
    else:
        raise InputError(f"PNG holds 1 or 3 channels, not {c}")
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return 8 * buf.tell()


def zlib_bits(image: np.ndarray, bits: int) -> int:
    """Size in bits of zlib level 9 applied to the raw (bit-packed when binary) sub-pixels."""
    raw = np.packbits(image.reshape(-1).astype(bool)) if bits == 1 else _hwc(image)
    return 8 * len(zlib.compress(raw.tobytes(), 9))


def code_lengths(images: torch.Tensor, bits: int, compressor: str) -> np.ndarray:
    """L(x) in bits for each image.

    Args:
        images: uint8 (N, C, H, W) levels as the model sees them: 0/1 when ``bits == 1``, 0..255 when 8.
        bits: 1 or 8.
        compressor: "png" or "zlib".
    Returns:
        float64 (N,) code lengths in bits.
    """
    if compressor not in COMPRESSORS:
        raise InputError(f"unknown compressor {compressor!r}; choose one of {', '.join(COMPRESSORS)}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise InputError("code_lengths takes uint8 images (N, C, H, W)")
    top = 1 if bits == 1 else 255
    if bits not in (1, 8) or int(images.max()) > top:
        raise InputError(f"images must hold levels 0..{top} for bits={bits}")
    fn = png_bits if compressor == "png" else zlib_bits
    arr = images.cpu().numpy()
    return np.array([fn(a, bits) for a in arr], dtype=np.float64)
