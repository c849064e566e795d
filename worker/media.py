"""Media helpers: data: URLs, MIME sniffing from bytes (never trusted from a name), file extensions."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

_DATA_URL_RE = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w-]+=[^;,]*)*)(;base64)?,", re.ASCII)

_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
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
        return "audio/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "audio/webm"
    return None


def extension_for(content_type: str) -> str:
    return _EXTENSIONS.get(content_type.split(";")[0].strip().lower(), ".bin")


def filename_for(content_type: str, stem: str = "audio") -> str:
    return stem + extension_for(content_type)
