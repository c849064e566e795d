"""The one HTTP client a worker process shares across all its jobs.

httpx's API over an aiohttp connection pool: httpcore's pool bookkeeping grows with the square of open
connections (≈12-18 ms of client CPU per call at 256 in flight on a 2-core machine), aiohttp's stays
under 1 ms. `bench/http_client_cpu.py` measures both. Tests may pass any httpx transport instead.
"""

from __future__ import annotations

import httpx
from httpx_aiohttp import AiohttpTransport


def make_client(
    *,
    timeout_s: float = 120.0,
    max_connections: int = 1024,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport is None:
        transport = AiohttpTransport(limits=limits)
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)),
        follow_redirects=False,
        headers={"user-agent": "mmq/0.1"},
    )
