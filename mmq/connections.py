"""Redis connections for every process: a real server by URL, or the embedded in-memory one."""

from __future__ import annotations

import hiredis
import redis.asyncio
from arq.connections import ArqRedis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mmq.extras import require

# what a Redis restart or a network cut raises: nothing can be written until it is back
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)

MMQ_CLIENT_NAME = "mmq-worker"  # the worker's own connections (CLIENT LIST; bench round-trip counts)


class PackedConnection(redis.asyncio.Connection):
    """redis-py's asyncio connection with commands packed by hiredis in C.

    redis-py 5 packs asyncio commands in Python (its sync client already uses hiredis): about 30 µs for a
    script call with a dozen arguments, a tenth of a job's CPU in the worker. The bytes sent are the same.
    """

    def pack_command(self, *args):  # type: ignore[no-untyped-def]
        if isinstance(args[0], str):
            args = tuple(args[0].encode().split()) + args[1:]
        elif b" " in args[0]:
            args = tuple(args[0].split()) + args[1:]
        try:
            return [hiredis.pack_command(args)]
        except TypeError as e:  # redis-py raises DataError for a value it cannot send (None, a dict…)
            raise DataError(str(e)) from None

    async def can_read_destructive(self) -> bool:
        """Does this idle connection hold unread bytes (or has its server closed it)? The pool asks
        before every command it hands the connection to. redis-py finds out by awaiting a socket read
        under a zero timeout: a suspended task, a timer and a cancellation each time, about a third of
        its own CPU per command. Bytes that reached the connection while it sat in the pool are already
        in its stream's buffer (the event loop delivers them), so looking there answers the same."""
        parser = self._parser
        stream = getattr(parser, "_stream", None)
        if not isinstance(parser, _AsyncHiredisParser) or stream is None:
            return await super().can_read_destructive()
        if not parser._connected:
            raise RedisConnectionError("connection closed")
        if parser._reader.gets() is not NOT_ENOUGH_DATA:
            return True
        if stream.at_eof() or stream.exception() is not None:
            raise RedisConnectionError("connection closed by the server")
        return bool(stream._buffer)


def connect(url: str, *, client_name: str | None = None) -> ArqRedis:
    # ArqRedis is a redis.asyncio.Redis: producers, the API and arq's worker can all share it.
    # rediss:// and unix:// URLs choose their own connection class (packed in Python; same protocol).
    return ArqRedis.from_url(url, client_name=client_name, connection_class=PackedConnection)


def embedded_redis(server: object | None = None) -> ArqRedis:
    """An in-memory Redis (fakeredis, with Lua via lupa) for the all-in-one `mmq run`: the `embedded`
    extra, imported here only (MissingExtra naming it when it is not installed)."""
    feature = "mmq run (the all-in-one mode, on an in-memory Redis)"
    require("fakeredis", extra="embedded", feature=feature)
    require("lupa", extra="embedded", feature=feature)  # the Lua scripts (mmq/lua) run on lupa
    import fakeredis

    server = server or fakeredis.FakeServer()
    pool = redis.asyncio.ConnectionPool(
        connection_class=fakeredis.aioredis.FakeAsyncRedisConnection, server=server
    )
    return ArqRedis(connection_pool=pool)
