"""How the API is served: uvicorn with bounded connections, bounded idle time, and bounded log noise.

uvicorn holds a connection that never sends a request forever, and has no per-client limit: 1,100 idle
sockets against a 1,024 file limit made `/health` time out and asyncio wrote "Too many open files" about
7,000 times a second. Here each connection must send a complete request head within
`MMQ_API_HEADER_TIMEOUT_S` (idle and slow-header clients alike), keep-alive idles out after
`MMQ_API_KEEPALIVE_S`, a connection past `MMQ_API_MAX_CONNECTIONS` in all (or past
`MMQ_API_MAX_CONNECTIONS_PER_CLIENT` from one address) is closed as soon as it is accepted, so the
process never runs out of file descriptors; and any log line repeated in a burst is summarised.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from mmq.settings import Settings


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the limits above. The limits are class attributes set by
    `serve_config` (uvicorn builds protocols itself and passes them only its own config)."""

    max_connections = 512
    max_per_client = 64
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        per_client: Counter[str] = self.server_state.__dict__.setdefault("mmq_per_client", Counter())
        self._peer = self.client[0] if self.client else "?"
        per_client[self._peer] += 1
        if len(self.connections) > self.max_connections or per_client[self._peer] > self.max_per_client:
            transport.abort()  # frees the descriptor now; connection_lost does the bookkeeping
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        per_client: Counter[str] = self.server_state.__dict__.setdefault("mmq_per_client", Counter())
        per_client[self._peer] -= 1
        if per_client[self._peer] <= 0:
            del per_client[self._peer]
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_timer()  # the next request on a kept-alive connection gets the same deadline

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_expired)

    def _head_expired(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete  # no request in progress
        if waiting and not self.transport.is_closing():
            self.transport.abort()


class RepeatFilter(logging.Filter):
    """Lets `burst` records of one message template through per `interval_s`; the rest are counted and
    reported on the next record that passes ("… (1234 similar lines suppressed)")."""

    def __init__(self, burst: int = 5, interval_s: float = 60.0) -> None:
        super().__init__()
        self.burst, self.interval_s = burst, interval_s
        self._windows: dict[tuple[str, str], tuple[float, int, int]] = {}  # key → (start, passed, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        start, passed, dropped = self._windows.get(key, (now, 0, 0))
        if now - start >= self.interval_s:
            start, passed = now, 0
        if passed >= self.burst:
            self._windows[key] = (start, passed, dropped + 1)
            return False
        if dropped:
            record.msg = f"{record.msg} ({dropped} similar lines suppressed)"
        self._windows[key] = (start, passed + 1, 0)
        if len(self._windows) > 10_000:  # messages with ids in their template: forget the oldest
            self._windows.pop(next(iter(self._windows)))
        return True


_NOISY_LOGGERS = ("asyncio", "uvicorn", "uvicorn.error")


def _raise_fd_limit() -> None:
    """Use the hard file limit: a busy API needs more than the common soft default of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """A uvicorn Config for `app` with mmq's connection limits (see the module docstring)."""
    _raise_fd_limit()
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # asyncio accepts up to `backlog` sockets per wake-up before any connection_made runs: those, the
    # connections we keep and the process's own files (Redis, storage, logs) must fit under the limit
    backlog = 64
    BoundedH11Protocol.max_connections = min(settings.api_max_connections, max(16, limit - backlog - 96))
    BoundedH11Protocol.max_per_client = settings.api_max_connections_per_client
    BoundedH11Protocol.header_timeout_s = settings.api_header_timeout_s
    config = uvicorn.Config(
        app, http=BoundedH11Protocol, timeout_keep_alive=settings.api_keepalive_s, backlog=backlog, **options
    )
    repeat = RepeatFilter()  # after Config: it (re)configures uvicorn's loggers
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(repeat)
    return config
