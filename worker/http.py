"""The one HTTP client a worker process shares across all its jobs.

httpx's API over an aiohttp connection pool: httpcore's pool bookkeeping grows with the square of open
connections (≈12-18 ms of client CPU per call at 256 in flight on a 2-core machine), aiohttp's stays
under 1 ms. `bench/http_client_cpu.py` measures both. Tests may pass any httpx transport instead.

A provider call with a JSON or bytes body goes straight to the aiohttp pool (`WorkerClient.direct`):
httpx's request building (URL merging and parsing, cookie extraction, streamed reads) cost more CPU than
the aiohttp exchange under it, about a fifth of a job's CPU. The answer is still an httpx.Response, built
from the bytes read, so adapters read it as before; errors are httpx's, mapped as the transport maps
them. Anything else (multipart, a query string, a test's transport) goes through httpx.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from typing import Any

import httpx
from aiohttp import ClientSession, ClientTimeout
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

USER_AGENT = "mmq/0.1"


class WorkerClient(httpx.AsyncClient):
    """An httpx.AsyncClient that can also send one request directly on its aiohttp pool."""

    def __init__(self, *, pool: AiohttpTransport | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool = pool

    async def direct(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        json: Any = None,
        content: bytes | None = None,
    ) -> httpx.Response | None:
        """The answer, read whole; None when this client has no aiohttp pool (the caller uses httpx)."""
        if self._pool is None:
            return None
        if not isinstance(self._pool.client, ClientSession):
            self._pool.client = self._pool.get_client()  # as the transport makes it, on first use
        sent = {**self.headers, **headers}  # the client's defaults (user agent, accept), then the call's
        body = content
        if json is not None:
            # byte for byte what httpx sends for json=
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            sent["content-type"] = "application/json"
        timeout = self.timeout
        with map_aiohttp_exceptions():
            async with self._pool.client.request(
                method,
                url,
                headers=sent,
                data=body,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes the body below, as on the transport path
                compress=False,
                timeout=ClientTimeout(
                    sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
                ),
            ) as answer:
                raw = await answer.read()
                return httpx.Response(
                    answer.status,
                    headers=answer.raw_headers,
                    content=raw,
                    extensions={"reason_phrase": (answer.reason or "").encode()},
                )


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
