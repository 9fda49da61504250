"""Image files -> RGB pixels the way a person sees them, or `UnreadableImage` with a one-line reason.

What a viewer does and a bare `Image.open(...).convert("RGB")` does not:

- EXIF orientation is applied (a phone photo stored sideways is read upright);
- transparency is composited onto white paper BEFORE dropping alpha (`convert("RGB")` alone turns
  transparent pixels into whatever colour they hold - usually black, so black ink vanishes);
- 16-bit and 32-bit greyscale are scaled to 8 bits (`convert` clips them: mid-grey becomes white);
- CMYK, palette, WebP, TIFF, GIF, ... go through Pillow's own conversions.

A pixel limit (`MAX_PIXELS`) is checked from the header, before any pixel is decoded, so a
decompression bomb costs nothing; Pillow's own DecompressionBombWarning and its warnings about
damaged metadata are not printed - the caller gets a reason instead. Image sizes from headers
(`header_size`) apply the EXIF orientation too, so scan-dims measures what training sees.

>>> import io
>>> buffer = io.BytesIO()
>>> Image.new("LA", (4, 2), (0, 0)).save(buffer, format="PNG")   # fully transparent black
>>> decode(io.BytesIO(buffer.getvalue())).getpixel((0, 0))         # reads as white paper
(255, 255, 255)
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from banglaocr.errors import first_line

MAX_PIXELS = 100_000_000
"""Larger images are refused unread: a word crop has thousands of pixels, a 100-megapixel image is a
mistake or a decompression bomb (decoding it would take gigabytes of memory)."""

_EXIF_ORIENTATION = 0x0112
_SIDEWAYS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class UnreadableImage(Exception):
    """An image that cannot be decoded (missing, empty, truncated, not an image, too large)."""


@contextlib.contextmanager
def as_unreadable() -> Iterator[None]:
    """Turn whatever Pillow raises (or warns) for a bad image into `UnreadableImage` with the reason."""
    try:
        with warnings.catch_warnings():
            # Warnings about one data file (a bomb-sized header, corrupt EXIF, ...) would be printed
            # once per image with Pillow's line numbers; the reason travels in the exception instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as err:
        raise UnreadableImage(_too_large(_pixels_in(str(err)))) from None
    except Exception as err:  # noqa: BLE001 - damaged files make Pillow raise almost anything
        # (UnidentifiedImageError, OSError, SyntaxError, struct.error, KeyError, MemoryError, ...):
        # whatever it is, it concerns this one file, which is then unreadable, not the whole run.
        raise UnreadableImage(f"not a readable image ({type(err).__name__}: {first_line(err)})") from None


def _too_large(pixels: int | None) -> str:
    size = f"{pixels / 1e6:.0f} megapixels" if pixels else "too many pixels"
    return f"image too large ({size}; the limit is {MAX_PIXELS // 1_000_000} megapixels)"


def _pixels_in(message: str) -> int | None:
    """The pixel count in Pillow's DecompressionBombError message ("Image size (N pixels) exceeds ...")."""
    found = re.search(r"\((\d+) pixels\)", message)
    return int(found.group(1)) if found else None


def open_checked(source: str | IO[bytes]) -> Image.Image:
    """Open an image (header only) and refuse it when it has more than `MAX_PIXELS` pixels."""
    with as_unreadable():
        image = Image.open(source)
        width, height = image.size
        if width * height > MAX_PIXELS:
            image.close()
            raise UnreadableImage(_too_large(width * height))
        if width <= 0 or height <= 0:
            image.close()
            raise UnreadableImage(f"zero-size image ({width}x{height})")
        return image


def header_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed: from the header, swapped when the EXIF orientation turns it sideways."""
    width, height = image.size
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow would decode the whole image looking for an eXIf chunk after the pixels; a header
        # read stays a header read (such late EXIF is rare; decoding still applies it).
        return width, height
    with as_unreadable():
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    return (height, width) if orientation in _SIDEWAYS else (width, height)


def to_rgb(image: Image.Image) -> Image.Image:
    """An opened (or in-memory) image as upright 8-bit RGB on white paper; decodes the pixels.

    Truncated or damaged data fails here (`UnreadableImage`), not later inside a batch.
    """
    with as_unreadable():
        image.load()
        upright = ImageOps.exif_transpose(image) or image
        upright = _eight_bit(upright)
        if upright.mode == "RGB":
            return upright
        if upright.mode in _ALPHA_MODES or (upright.mode == "P" and "transparency" in upright.info):
            rgba = upright.convert("RGBA")
            paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(paper, rgba).convert("RGB")
        return upright.convert("RGB")


def decode(source: str | IO[bytes]) -> Image.Image:
    """`open_checked` then `to_rgb`: a file path or binary stream -> upright RGB."""
    image = open_checked(source)
    try:
        return to_rgb(image)
    finally:
        image.close()


def _eight_bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float greyscale -> 8-bit "L", scaled (Pillow's `convert` clips at 255).

    16-bit modes are divided by 257 (65535 -> 255). "I" and "F" carry no range, so it is taken from
    the values: [0, 1] floats, [0, 255], [0, 65535], else the maximum.
    """
    if image.mode not in _WIDE_GREY:
        return image
    with np.errstate(all="ignore"):  # a damaged float image may hold NaN / inf: they become 0 below
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    values = np.clip(values, 0.0, None)
    peak = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16") or 255.0 < peak <= 65535.0:
        scale = 255.0 / 65535.0
    elif image.mode == "F" and peak <= 1.0:
        scale = 255.0
    elif peak <= 255.0:
        scale = 1.0
    else:
        scale = 255.0 / peak
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
