"""The Google dialect's media parts for generateContent: inline blobs and file URIs, described like the
OpenAI chat route (size, format, dominant colour) with Gemini's token counts.

An inline blob must be base64 of an accepted type (images, PDF / plain text, audio) whose bytes match
its mime_type, else "Unable to process input"; a file_data URI is noted but not fetched. Audio made by
the simulator's speech encoder is read back to its text.
"""

from __future__ import annotations

import base64
import binascii
import math
import wave
from dataclasses import dataclass, field

from PIL import Image

# the OpenAI routes' helpers, so both dialects describe media identically (and share the decode cache)
from mmq.simulator.audio_formats import sniff_audio, wav_duration
from mmq.simulator.chat import PDF_PAGE, describe_cached
from mmq.simulator.gemini.errors import GoogleError, _invalid
from mmq.simulator.gemini.wire import _fields
from mmq.simulator.parsing import estimate_tokens
from mmq.simulator.speech import decode_speech_wav

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
DOCUMENT_TYPES = frozenset({"application/pdf", "text/plain"})
# declared audio type -> sniff_audio() name
AUDIO_TYPES: dict[str, str] = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/mp3": "mp3",
    "audio/mpeg": "mp3",
    "audio/flac": "flac",
    "audio/ogg": "ogg",
}
_BLOB_FIELDS = frozenset({"mimeType", "data", "displayName"})
_FILE_FIELDS = frozenset({"mimeType", "fileUri", "displayName"})


def sniff_mime(data: bytes) -> str | None:
    """What the bytes are, in the MIME names Gemini uses (None: not recognised)."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"BM"):
        return "image/bmp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heif"):
        return "image/heif"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    audio = sniff_audio(data)
    if audio is not None:
        return f"audio/{audio}"
    if b"\x00" not in data[:4096]:
        try:
            data[:4096].decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < 4090:  # a multi-byte character cut at the window's end is still text
                return None
        return "text/plain"
    return None


def _matches(declared: str, actual: str | None) -> bool:
    if declared in ("image/heic", "image/heif"):
        return actual == "image/heif"  # one container family; the brand does not settle the name
    if declared in AUDIO_TYPES:
        return actual == f"audio/{AUDIO_TYPES[declared]}"
    return declared == actual


@dataclass
class _Seen:
    sentences: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    images: int = 0
    files: int = 0
    audios: int = 0
    last_user_text: str = ""
    blocked: bool = False


def image_tokens(width: int, height: int) -> int:
    """Gemini's count: 258 for an image within 384x384, else 258 per 768x768 tile."""
    if max(width, height) <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


def _unprocessable(what: str, why: str) -> GoogleError:
    return _invalid(
        f"Unable to process input {what}. Please retry or report in "
        f"https://developers.generativeai.google/guide/troubleshooting ({why}; mmq simulator)"
    )


async def _image(mime: str, data: bytes, seen: _Seen) -> None:
    seen.images += 1
    if mime in ("image/heic", "image/heif"):  # Pillow cannot decode HEIF without a plugin
        seen.sentences.append(f"Image {seen.images}: a HEIF image (not decoded by the simulator).")
        seen.prompt_tokens += 258
        return
    try:
        info = await describe_cached(data)
    except Image.DecompressionBombError:
        raise _unprocessable("image", "it exceeds the decompression-bomb limit") from None
    except Exception:  # any decoder failure on arbitrary bytes
        raise _unprocessable("image", "the bytes do not decode") from None
    r, g, b = info["dominant_rgb"]  # type: ignore[misc]
    subject = ""
    if "subject_rgb" in info:
        sr, sg, sb = info["subject_rgb"]  # type: ignore[misc]
        subject = f", with a {info['subject_colour']} subject (#{sr:02x}{sg:02x}{sb:02x})"
    seen.sentences.append(
        f"Image {seen.images}: {info['width']}x{info['height']} {info['format']}, "
        f"mostly {info['colour']} (#{r:02x}{g:02x}{b:02x}){subject}."
    )
    seen.prompt_tokens += image_tokens(info["width"], info["height"])  # type: ignore[arg-type]


def _document(mime: str, data: bytes, seen: _Seen) -> None:
    seen.files += 1
    if mime == "application/pdf":
        pages = max(1, len(PDF_PAGE.findall(data)))
        seen.sentences.append(f"File {seen.files}: PDF, about {pages} page{'s' if pages != 1 else ''}.")
        seen.prompt_tokens += 258 * pages
        return
    text = data.decode("utf-8", errors="replace")
    seen.sentences.append(f"File {seen.files}: plain text, {len(text)} characters.")
    seen.prompt_tokens += estimate_tokens(text)


def _audio(data: bytes, seen: _Seen) -> None:
    seen.audios += 1
    kind = sniff_audio(data) or "unknown"
    text = decode_speech_wav(data) if kind == "wav" else None
    try:
        seconds = wav_duration(data) if kind == "wav" else 0.0
    except wave.Error:
        seconds = 0.0
    if text is not None:
        seen.sentences.append(f'Audio {seen.audios}: simulator speech saying "{text[:200]}".')
    else:
        seen.sentences.append(
            f"Audio {seen.audios}: {seconds:.2f}s of {kind} audio, no simulator speech found."
        )
    seen.prompt_tokens += max(1, math.ceil(32 * seconds))  # 32 tokens per second of audio


async def _inline(blob: object, where: str, seen: _Seen) -> None:
    spec = _fields(blob, where, _BLOB_FIELDS)
    mime, b64 = spec.get("mimeType"), spec.get("data")
    if not isinstance(mime, str) or not mime:
        raise _invalid(f"* GenerateContentRequest.{where}.mime_type: mime_type is not specified\n")
    if not isinstance(b64, str) or not b64:
        raise _invalid(f"* GenerateContentRequest.{where}.data: data is not specified\n")
    mime = mime.lower()
    if mime not in IMAGE_TYPES and mime not in DOCUMENT_TYPES and mime not in AUDIO_TYPES:
        raise _invalid(f"Unsupported MIME type: {mime}")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(
            f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed for \"{b64[:20]}...\""
        ) from None
    actual = sniff_mime(data)
    if not _matches(mime, actual):
        what = "image" if mime.startswith("image/") else "file"
        raise _unprocessable(what, f"mime_type is {mime} but the bytes are {actual or 'unrecognised'}")
    if mime in IMAGE_TYPES:
        await _image(mime, data, seen)
    elif mime in DOCUMENT_TYPES:
        _document(mime, data, seen)
    else:
        _audio(data, seen)


def _file_data(spec_obj: object, where: str, seen: _Seen) -> None:
    spec = _fields(spec_obj, where, _FILE_FIELDS)
    uri = spec.get("fileUri")
    if not isinstance(uri, str) or not uri:
        raise _invalid(f"* GenerateContentRequest.{where}.file_uri: file_uri is not specified\n")
    if not uri.startswith(("gs://", "https://", "http://")):
        raise _invalid(f"Invalid or unsupported file uri: {uri}")
    mime = spec.get("mimeType")
    seen.files += 1
    label = f" ({mime})" if isinstance(mime, str) and mime else ""
    seen.sentences.append(f"File {seen.files}: {uri}{label}, not fetched by the simulator.")
    seen.prompt_tokens += 258
