"""Image decoding to the 8-bit RGB the transforms expect, for every PIL mode, or a clear refusal.

``Image.convert("RGB")`` clips high-bit-depth images instead of scaling them: a 16-bit greyscale PNG (mode
``I;16``) becomes pure white whatever it shows, a float image black. Here 16-bit values are scaled from
0..65535 and floats from 0..1 to 0..255; modes Pillow cannot convert faithfully are refused with the reason.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

# Modes whose conversion to RGB keeps what the image shows (palette, alpha and colour spaces handled by Pillow).
EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # "I": 32-bit integers, read as 16-bit values
ACCEPTED_MODES = EIGHT_BIT_MODES + SIXTEEN_BIT_MODES + ("F",)
REFUSED_MODES = {
    "LAB": "Pillow converts CIELab to RGB by its lightness channel alone, losing the colours; save it as RGB",
    "La": "Pillow cannot convert premultiplied greyscale + alpha; save it as L, LA or RGB",
}


def _scaled(image: Image.Image) -> Image.Image:
    """A 16-bit or float single-channel image as 8-bit ``L``, by fixed scaling (never per-image stretching)."""
    values = np.asarray(image)
    lo, hi = (values.min(), values.max()) if values.size else (0, 0)
    if image.mode == "F":
        if lo < 0 or hi > 1:
            raise ValueError(f"a float image (mode F) must hold values in 0..1 to be read as brightness; this one "
                             f"has values {float(lo)}..{float(hi)}: save it as an 8- or 16-bit image")
        return Image.fromarray(np.rint(values * 255.0).astype(np.uint8))
    if lo < 0 or hi > 65535:
        raise ValueError(f"a 32-bit integer image (mode {image.mode}) is read as 16-bit (0..65535); this one has "
                         f"values {int(lo)}..{int(hi)}: save it as an 8- or 16-bit image")
    return Image.fromarray(np.rint(values.astype(np.float64) / 257.0).astype(np.uint8))


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB showing what it shows; ``ValueError`` naming the mode for one that cannot be."""
    mode = image.mode
    if mode in REFUSED_MODES:
        raise ValueError(f"image mode {mode} is not read: {REFUSED_MODES[mode]}")
    if mode not in ACCEPTED_MODES:
        raise ValueError(f"image mode {mode} is not read (accepted: {', '.join(ACCEPTED_MODES)})")
    if mode in SIXTEEN_BIT_MODES or mode == "F":
        image = _scaled(image)
    elif mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # the palette's transparency, without Pillow's warning
    return image if image.mode == "RGB" else image.convert("RGB")


def open_rgb(source: str | Path | bytes) -> Image.Image:
    """Decode an image file (or its encoded bytes) fully into 8-bit RGB.

    Raises:
        OSError / SyntaxError: unreadable or truncated (from Pillow); ValueError: a mode that is refused.
    """
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        im.load()
        return to_rgb(im)


def image_path(value: str, root: str | Path, err, allow_outside_root: bool = False, check: bool = False
               ) -> str:
    """The file a data row's image column names: ``value`` relative to ``root`` (the dataset's image folder).

    A path that leaves ``root`` (``../``, or absolute) is refused unless ``allow_outside_root`` (config
    ``data.allow_outside_root``): a data file from elsewhere must not make the loader read arbitrary files.
    ``err(reason, detail)`` builds the :class:`~data.records.DataError` naming the row; ``check`` decodes it now.
    """
    root = os.path.abspath(root)
    path = os.path.abspath(os.path.join(root, str(value)))
    if not allow_outside_root and os.path.commonpath([root, path]) != root:
        raise err("image_outside_root", f"image path {value!r} resolves to {path}, outside the dataset folder "
                                        f"{root}; move the image there, or set data.allow_outside_root=true")
    if not os.path.isfile(path):
        raise err("missing_image", f"image file {path} does not exist")
    if check:
        try:
            open_rgb(path)
        except (OSError, SyntaxError, ValueError) as e:
            raise err("unreadable_image", f"cannot read image {path}: {e}") from None
    return path
