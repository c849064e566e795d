"""Make a stored request ready for an adapter: blob references become bytes, media is checked.

A corrupt image or an unreadable audio file fails its own job here, with a message naming the part,
before any provider is paid to reject it.
"""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image

from mmq.errors import InvalidJob
from mmq.media import (
    AUDIO_TYPES,
    DEFAULT_IMAGE_MAX_PIXELS,
    IMAGE_TYPES,
    UNSUPPORTED_IMAGE_TYPES,
    MediaError,
    document_type,
    filename_for,
    open_image,
    parse_data_url,
    sniff,
    to_data_url,
)
from mmq.request_models import BLOB_SCHEME, Kind, chat_media_slots, is_gcs_uri
from mmq.storage import BlobNotFound, Storage
from worker.providers.base import AudioInput


async def load_media(url: str, storage: Storage) -> bytes:
    if url.startswith(BLOB_SCHEME):
        try:
            return await storage.get(url[len(BLOB_SCHEME) :])
        except BlobNotFound:
            raise InvalidJob(f"stored input {url} is missing", type="invalid_media") from None
    try:
        return parse_data_url(url)[1]
    except MediaError as e:
        raise InvalidJob(str(e), type="invalid_media") from None


@dataclass(frozen=True)
class ImageFacts:
    """What prepare learned of an image (sniffed once, opened by Pillow once), so the media stage decides
    whether it fits a provider without decoding it again."""

    mime: str
    width: int
    height: int
    nbytes: int


def _verify_image(data: bytes, max_pixels: int, where: str) -> tuple[int, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with open_image(data, max_pixels, where) as img:
            size = img.size
            # every pixel decoded (bounded by max_pixels): a truncated or corrupt file fails here, before
            # any provider is paid; a JPEG decodes at 1/8 scale, which still reads every scan
            img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
            return size


async def check_image(data: bytes, where: str, max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS) -> str:
    """Returns the sniffed MIME type; raises InvalidJob if the bytes are not a decodable image or declare
    more than `max_pixels` pixels."""
    return (await image_facts(data, where, max_pixels)).mime


async def image_facts(data: bytes, where: str, max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS) -> ImageFacts:
    """`check_image`, with the image's size."""
    mime = sniff(data)
    if mime in UNSUPPORTED_IMAGE_TYPES:
        raise InvalidJob(f"{where}: {UNSUPPORTED_IMAGE_TYPES[mime]}", type="invalid_media")
    if mime not in IMAGE_TYPES:
        raise InvalidJob(
            f"{where}: not an image (bytes look like {mime or 'unknown data'})", type="invalid_media"
        )
    try:
        if len(data) > 512 * 1024:
            width, height = await asyncio.to_thread(_verify_image, data, max_pixels, where)
        else:
            width, height = _verify_image(data, max_pixels, where)
    except InvalidJob:
        raise  # over the pixel limit: its own message names the limit
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InvalidJob(f"{where}: image too large to decode safely ({e})", type="invalid_media") from None
    except Exception as e:  # Pillow raises many types for corrupt files
        raise InvalidJob(f"{where}: image could not be decoded ({e})", type="invalid_media") from None
    return ImageFacts(mime, width, height, len(data))


async def _prepare_chat(
    request: dict[str, Any], storage: Storage, max_pixels: int, facts: dict[str, ImageFacts] | None
) -> None:
    for slot in chat_media_slots(request):
        if slot.value.startswith(("http://", "https://")):
            continue  # fetched by the media stage where the target needs bytes (worker/media_ready.py)
        if is_gcs_uri(slot.value):
            continue  # read by Vertex AI itself, never by the worker; the media stage checks the target
        data = await load_media(slot.value, storage)
        if slot.media == "image":
            found = await image_facts(data, slot.where, max_pixels)
            url = to_data_url(data, found.mime)  # the one base64 encoding of these bytes
            if facts is not None:
                facts[url] = found
        else:
            url = to_data_url(data, document_type(data, slot.value, slot.where))
        slot.set(url)


async def _prepare_audio(request: dict[str, Any], storage: Storage) -> AudioInput:
    data = await load_media(request["file"], storage)
    mime = sniff(data)
    if mime not in AUDIO_TYPES:
        raise InvalidJob(
            f"file: not a supported audio file (bytes look like {mime or 'unknown data'})",
            type="invalid_media",
        )
    name = request.get("filename") or filename_for(mime)
    return AudioInput(data=data, content_type=mime, filename=name)


async def prepare(
    kind: Kind,
    request: dict[str, Any],
    storage: Storage,
    *,
    max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS,
    facts: dict[str, ImageFacts] | None = None,
) -> AudioInput | None:
    """Resolves media in `request` in place; returns the audio input for audio kinds. Images declaring
    more than `max_pixels` pixels are refused before any decode. `facts` collects, per image data: URL
    made here, what its check learned (worker/media_ready.py then fits it without decoding it again)."""
    if kind is Kind.chat:
        await _prepare_chat(request, storage, max_pixels, facts)
    elif kind in (Kind.transcription, Kind.translation):
        return await _prepare_audio(request, storage)
    return None
