"""Groq batch audio lines: a JSON body with `url` turned into the multipart upload the realtime route reads.

Why: Groq's batch runs Whisper transcriptions and translations, but a batch line cannot carry a file
upload, so it passes `body.url` (an http(s) URL or a base64 data URL; reference native_batch.md §7).
The simulator fetches it and hands the realtime Groq audio handler the same form a direct call would
send, so a batch line is checked (model, response_format…) and answered exactly as realtime is.
"""

from __future__ import annotations

import binascii
import secrets
from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from mmq.simulator.errors import bad_request
from mmq.simulator.groq import _audio
from mmq.simulator.guard import Handler
from mmq.simulator.parsing import decode_data_url, missing, read_json

if TYPE_CHECKING:
    from mmq.simulator.state import SimState

_MAX_AUDIO = 25 * 1024 * 1024


async def _fetch(url: str, sim: SimState) -> bytes:
    if url.startswith("data:"):
        try:
            return decode_data_url(url)[1]
        except (binascii.Error, ValueError):
            raise bad_request("Invalid 'url': not a base64 data URL.", "url", "invalid_value") from None
    if not url.startswith(("http://", "https://")):
        raise bad_request("Invalid 'url': expected an http(s) or base64 data URL.", "url", "invalid_value")
    try:
        resp = await sim.http.get(url)
        resp.raise_for_status()
    except httpx.HTTPError:
        raise bad_request(f"Could not download the audio at {url}.", "url", "invalid_url") from None
    return resp.content


def _multipart(fields: list[tuple[str, str]], data: bytes) -> tuple[bytes, str]:
    boundary = "mmqsim" + secrets.token_hex(12)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="audio"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _form_fields(body: dict[str, object]) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for name, value in body.items():
        if name in ("url", "file") or value is None:
            continue
        if name == "timestamp_granularities" and isinstance(value, list):
            fields += [("timestamp_granularities[]", str(v)) for v in value]
        else:
            fields.append((name, _text(value)))
    return fields


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _with_form(request: Request, body: bytes, content_type: str) -> Request:
    scope = dict(request.scope)
    scope["headers"] = [
        *((k, v) for k, v in request.scope["headers"] if k not in (b"content-length", b"content-type")),
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
    ]

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def audio_line(translate: bool) -> Handler:
    """A handler for a batch line's JSON audio body, answered by Groq's realtime audio route."""
    realtime = _audio(translate)

    async def endpoint(request: Request) -> Response:
        body = await read_json(request)
        url = body.get("url")
        if not isinstance(url, str) or not url:
            raise missing("url")
        data = await _fetch(url, request.app.state.sim)
        if len(data) > _MAX_AUDIO:
            raise bad_request(f"The audio at 'url' is over {_MAX_AUDIO} bytes.", "url", "invalid_value")
        form, content_type = _multipart(_form_fields(body), data)
        return await realtime(_with_form(request, form, content_type))

    return endpoint
