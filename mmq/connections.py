"""Redis connections for every process: a real server by URL, or the embedded in-memory one."""

from __future__ import annotations

from arq.connections import ArqRedis

MMQ_CLIENT_NAME = "mmq-worker"  # the worker's own connections (CLIENT LIST; bench round-trip counts)


def connect(url: str, *, client_name: str | None = None) -> ArqRedis:
    # ArqRedis is a redis.asyncio.Redis: producers, the API and arq's worker can all share it
    return ArqRedis.from_url(url, client_name=client_name)


def embedded_redis(server: object | None = None) -> ArqRedis:
    """An in-memory Redis (fakeredis, with Lua via lupa) for the all-in-one `mmq run`."""
    import fakeredis
    import redis.asyncio

    server = server or fakeredis.FakeServer()
    pool = redis.asyncio.ConnectionPool(
        connection_class=fakeredis.aioredis.FakeAsyncRedisConnection, server=server
    )
    return ArqRedis(connection_pool=pool)
