"""An image's pixel size from its header: what the vision token rules (mmq/pricing/rules.py) need.

Why apart: a quote measures every image of a batch without storing or decoding it, so only the header is
read (Pillow opens lazily: no pixel data is decoded), and an image Pillow cannot read is "size unknown",
which the quote reports, rather than an error that stops it.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError


def measure_image(data: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels as stored, or None when the bytes are not an image Pillow can read.

    EXIF orientation is not applied: every rule here is symmetric in width and height. An image over
    Pillow's decompression-bomb limit is reported as unknown (its header is not trusted)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        return None
    return (width, height) if width > 0 and height > 0 else None
