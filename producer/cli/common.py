"""What the commands share: the Redis connection (or why there is none), the records and storage a
command works on, and Ctrl-C while a command feeds or watches a batch.

Heavy modules (redis, the storage backends) are imported when a command runs, never at import time:
`mmq --help` stays fast.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from mmq.settings import Settings, get_settings


def need_redis(settings: Settings) -> str:
    if not settings.redis_url:
        sys.exit(
            "mmq: set MMQ_REDIS_URL (e.g. redis://127.0.0.1:6379/0), or use `mmq run FILE` for the "
            "embedded all-in-one mode"
        )
    return settings.redis_url


async def with_records(fn):
    """`await fn(settings, redis, records, storage)` on a connection to MMQ_REDIS_URL, closed after."""
    from mmq.connections import connect
    from mmq.records import Records
    from mmq.storage import open_storage

    settings = get_settings()
    redis = connect(need_redis(settings))
    try:
        return await fn(
            settings, redis, Records(redis, settings.key_prefix), open_storage(settings.storage_url)
        )
    finally:
        await redis.aclose()


class CtrlC:
    """The first Ctrl-C stops feeding lines (the batch is sealed with what was sent) or stops watching.
    Either way the workers go on with the batch. Where signal handlers are unavailable, Ctrl-C raises
    KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> CtrlC:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.event.set)
            self._loop = loop
        except (NotImplementedError, RuntimeError):
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGINT)
            self._loop = None
