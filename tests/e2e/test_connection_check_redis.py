"""The pool's check of an idle connection (mmq.connections.PackedConnection.can_read_destructive), on a
real Redis: a connection handed back with a reply that reached it unread, or one the server closed, is
never handed out as it is, so no command reads another command's reply. (A reply still on its way is
not seen by any such check, redis-py's included: a command cancelled mid-read closes its connection.)"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mmq.connections import connect


@pytest.fixture
async def redis_and_key(redis_url):
    redis = connect(redis_url)
    key = f"mmq-test:conn:{uuid.uuid4().hex}"
    yield redis, key
    await redis.delete(key)
    await redis.aclose()


async def test_a_reply_left_unread_is_never_read_as_the_next_commands(redis_and_key):
    redis, key = redis_and_key
    await redis.set(key, "mine")
    pool = redis.connection_pool
    conn = await pool.get_connection()
    # a command whose reply is never read (as a cancelled call leaves it), then back into the pool
    await conn.send_command("ECHO", "stale")
    for _ in range(1000):  # until the stale reply has reached the connection (a busy machine is slow)
        if conn._parser._stream._buffer:
            break
        await asyncio.sleep(0.01)
    await pool.release(conn)
    for _ in range(3):
        assert await redis.get(key) == b"mine"


async def test_a_connection_the_server_closed_is_replaced(redis_and_key, redis_url):
    redis, key = redis_and_key
    await redis.set(key, "1")
    pool = redis.connection_pool
    conn = await pool.get_connection()
    await conn.send_command("CLIENT", "ID")
    client_id = await conn.read_response()
    await pool.release(conn)
    # another client kills this idle connection (and only it), as a Redis restart or a timeout would
    killer = connect(redis_url)
    assert await killer.execute_command("CLIENT", "KILL", "ID", client_id) == 1
    await killer.aclose()
    assert await redis.incr(key) == 2
