"""A request at the door: its kind, its validation and dump, and its inline media moved to blob storage.

Why apart from the Producer: the quote reads requests exactly as a submit does (the same models, the same
messages, the same media types) without writing a job, and the Producer's own flow (drafts, cache keys,
records, the queue) reads better without the media rules inside it. One `Intake` per Producer: it keeps
the url → kind memo of the batch being read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic_core
from pydantic import ValidationError

from mmq.errors import InvalidJob
from mmq.media import (
    AUDIO_TYPES,
    IMAGE_TYPES,
    PDF_TYPES,
    ImageTooLarge,
    MediaError,
    document_type,
    open_image,
    parse_data_url,
    sniff,
)
from mmq.request_models import BLOB_SCHEME, Kind, chat_media_slots, dump_request, kind_for_url, parse_request
from mmq.settings import Settings
from mmq.storage import Storage, put_blob
from producer.local_files import LocalFileError, read_local_file
from producer.options import LineError, format_validation_error


def _check_pixels(data: bytes, max_pixels: int, what: str) -> None:
    """Refuses an image declaring too many pixels, from its header alone (nothing is decoded here). One
    Pillow cannot read is left to the worker, which fails its job with its own message."""
    try:
        open_image(data, max_pixels, what).close()
    except ImageTooLarge as e:
        raise LineError(str(e)) from None
    except Exception:  # Pillow's many error types for a corrupt header
        return


class Intake:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        *,
        allow_local_paths: bool = False,
        base_dir: Path | None = None,
        trusted_blob_refs: frozenset[str] = frozenset(),
    ) -> None:
        """`allow_local_paths`: audio `file` may name a file on this machine (CLI and Python API only,
        never the HTTP API, which must not read the server's disk).
        `trusted_blob_refs`: mmq-blob:// refs that chat bodies may carry as whole string values — a saved
        template's own media, stored by the template store (producer/templates/store.py); any other ref is
        refused."""
        self.storage = storage
        self.settings = settings
        self.allow_local_paths = allow_local_paths
        self.base_dir = base_dir or Path.cwd()
        self.trusted_blob_refs = trusted_blob_refs
        self._kinds: dict[str, Kind] = {}  # a batch's url → its kind

    def kind_of(self, url: str | None) -> Kind:
        kind = self._kinds.get(url or "")
        if kind is None:
            try:
                kind = kind_for_url(url or "")
            except ValueError as e:
                raise LineError(str(e)) from None
            if len(self._kinds) < 64:  # a file names a handful of urls; a hostile one, not many more here
                self._kinds[url or ""] = kind
        return kind

    async def store_checked(self, data: bytes, allowed: frozenset[str], what: str) -> str:
        """Stores media whose sniffed type is allowed; returns its blob reference."""
        mime = sniff(data)
        if mime not in allowed:
            raise LineError(
                f"{what}: bytes look like {mime or 'unknown data'}, not one of the accepted types"
            )
        if mime in IMAGE_TYPES:
            _check_pixels(data, self.settings.image_max_pixels, what)
        return BLOB_SCHEME + await put_blob(self.storage, data, mime)

    async def blob_from_data_url(self, url: str, allowed: frozenset[str], what: str) -> str:
        try:
            _, data = parse_data_url(url)
        except MediaError as e:
            raise LineError(f"{what}: {e}") from None
        return await self.store_checked(data, allowed, what)

    async def externalize_chat(self, body: dict[str, Any]) -> None:
        for slot in chat_media_slots(body):
            if not slot.value.startswith("data:"):
                continue
            if slot.media == "image":
                slot.set(await self.blob_from_data_url(slot.value, IMAGE_TYPES, slot.where))
                continue
            try:
                mime = document_type(parse_data_url(slot.value)[1], slot.value, slot.where)
            except (MediaError, InvalidJob) as e:
                raise LineError(f"{slot.where}: {e}") from None
            if mime in PDF_TYPES:
                slot.set(await self.blob_from_data_url(slot.value, PDF_TYPES, slot.where))
            # CSV / plain text stay inline: small, and their declared type is part of the request

    async def externalize_audio(self, body: dict[str, Any]) -> None:
        ref = body["file"]
        if ref.startswith("data:"):
            body["file"] = await self.blob_from_data_url(ref, AUDIO_TYPES, "file")
        elif ref.startswith(("http://", "https://")):
            raise LineError("file: remote audio URLs are not supported; send a data: URL or upload the file")
        elif ref.startswith(BLOB_SCHEME):
            raise LineError("file: mmq-blob:// references are internal; send the audio itself")
        elif self.allow_local_paths:
            path = (self.base_dir / ref).expanduser()
            try:
                data = read_local_file(path, ref, self.settings.max_line_bytes)
            except LocalFileError as e:
                raise LineError(f"file: {e}") from None
            body["file"] = await self.store_checked(data, AUDIO_TYPES, f"file {ref!r}")
            body.setdefault("filename", path.name)
        else:
            raise LineError("file: must be a data: URL of the audio")

    async def prepare(self, kind: Kind, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """The request validated and dumped (media moved to blob storage), and its JSON. Raises
        LineError naming the field."""
        try:
            request = parse_request(kind, body)
        except ValidationError as e:
            raise LineError(format_validation_error(e)) from None
        except ValueError as e:  # NaN, Infinity, nesting past MAX_JSON_DEPTH
            raise LineError(str(e)) from None
        if kind is Kind.chat and _foreign_blob_ref_in(body, self.trusted_blob_refs):
            raise LineError("mmq-blob:// references are internal; send images as http(s) or data: URLs")
        data = dump_request(request)
        # pydantic's JSON, as the record's spec writes it; a few hundred ns for a small request
        text = pydantic_core.to_json(data)
        if kind is Kind.chat:
            if b'"data:' in text:  # inline media to move (a data: URL's JSON starts so; none escaped)
                await self.externalize_chat(data)
                text = pydantic_core.to_json(data)
        elif kind in (Kind.transcription, Kind.translation):
            await self.externalize_audio(data)
            text = pydantic_core.to_json(data)
        return data, text

    def too_big(self, request: dict[str, Any], text: bytes) -> str | None:
        """The request's JSON (non-ASCII escaped, as its size is counted) when it is too big to keep in
        Redis (inline_request_max_bytes), else None. That JSON is at most 6 times `text` (a \\uXXXX
        escape for a byte): a smaller request is not serialised again."""
        limit = self.settings.inline_request_max_bytes
        if 6 * len(text) <= limit:
            return None
        encoded = json.dumps(request, separators=(",", ":"))
        return encoded if len(encoded) > limit else None


_BLOB_SCHEME_BYTES = BLOB_SCHEME.encode()


def _foreign_blob_ref_in(body: Any, trusted: frozenset[str]) -> bool:
    """`_foreign_blob_ref` of a request body, without walking every value of every line: a body whose
    JSON does not hold the scheme names no blob, in a key or in a value (the scheme has no character
    JSON escapes). Only a body that holds it is walked."""
    try:
        if _BLOB_SCHEME_BYTES not in pydantic_core.to_json(body):
            return False
    except Exception:  # a value JSON cannot hold (given through the Python API): the walk decides
        pass
    return _foreign_blob_ref(body, trusted)


def _foreign_blob_ref(value: Any, trusted: frozenset[str]) -> bool:
    """Whether `value` names a blob anywhere (keys included) other than as a whole string in `trusted`:
    a user who could name blobs could read another tenant's media by its hash."""
    if isinstance(value, str):
        return BLOB_SCHEME in value and value not in trusted
    if isinstance(value, dict):
        return any(_foreign_blob_ref(k, trusted) or _foreign_blob_ref(v, trusted) for k, v in value.items())
    if isinstance(value, list):
        return any(_foreign_blob_ref(v, trusted) for v in value)
    return False
