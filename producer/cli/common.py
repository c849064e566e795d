"""What the commands share: the Redis connection (checked before a command does anything), the records
and storage a command works on, and Ctrl-C while a command feeds or watches a batch.

A command talks to Redis only after one PING has answered, so an unset, malformed or unreachable
MMQ_REDIS_URL stops it with a message naming the setting, before any record is written.

Heavy modules (redis, the storage backends) are imported when a command runs, never at import time:
`mmq --help` stays fast.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from mmq.settings import Settings, get_settings
from producer.cli.errors import UserError, redacted, redis_unreachable

if TYPE_CHECKING:
    from arq.connections import ArqRedis

T = TypeVar("T")

PING_TIMEOUT_S = 10.0  # a blackholed host would otherwise hang the command for the OS's connect timeout


def need_redis(settings: Settings) -> str:
    """MMQ_REDIS_URL, when it is set and looks like a Redis URL (not yet connected)."""
    from redis.asyncio.connection import parse_url

    url = settings.redis_url
    if not url:
        raise UserError(
            "set MMQ_REDIS_URL (e.g. redis://127.0.0.1:6379/0), or use `mmq run FILE` for the embedded "
            "all-in-one mode"
        )
    try:
        parse_url(url)
        db = url.split("://", 1)[-1].partition("/")[2].partition("?")[0]
        if url.startswith(("redis://", "rediss://")) and db and not db.isdigit():
            raise ValueError(f"the database {db!r} after the last / is not a number")
    except ValueError as e:
        raise UserError(
            f"MMQ_REDIS_URL={redacted(url)} is not a Redis URL ({e}). Write it as redis://HOST:PORT/DB "
            "(e.g. redis://127.0.0.1:6379/0), rediss://… for TLS, or unix:///path/redis.sock."
        ) from None
    return url


async def connect_checked(settings: Settings) -> ArqRedis:
    """A connection to MMQ_REDIS_URL that has answered a PING."""
    from redis.exceptions import RedisError

    from mmq.connections import connect

    url = need_redis(settings)
    redis = connect(url)
    try:
        await asyncio.wait_for(redis.ping(), PING_TIMEOUT_S)
    except TimeoutError:
        await redis.aclose()
        raise UserError(redis_unreachable(url, f"no answer within {PING_TIMEOUT_S:.0f} s")) from None
    except (RedisError, OSError) as e:
        await redis.aclose()
        raise UserError(redis_unreachable(url, e)) from None
    return redis


def open_store(settings: Settings):  # type: ignore[no-untyped-def]
    from mmq.storage import open_storage

    try:
        return open_storage(settings.storage_url)
    except ValueError as e:
        raise UserError(f"MMQ_STORAGE_URL: {e}") from None


async def with_records(fn):
    """`await fn(settings, redis, records, storage)` on a connection to MMQ_REDIS_URL, closed after."""
    from mmq.records import Records
    from mmq.shared_store import StoreMismatch, check_shared_store

    settings = get_settings()
    storage = open_store(settings)
    redis = await connect_checked(settings)
    try:
        try:
            await check_shared_store(redis, storage, settings.key_prefix)
        except StoreMismatch as e:
            raise UserError(str(e)) from None
        return await fn(settings, redis, Records(redis, settings.key_prefix), storage)
    finally:
        await redis.aclose()


class Stopped(Exception):
    """Ctrl-C stopped the lines a command was feeding (CtrlC.feed)."""


class CtrlC:
    """The first Ctrl-C stops feeding lines (the batch is sealed with what was sent) or stops watching.
    Either way the workers go on with the batch. A second one interrupts at once (a batch left unsealed
    is sealed by a worker after MMQ_SUBMIT_STALL_S). Where signal handlers are unavailable, Ctrl-C raises
    KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> CtrlC:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self._first)
            self._loop = loop
        except (NotImplementedError, RuntimeError):
            pass
        return self

    def feed(self, lines: Iterable[T]) -> Iterator[T]:
        """`lines` until the first Ctrl-C, which raises Stopped in their reader: a submit seals its batch
        with what it sent, marked submission_interrupted (Producer.submit_batch)."""
        for line in lines:
            if self.event.is_set():
                raise Stopped
            yield line

    def _first(self) -> None:
        self.event.set()
        if self._loop is not None:  # the next Ctrl-C raises KeyboardInterrupt, as by default
            self._loop.remove_signal_handler(signal.SIGINT)
            self._loop = None

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGINT)
            self._loop = None
