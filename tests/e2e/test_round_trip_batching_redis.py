"""mmq/round_trips.py on a real Redis: commands asked for in one turn of the event loop share one round
trip, each caller gets exactly its own replies in its own order, and one caller's error or cancellation
never reaches another; a failed round trip reaches each of its callers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from mmq import round_trips
from mmq.connections import connect


@pytest.fixture
async def redis(redis_url):
    r = connect(redis_url)
    yield r
    await r.aclose()


@pytest.fixture
def exchanges(monkeypatch):
    """The round trips made (each one's command count)."""
    made: list[int] = []
    real = round_trips._exchange

    async def counted(pool, commands):
        made.append(len(commands))
        return await real(pool, commands)

    monkeypatch.setattr(round_trips, "_exchange", counted)
    return made


async def test_callers_in_one_turn_share_one_round_trip_and_each_gets_its_own_replies(redis, exchanges):
    key = f"mmq-test:rt:{uuid.uuid4().hex}"
    pool = redis.connection_pool
    try:
        replies = await asyncio.gather(
            *(
                round_trips.send(pool, [("INCRBY", key, n), ("ECHO", f"caller {n}"), ("INCRBY", key, 0)])
                for n in (1, 10, 100)
            )
        )
        assert exchanges == [9]  # three callers, nine commands, one round trip
        # each caller's commands ran together, in its order: its two INCRBYs see no one else's between
        assert replies == [[1, b"caller 1", 1], [11, b"caller 10", 11], [111, b"caller 100", 111]]
        await round_trips.send(pool, [("GET", key)])
        assert exchanges == [9, 1]  # a later turn: a round trip of its own
    finally:
        await redis.delete(key)


async def test_an_error_reply_is_its_callers_alone(redis, exchanges):
    key = f"mmq-test:rt:{uuid.uuid4().hex}"
    pool = redis.connection_pool
    try:
        bad, good = await asyncio.gather(
            round_trips.send(pool, [("NOSUCHCOMMAND",), ("SET", key, "x")]),
            round_trips.send(pool, [("GET", key)]),
        )
        assert isinstance(bad[0], ResponseError) and bad[1] == b"OK"
        assert good == [b"x"]  # after the first caller's SET, in the same round trip
        assert exchanges == [3]
    finally:
        await redis.delete(key)


async def test_a_cancelled_caller_does_not_take_the_others_replies(redis):
    pool = redis.connection_pool
    first = asyncio.ensure_future(round_trips.send(pool, [("ECHO", "a")]))
    second = asyncio.ensure_future(round_trips.send(pool, [("ECHO", "b")]))
    await asyncio.sleep(0)  # both have added their commands
    first.cancel()
    assert await asyncio.wait_for(second, 10) == [b"b"]
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_round_trip_reaches_each_of_its_callers():
    down = connect("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        outcomes = await asyncio.gather(
            round_trips.send(down.connection_pool, [("PING",)]),
            round_trips.send(down.connection_pool, [("PING",)]),
            return_exceptions=True,
        )
        assert all(isinstance(o, RedisConnectionError) for o in outcomes)
        assert outcomes[0] is not outcomes[1]  # each caller raises its own instance
    finally:
        await down.aclose()


def test_commands_a_closed_loop_never_sent_do_not_stall_the_next_loop(redis_url):
    redis = connect(redis_url)
    pool = redis.connection_pool

    def add_and_stop() -> None:
        round_trips._BATCHES.setdefault(pool, round_trips._Batcher(pool)).add([("PING",)])
        first.stop()  # the loop ends with this turn: the flush the add scheduled never runs

    first = asyncio.new_event_loop()
    first.call_soon(add_and_stop)
    first.run_forever()
    first.close()
    second = asyncio.new_event_loop()
    try:
        assert second.run_until_complete(asyncio.wait_for(round_trips.send(pool, [("PING",)]), 10)) == [
            b"PONG"
        ]
        second.run_until_complete(redis.aclose())
    finally:
        second.close()
