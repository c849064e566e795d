"""Thumbnails for the console, made on the server with Pillow and kept in storage.

A thumbnail is a WebP of at most SIZES[size] pixels on its longest side, made once per source and size
and stored under `console/thumbs/{size}/{ab}/{hash}.webp` (the hash of the source's reference: the blob
key of stored media, the data: URL of inline media), then read back like any blob. Sources are opened
through mmq.media.open_image, which refuses images declaring more pixels than the operator's
`image_max_pixels` before decoding anything; the decode runs in a thread, at most MAKERS at a time per
process, so a page of 100 new thumbnails does not take the API's event loop or every core with it.
Only the first frame of an animation is drawn; nothing but raster images is ever decoded (no SVG).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable

from PIL import Image, ImageOps

from mmq.media import open_image, sniff
from mmq.storage import BlobNotFound, Storage

log = logging.getLogger(__name__)

SIZES = {"s": 96, "m": 360}
MAKERS = 2
MAX_SOURCE_BYTES = 64 * 1024 * 1024


def thumb_key(size: str, source_id: str) -> str:
    return f"console/thumbs/{size}/{source_id[:2]}/{source_id}.webp"


def make_thumbnail(data: bytes, side: int, max_pixels: int) -> bytes:
    """A WebP of `data`'s first frame within side x side. Raises for bytes that are not a decodable
    image or declare more than `max_pixels` pixels (mmq.media.ImageTooLarge)."""
    with open_image(data, max_pixels, "thumbnail") as img:
        img.seek(0)
        img.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a reduced scale, far less work
        img.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
        out = ImageOps.exif_transpose(img)
        if out.mode not in ("RGB", "RGBA"):
            out = out.convert("RGBA" if "A" in out.getbands() or "transparency" in out.info else "RGB")
        buf = io.BytesIO()
        out.save(buf, format="WEBP", quality=78, method=4)
        return buf.getvalue()


async def thumbnail(
    storage: Storage,
    size: str,
    source_id: str,
    load: Callable[[], Awaitable[bytes | None]],
    max_pixels: int,
    makers: asyncio.Semaphore,
) -> bytes | None:
    """The stored thumbnail, made first if it does not exist; None when the source is not an image.
    `makers`: the process's Semaphore(MAKERS), held while one is made."""
    key = thumb_key(size, source_id)
    try:
        return await storage.get(key)
    except BlobNotFound:
        pass
    data = await load()
    if not data or len(data) > MAX_SOURCE_BYTES or not (sniff(data) or "").startswith("image/"):
        return None
    async with makers:
        try:
            thumb = await asyncio.to_thread(make_thumbnail, data, SIZES[size], max_pixels)
        except Exception as e:  # a corrupt or oversized image has no thumbnail; the page shows none
            log.info("mmq console: no thumbnail for %s: %s", source_id[:12], e)
            return None
    await storage.put(key, thumb)
    return thumb
