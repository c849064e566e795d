"""Runs one batch line through the simulator's realtime handler, as if the body had arrived over HTTP.

Why: a batch line must be answered exactly as the realtime endpoint answers the same body (the same
validation, the same image token rules, the same usage), so the line goes to that very handler, in a
request built here. Only the guard is bypassed: auth, rate limits, scripted faults and latency apply
to the batch API calls, not to the lines inside a batch, as with the real providers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from mmq.simulator.errors import ApiError, NativeError
from mmq.simulator.guard import Handler


@dataclass(frozen=True)
class Origin:
    """What a line's request inherits from the call that created the batch: the app and the address
    the simulator was reached on (image URLs and Anthropic's results_url are built from it)."""

    app: object
    scheme: str
    server: tuple[str, int] | None
    host: str

    @classmethod
    def of(cls, request: Request) -> Origin:
        server = request.scope.get("server")
        return cls(
            app=request.scope["app"],
            scheme=request.url.scheme,
            server=tuple(server) if server else None,  # type: ignore[arg-type]
            host=request.headers.get("host") or request.url.netloc,
        )

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def request(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        path_params: Mapping[str, str] | None = None,
    ) -> Request:
        raw_headers = [
            (b"host", self.host.encode("latin-1")),
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": self.scheme,
            "server": self.server,
            "client": ("127.0.0.1", 0),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": raw_headers,
            "app": self.app,
            "path_params": dict(path_params or {}),
        }

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        return Request(scope, receive)


def parsed(response: Response) -> object:
    """A realtime answer's body as the batch output carries it: JSON parsed, text as a string."""
    raw = bytes(response.body)
    if response.headers.get("content-type", "").startswith("application/json"):
        return json.loads(raw)
    return raw.decode("utf-8", "replace")


async def answer(
    handler: Handler, request: Request, render: Callable[[ApiError], Response] | None = None
) -> tuple[int, object]:
    """(status, body) of a realtime handler for this request; its errors rendered as the dialect does."""
    try:
        response = await handler(request)
    except ApiError as exc:
        response = render(exc) if render else exc.response()
    except NativeError as exc:
        response = exc.response()
    return response.status_code, parsed(response)


def json_body(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
