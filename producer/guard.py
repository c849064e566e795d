"""The API's front door: who may send a body, and how much of it is read.

FastAPI reads and parses a request body before it runs a route's dependencies, so a key check written as
a dependency runs after an anonymous client's 300 MB has been read into memory. This ASGI middleware runs
first: a request that carries a body needs a known API key before a byte of it is read (401 otherwise),
and the body is counted as it is read, with a 413 naming the limit and its setting once it is over:
- JSON bodies: `MMQ_MAX_BODY_BYTES`;
- multipart uploads (`/v1/files`): `MMQ_MAX_UPLOAD_BYTES`;
- streamed JSONL / CSV bodies have no total limit (they are read line by line); each line is bounded by
  `MMQ_MAX_LINE_BYTES` where it is parsed (producer.jsonl), so a huge line fails its own row only.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from mmq.settings import Settings
from producer.auth import RESOLVED, UNAUTHORIZED, bearer_token

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes its limit. An HTTPException, so that FastAPI's body
    parsing passes it through (it wraps other errors as a 400) and the surface renders it in its shape."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes (the API's {setting})")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return ""


def _limit(scope: Scope, settings: Settings) -> tuple[int, str] | None:
    content_type = _header(scope, b"content-type").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        return settings.max_body_bytes, "MMQ_MAX_BODY_BYTES"
    if content_type.startswith("multipart/"):
        return settings.max_upload_bytes, "MMQ_MAX_UPLOAD_BYTES"
    return None  # a streamed JSONL/CSV body: bounded per line by its parser


class RequestGuard:
    """Pure ASGI (no body buffering of its own). `tenant_of(key)` is the key's tenant, or None
    (producer.auth.KeyTable); the tenant found is left in the request's state for the route."""

    def __init__(
        self, app: ASGIApp, settings: Settings, tenant_of: Callable[[str | None], Awaitable[str | None]]
    ) -> None:
        self.app = app
        self.settings = settings
        self.tenant_of = tenant_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        tenant = await self.tenant_of(bearer_token(_header(scope, b"authorization")))
        if tenant is None:
            await _reply(scope, send, 401, UNAUTHORIZED)
            return
        scope.setdefault("state", {})[RESOLVED] = tenant
        limit = _limit(scope, self.settings)
        if limit is None:
            await self.app(scope, receive, send)
            return
        max_bytes, setting = limit
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > max_bytes:
            await _reply(scope, send, 413, str(BodyTooLarge(max_bytes, setting).detail))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise BodyTooLarge(max_bytes, setting)
            return message

        await self.app(scope, counted, send)


async def _reply(scope: Scope, send: Send, status: int, message: str) -> None:
    """A JSON error in the surface's shape (/v1: OpenAI's), sent without reading the request body."""
    path = scope.get("path", "")
    if path == "/v1" or path.startswith("/v1/"):
        kind = "invalid_request_error"
        code = "invalid_api_key" if status == 401 else "request_too_large"
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    else:
        body = {"detail": message}
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    # the unread body stays on the socket: close the connection instead of reading it to keep it alive
    headers.append((b"connection", b"close"))
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
