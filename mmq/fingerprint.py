"""Content fingerprints of a job's media, for cache keys.

Levels (chosen per job or batch):
- `exact`: SHA-256 of the bytes. A stored blob's digest is in its key, so no read is needed.
- `pixels`: SHA-256 of the decoded image as RGBA, with its size, after applying its EXIF orientation. The
  same picture re-encoded losslessly (PNG ↔ WebP lossless, JPEG decoded to PNG), stripped of metadata
  or with other metadata matches; any changed pixel does not.
- `perceptual`: the pixels fingerprint plus a 64-bit difference hash (dHash) compared within a Hamming
  distance by the cache. Near-duplicates can differ in what matters (a changed price tag), so it is opt-in.
Documents and audio are fingerprinted by their bytes at every level. Undecodable images fall back to
their bytes: the job fails later with a clear error, the key only has to be stable. So do images declaring
more pixels than `image_max_pixels`: refused from their header, never decoded here.
"""

from __future__ import annotations

import asyncio
import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from PIL import Image, ImageOps

from mmq.cache import Fingerprint
from mmq.contract import CacheLevel
from mmq.media import DEFAULT_IMAGE_MAX_PIXELS, MediaError, open_image, parse_data_url
from mmq.request_models import BLOB_SCHEME

Loader = Callable[[str], Awaitable[bytes | None]]  # a reference's bytes, or None if not reachable here

_DECODE_IN_THREAD = 256 * 1024
_HASH_ROWS = 256
_memo: OrderedDict[str, Fingerprint] = OrderedDict()  # bytes digest → pixel fingerprint, per process
_MEMO_MAX = 4096


def byte_token(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_digest(ref: str) -> str | None:
    """The SHA-256 in a content-addressed blob reference (`mmq-blob://blobs/sha256/ab/cdef….png`)."""
    parts = ref[len(BLOB_SCHEME) :].split("/")
    if len(parts) == 4 and parts[:2] == ["blobs", "sha256"]:
        digest = parts[2] + parts[3].split(".", 1)[0]
        if len(digest) == 64:
            return digest
    return None


def _dhash(img: Image.Image) -> int:
    small = img.convert("L").resize((9, 8), Image.Resampling.LANCZOS).tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (small[row * 9 + col] > small[row * 9 + col + 1])
    return bits


def _coarse(img: Image.Image) -> str:
    """Mean colour in 16 levels per channel, and the aspect ratio to one decimal."""
    r, g, b = (v // 16 for v in img.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))
    return f"{r:x}{g:x}{b:x}/{img.width / img.height:.1f}"


def _pixels(data: bytes, max_pixels: int) -> Fingerprint:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with open_image(data, max_pixels, "image") as img:
            img.seek(0)  # an animated GIF: its first frame, as the media stage sends it
            # orientation is part of how the image looks; in place, as a copy would double the memory
            ImageOps.exif_transpose(img, in_place=True)
            rgba = img.convert("RGBA")
    digest = hashlib.sha256(f"{rgba.width}x{rgba.height}:".encode())
    for top in range(0, rgba.height, _HASH_ROWS):  # in strips: never a second copy of every pixel
        digest.update(rgba.crop((0, top, rgba.width, min(top + _HASH_ROWS, rgba.height))).tobytes())
    return Fingerprint("px:" + digest.hexdigest(), _dhash(rgba), _coarse(rgba))


async def pixel_fingerprint(data: bytes, max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS) -> Fingerprint | None:
    """The decoded pixels' fingerprint (with dHash and coarse signature), or None if it does not decode or
    declares more than `max_pixels` pixels (then it is not decoded at all)."""
    memo_key = hashlib.sha256(data).hexdigest()
    if (hit := _memo.get(memo_key)) is not None:
        _memo.move_to_end(memo_key)
        return hit
    try:
        if len(data) > _DECODE_IN_THREAD:
            found = await asyncio.to_thread(_pixels, data, max_pixels)
        else:
            found = _pixels(data, max_pixels)
    except Exception:  # Pillow's many error types, the pixel limit and the bomb guard included
        return None
    _memo[memo_key] = found
    if len(_memo) > _MEMO_MAX:
        _memo.popitem(last=False)
    return found


class Fingerprints:
    """The `Fingerprinter` for one job: reference → fingerprint at `level`, loading bytes with `load`;
    images over `max_pixels` are keyed by their bytes, undecoded."""

    def __init__(self, level: CacheLevel, load: Loader, max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS) -> None:
        self.level = level
        self.load = load
        self.max_pixels = max_pixels

    async def _bytes(self, ref: str) -> bytes | None:
        if ref.startswith("data:"):
            try:
                return parse_data_url(ref)[1]
            except MediaError:
                return ref.encode()  # malformed: the job fails later; the key only needs to be stable
        return await self.load(ref)

    async def __call__(self, ref: str, media: str) -> Fingerprint | None:
        pixels = media == "image" and self.level is not CacheLevel.exact
        if not pixels and ref.startswith(BLOB_SCHEME) and (digest := blob_digest(ref)):
            return Fingerprint("sha256:" + digest)
        data = await self._bytes(ref)
        if data is None:
            return None
        if pixels and (found := await pixel_fingerprint(data, self.max_pixels)) is not None:
            return found
        return Fingerprint(byte_token(data))
