"""A job's media as the console shows it: the inputs its request names, the files its result holds, and
how their bytes are served.

Media URLs name a job and a position (`/console/jobs/{id}/input/{n}`, `/output/{n}`), never a storage
key: the job is checked against the viewer's tenant first, and the key is then read from that job's own
request or result. A guessed blob key has no URL to be tried on.

Bytes are served with the type sniffed from them (mmq.media.sniff), never the one a user or provider
declared, and only images and audio a browser plays are served inline. Other recognised files (PDF) are
attachments under their own type; anything unrecognised (SVG, HTML, unknown bytes) an
`application/octet-stream` attachment; text results (transcripts, subtitles) `text/plain`. Every such
response carries `nosniff` and a sandboxing Content-Security-Policy (producer/console/app.py), so even a
file opened directly cannot run script.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from mmq.contract import JobRecord
from mmq.media import AUDIO_TYPES, IMAGE_TYPES, MediaError, declared_type, parse_data_url, sniff
from mmq.request_models import BLOB_SCHEME, Kind, chat_media_slots
from mmq.storage import BlobNotFound, Storage, StorageKeyError

# what a browser shows or plays by itself (TIFF and AVIF are images Chromium may not draw: thumbnails are)
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"})
INLINE_AUDIO = AUDIO_TYPES
TEXT_RESULTS = frozenset({"text/plain", "text/csv", "text/vtt", "application/x-subrip", "application/json"})
PREVIEW_CHARS = 2000

Source = Literal["stored", "inline", "link", "cloud"]
Role = Literal["image", "document", "audio"]


@dataclass(frozen=True)
class InputItem:
    """One piece of input media. `ref` (a blob key, a data: URL, base64, an http or gs:// URL) stays
    on the server; pages show `n`, `role`, `where` and, for links, the URL as text."""

    n: int
    role: Role
    where: str
    source: Source
    ref: str
    filename: str | None = None
    declared: str | None = None
    audio_format: str | None = None  # chat input_audio: raw base64 of this format

    @property
    def url(self) -> str | None:
        """The address a link or cloud item names (shown as text, never fetched by the console)."""
        return self.ref if self.source in ("link", "cloud") else None

    @property
    def thumb_id(self) -> str:
        """What identifies these bytes for the thumbnail cache (a hash of the reference)."""
        return hashlib.sha256(self.ref.encode()).hexdigest()


async def request_body(job: JobRecord, storage: Storage) -> dict[str, Any] | None:
    """The job's request as stored (kept in Redis when small, in storage when large)."""
    if job.request is not None:
        return job.request
    if not job.request_key:
        return None
    try:
        return json.loads(await storage.get(job.request_key))
    except (BlobNotFound, StorageKeyError, ValueError):
        return None


def _source(value: str) -> tuple[Source, str]:
    if value.startswith(BLOB_SCHEME):
        return "stored", value[len(BLOB_SCHEME) :]
    if value.startswith("data:"):
        return "inline", value
    if value.startswith("gs://"):
        return "cloud", value
    return "link", value


def input_items(job: JobRecord, body: dict[str, Any] | None) -> list[InputItem]:
    """The media of a request, in order: chat images, documents and input audio; an audio file."""
    if not body:
        return []
    items: list[InputItem] = []
    if job.kind is Kind.chat:
        for slot in chat_media_slots(body):
            source, ref = _source(slot.value)
            role: Role = "image" if slot.media == "image" else "document"
            name = slot.holder.get("filename") if role == "document" else None
            declared = declared_type(slot.value) if source == "inline" else None
            items.append(InputItem(len(items), role, slot.where, source, ref, name, declared))
        for m, message in enumerate(body.get("messages") or []):
            content = message.get("content")
            for p, part in enumerate(content if isinstance(content, list) else []):
                if isinstance(part, dict) and part.get("type") == "input_audio":
                    audio = part.get("input_audio") or {}
                    where = f"messages[{m}].content[{p}]"
                    items.append(
                        InputItem(
                            len(items),
                            "audio",
                            where,
                            "inline",
                            str(audio.get("data") or ""),
                            audio_format=str(audio.get("format") or ""),
                        )
                    )
    elif job.kind in (Kind.transcription, Kind.translation) and isinstance(body.get("file"), str):
        source, ref = _source(body["file"])
        items.append(InputItem(0, "audio", "file", source, ref, body.get("filename")))
    return items


def item_at(items: list[InputItem], where: str) -> InputItem | None:
    return next((i for i in items if i.where == where), None)


async def load_input(item: InputItem, storage: Storage) -> bytes | None:
    """The item's bytes, or None (a link the console does not fetch, or bytes that are gone)."""
    try:
        if item.source == "stored":
            return await storage.get(item.ref)
        if item.source == "inline" and item.audio_format is not None:
            return base64.b64decode(item.ref, validate=True)
        if item.source == "inline":
            return parse_data_url(item.ref)[1]
    except (BlobNotFound, StorageKeyError, MediaError, binascii.Error, ValueError):
        return None
    return None


def text_preview(item: InputItem, data: bytes | None) -> str | None:
    """The start of a text document (CSV, plain text) for the page; None for binary documents."""
    if data is None or item.role != "document" or sniff(data) is not None:
        return None
    try:
        text = data[: PREVIEW_CHARS * 4].decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        text = data[: PREVIEW_CHARS * 4].decode("utf-8", errors="ignore")
    return text[:PREVIEW_CHARS]


def first_thumb_source(job: JobRecord) -> tuple[str, int] | None:
    """What a job table row shows as its thumbnail, without reading storage: ('input', n) for a request
    kept in Redis whose first image is stored or inline; ('output', 0) for a generated image; ('input', 0)
    to try for a request kept in storage (the thumbnail answers 404 when it has no image)."""
    if job.kind is Kind.image and job.result and job.result.files:
        return "output", 0
    if job.kind is not Kind.chat:
        return None
    if job.request is None:
        return ("input", 0) if job.request_key else None
    for item in input_items(job, job.request):
        if item.role == "image" and item.source in ("stored", "inline"):
            return "input", item.n
    return None


# ------------------------------------------------------------------------------------------- serving
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def download_name(stem: str, extension: str) -> str:
    """A file name safe in a Content-Disposition header (the job's custom_id, tamed)."""
    return (_UNSAFE_NAME.sub("_", stem).strip("._") or "file")[:80] + extension


def served_type(data: bytes, recorded: str | None = None) -> tuple[str, bool]:
    """(Content-Type, inline?) for bytes: the sniffed type, inline only for images and audio a browser
    shows; other recognised binaries (PDF, TIFF, HEIC) under their own type as attachments; text
    results as text/plain (or JSON) when they are UTF-8; anything else an octet-stream attachment."""
    mime = sniff(data)
    if mime in INLINE_IMAGES or mime in INLINE_AUDIO:
        return mime, True
    if mime is not None:
        return mime, False
    if recorded:
        base = recorded.split(";")[0].strip().lower()
        if base in TEXT_RESULTS:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return "application/octet-stream", False
            if base == "application/json":
                return "application/json", True
            return "text/plain; charset=utf-8", True
    return "application/octet-stream", False


def is_image(data: bytes) -> bool:
    return sniff(data) in IMAGE_TYPES
