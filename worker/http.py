"""The one HTTP client a worker process shares across all its jobs.

httpx's API over an aiohttp connection pool: httpcore's pool bookkeeping grows with the square of open
connections (≈12-18 ms of client CPU per call at 256 in flight on a 2-core machine), aiohttp's stays
under 1 ms. `bench/http_client_cpu.py` measures both. Tests may pass any httpx transport instead.

A provider call with a JSON or bytes body goes straight to the aiohttp pool (`WorkerClient.direct`):
httpx's request building (URL merging and parsing, cookie extraction, streamed reads) cost more CPU than
the aiohttp exchange under it, about a fifth of a job's CPU. The answer is an `Answer`: the part of
httpx.Response adapters read (status, headers.get, content, text, json()), on the headers aiohttp has
already parsed; building an httpx.Response from the bytes cost ~20 µs more per call. Errors are httpx's,
mapped as the transport maps them. Anything else (multipart, a query string, a test's transport) goes
through httpx and answers an httpx.Response.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from email.message import Message
from typing import Any

import httpx
from aiohttp import ClientSession, ClientTimeout
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

USER_AGENT = "mmq/0.1"
# what aiohttp decodes itself (zlib): a provider is never offered an encoding the direct path cannot read
DIRECT_ACCEPT_ENCODING = "gzip, deflate"


class Answer:
    """A provider's answer read whole on the direct path: the read-only face of httpx.Response that the
    adapters and the send path use. `headers.get` is case-insensitive, as httpx's is."""

    __slots__ = ("_text", "content", "headers", "reason_phrase", "status_code")

    def __init__(self, status_code: int, reason_phrase: str, headers: Mapping[str, str], content: bytes):
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content
        self._text: str | None = None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """The body decoded by its declared charset (UTF-8 when none, or an unknown one), as httpx."""
        if self._text is None:
            self._text = self.content.decode(_charset(self.headers.get("content-type")), errors="replace")
        return self._text

    def json(self, **kwargs: Any) -> Any:
        return jsonlib.loads(self.content, **kwargs)

    def __repr__(self) -> str:
        return f"<Answer [{self.status_code} {self.reason_phrase}]>"


def _charset(content_type: str | None) -> str:
    if not content_type or "charset" not in content_type:
        return "utf-8"
    message = Message()
    message["content-type"] = content_type
    charset = message.get_content_charset() or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


class WorkerClient(httpx.AsyncClient):
    """An httpx.AsyncClient that can also send one request directly on its aiohttp pool."""

    def __init__(self, *, pool: AiohttpTransport | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool = pool
        self._made_timeouts: tuple[httpx.Timeout, ClientTimeout] | None = None

    async def direct(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        json: Any = None,
        content: bytes | None = None,
    ) -> Answer | None:
        """The answer, read whole; None when this client has no aiohttp pool (the caller uses httpx)."""
        if self._pool is None:
            return None
        if not isinstance(self._pool.client, ClientSession):
            self._pool.client = self._pool.get_client()  # as the transport makes it, on first use
        # the client's defaults (user agent, accept), the encodings aiohttp decodes, then the call's
        sent = {**self.headers, "accept-encoding": DIRECT_ACCEPT_ENCODING, **headers}
        body = content
        if json is not None:
            # byte for byte what httpx sends for json=
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            sent["content-type"] = "application/json"
        with map_aiohttp_exceptions():
            async with self._pool.client.request(
                method,
                url,
                headers=sent,
                data=body,
                allow_redirects=False,
                compress=False,
                timeout=self._timeouts(),
            ) as answer:
                content = await answer.read()
                return Answer(answer.status, answer.reason or "", answer.headers, content)

    def _timeouts(self) -> ClientTimeout:
        """aiohttp's form of this client's httpx timeouts, made once (they do not change)."""
        made = self._made_timeouts
        if made is None or made[0] is not self.timeout:
            timeout = self.timeout
            aio = ClientTimeout(sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool)
            made = self._made_timeouts = (timeout, aio)
        return made[1]


def make_client(
    *,
    timeout_s: float = 120.0,
    max_connections: int = 1024,
    transport: httpx.AsyncBaseTransport | None = None,
) -> WorkerClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    pool = None
    if transport is None:
        transport = pool = AiohttpTransport(limits=limits)
    return WorkerClient(
        pool=pool,
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)),
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
    )
