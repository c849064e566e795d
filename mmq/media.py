"""Media helpers: data: URLs, MIME sniffing from bytes (never trusted from a name), file extensions."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Callable

from PIL import Image

from mmq.errors import InvalidJob
from mmq.settings import Settings

_DATA_URL_RE = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w-]+=[^;,]*)*)(;base64)?,", re.ASCII)

_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/avif": ".avif",
    "image/heic": ".heic",
    "application/pdf": ".pdf",
    "audio/wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/mp4": ".m4a",
    "audio/webm": ".webm",
    "audio/pcm": ".pcm",
    "application/json": ".json",
    "text/plain": ".txt",
    "text/csv": ".csv",
    "application/x-subrip": ".srt",
    "text/vtt": ".vtt",
}


class MediaError(ValueError):
    """Input media that cannot be used: the job fails with this message, nothing else does."""


# For callers without Settings at hand (MediaOptions' and the fingerprints' defaults, library use): the
# setting's default, not the environment's — processes pass `settings.image_max_pixels` down explicitly.
DEFAULT_IMAGE_MAX_PIXELS: int = Settings.model_fields["image_max_pixels"].default
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")  # in Pillow's DecompressionBomb messages


class ImageTooLarge(InvalidJob):
    """An image declaring more pixels than the limit: refused from its header, before any decode."""

    def __init__(
        self, where: str, pixels: int | None, limit: int, size: tuple[int, int] | None = None
    ) -> None:
        found = f"{pixels:,} pixels" if pixels is not None else "more pixels than that"
        dims = f" ({size[0]}x{size[1]})" if size else ""
        super().__init__(
            f"{where}: image of {found}{dims} is over the limit of {limit:,} pixels "
            "(setting image_max_pixels, MMQ_IMAGE_MAX_PIXELS); downscale it before sending",
            type="invalid_media",
        )
        self.pixels = pixels
        self.limit = limit


def open_image(data: bytes, max_pixels: int, where: str) -> Image.Image:
    """`data` opened by Pillow — header parsed, no pixel decoded yet — once its declared width * height is
    within `max_pixels`. Raises ImageTooLarge (an InvalidJob naming `where`) if not; Pillow's own errors
    for data that is not a readable image propagate. Every Pillow decode of input media goes through here.

    Animated images (GIF, APNG, WebP): the size checked is the canvas every frame is drawn on, and only
    the first frame is ever decoded (callers seek(0)), so the frame count does not multiply the memory;
    refusing on frames * pixels would refuse ordinary short animations for no gain.
    """
    # Pillow's guard stays the ceiling: its warning is an error here as at every decode site
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            found = _BOMB_PIXELS.search(str(e))
            raise ImageTooLarge(where, int(found.group(1)) if found else None, limit) from None
    width, height = img.size
    if width * height > limit:
        img.close()
        raise ImageTooLarge(where, width * height, limit, (width, height))
    return img


def parse_data_url(url: str) -> tuple[str | None, bytes]:
    """Returns (declared mime, bytes). Raises MediaError naming what is wrong."""
    match = _DATA_URL_RE.match(url)
    if not match:
        raise MediaError("malformed data: URL (expected data:<mime>;base64,<data>)")
    payload = url[match.end() :]
    if match.group(3):
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise MediaError(f"data: URL is not valid base64 ({e})") from None
    else:
        from urllib.parse import unquote_to_bytes

        data = unquote_to_bytes(payload)
    if not data:
        raise MediaError("data: URL is empty")
    return match.group(1), data


def declared_type(url: str) -> str | None:
    """The MIME type a data: URL declares, without decoding its payload."""
    match = _DATA_URL_RE.match(url)
    return match.group(1).lower() if match and match.group(1) else None


def base64_payload(url: str) -> tuple[str | None, str]:
    """(declared MIME, base64 payload) of a data: URL. A base64 payload is returned as given — adapters
    that send base64 need not decode and re-encode megabytes — others are encoded."""
    match = _DATA_URL_RE.match(url)
    if not match:
        raise MediaError("malformed data: URL (expected data:<mime>;base64,<data>)")
    declared = match.group(1).lower() if match.group(1) else None
    payload = url[match.end() :]
    if match.group(3) and payload:
        return declared, payload
    return declared, base64.b64encode(parse_data_url(url)[1]).decode("ascii")


def sniff_base64(payload: str, sniffer: Callable[[bytes], str | None] | None = None) -> str | None:
    """The type of base64 data from its first bytes only. Raises MediaError if the head is not base64."""
    try:
        head = base64.b64decode(payload[:64], validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("data: URL is not valid base64") from None
    return (sniffer or sniff)(head)


def to_data_url(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def sniff(data: bytes) -> str | None:
    """The MIME type the bytes say they are, or None."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and data[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"BM"):
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if data[4:8] == b"ftyp":
        # ISO media: the brands say what it holds (major brand at 8..12, compatible ones after it)
        brands = data[8:12] + data[16 : min(len(data), int.from_bytes(data[:4], "big"), 64)]
        if b"avif" in brands or b"avis" in brands:
            return "image/avif"
        if any(b in brands for b in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")):
            return "image/heic"
        return "audio/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "audio/webm"
    return None


def extension_for(content_type: str) -> str:
    return _EXTENSIONS.get(content_type.split(";")[0].strip().lower(), ".bin")


def filename_for(content_type: str, stem: str = "audio") -> str:
    return stem + extension_for(content_type)


# what the worker decodes (and converts for providers that take fewer types); HEIC is recognised but not
# decodable here (Pillow has no HEIF codec), so it is refused by name instead of as "not an image"
IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff", "image/avif"}
)
UNSUPPORTED_IMAGE_TYPES = {
    "image/heic": "HEIC/HEIF photos cannot be decoded here; convert them to JPEG or PNG"
}
PDF_TYPES = frozenset({"application/pdf"})
TEXT_TYPES = frozenset({"text/plain", "text/csv", "text/markdown"})
AUDIO_TYPES = frozenset({"audio/wav", "audio/mpeg", "audio/flac", "audio/ogg", "audio/mp4", "audio/webm"})


def document_type(data: bytes, url: str, where: str) -> str:
    """PDF by its bytes; CSV/plain text when the bytes are UTF-8 text (the declared type says which)."""
    mime = sniff(data)
    if mime in PDF_TYPES:
        return mime
    if mime is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            declared = declared_type(url)
            return declared if declared in TEXT_TYPES else "text/plain"
    raise InvalidJob(
        f"{where}: documents must be PDF, CSV or plain text (bytes look like {mime or 'binary data'}); "
        "spreadsheets and other formats are not taken by the supported providers",
        type="invalid_media",
    )
