"""Commands to Redis on the hot path: packed on one pooled connection, replies read back in order, and every
batch of commands asked for in one turn of the event loop sent together, in one round trip.

Why: a worker runs a hundred jobs at once, and the jobs a poll started (or whose provider answers arrived
together) reach their admit or their finish in the same turn of the loop. Sent one by one, each is a
connection taken from the pool, a write, a wake-up for its reply and a read, on the worker and on Redis;
sent together they are one of each. A caller's commands stay together and in its order (a pipeline's
meaning is kept), and each caller gets exactly its own replies. redis-py's pipeline execution (command
stack, reply callbacks, retry wrapper) is not used: the replies come as Redis sent them, an error reply
as its exception, which is what every caller here reads.

A failure of the round trip itself (Redis gone, a cancelled worker) reaches every caller of that batch,
each with its own copy of the error; the connection is closed, never handed out again.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from redis.exceptions import ResponseError

Command = tuple[Any, ...]

_BATCHES: weakref.WeakKeyDictionary[Any, _Batcher] = weakref.WeakKeyDictionary()


async def send(pool: Any, commands: list[Command]) -> list[Any]:
    """`commands` on `pool` (a redis-py asyncio ConnectionPool) in the next round trip; their replies."""
    batcher = _BATCHES.get(pool)
    if batcher is None:
        batcher = _BATCHES[pool] = _Batcher(pool)
    return await batcher.add(commands)


class _Batcher:
    """The commands of one pool's callers in this turn of the loop, sent when the turn ends."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.waiting: list[tuple[list[Command], asyncio.Future[list[Any]]]] = []
        self.sending: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the waiting commands' flush is on

    def add(self, commands: list[Command]) -> asyncio.Future[list[Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if self.waiting and self.loop is not loop:
            # left by a loop that closed before its flush ran (a test's loop): never sent, never will be
            for _, stale in self.waiting:
                stale.cancel()
            self.waiting = []
        if not self.waiting:
            self.loop = loop
            loop.call_soon(self._flush)  # after every caller this turn has added its commands
        self.waiting.append((commands, future))
        return future

    def _flush(self) -> None:
        batch, self.waiting = self.waiting, []
        task = asyncio.ensure_future(self._send(batch))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _send(self, batch: list[tuple[list[Command], asyncio.Future[list[Any]]]]) -> None:
        try:
            replies = await _exchange(self.pool, [command for commands, _ in batch for command in commands])
        except BaseException as e:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(e, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(_copy(e))
            if not isinstance(e, Exception):
                raise
            return
        start = 0
        for commands, future in batch:
            if not future.done():  # a caller cancelled meanwhile: its commands went all the same
                future.set_result(replies[start : start + len(commands)])
            start += len(commands)


def _copy(error: BaseException) -> BaseException:
    """A caller's own instance of a shared failure (tracebacks are not shared between tasks)."""
    try:
        fresh = type(error)(*error.args)
    except Exception:
        return error
    fresh.__cause__ = error.__cause__
    return fresh


async def _exchange(pool: Any, commands: list[Command]) -> list[Any]:
    """Every command on one connection of `pool`, the replies in order (an error reply as its exception).
    A connection left mid-exchange (cancelled, or its Redis gone) is closed, never handed out again."""
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        replies = await read_replies(conn, len(commands))
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)
    return replies


async def read_replies(conn: Any, count: int) -> list[Any]:
    """The next `count` replies on `conn`, in order, an error reply as its exception (so the connection
    stays in step with what was sent whatever the replies say)."""
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(await conn.read_response())
        except ResponseError as e:
            replies.append(e)
    return replies
