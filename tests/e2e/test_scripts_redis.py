"""Scripts queued on a pipeline go as EVALSHA, on a real Redis; one Redis has never seen (after a restart
or SCRIPT FLUSH) is sent again as EVAL after the rest, and the pipeline's other commands run once."""

from __future__ import annotations

import uuid

import pytest
from redis.exceptions import ResponseError

from mmq import scripts
from mmq.connections import connect


async def test_a_script_redis_does_not_know_runs_once_and_the_rest_once(redis_url):
    redis = connect(redis_url)
    key = f"mmq-test:scripts:{uuid.uuid4().hex}"
    # a text no Redis has loaded: its EVALSHA answers NOSCRIPT, as every script's does after a restart
    fresh = scripts.Lua(redis, "incr", f"-- {uuid.uuid4()}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.incr(key)
        fresh.queue(pipe, [key], [10])
        pipe.incr(key)
        # the unknown script is sent again after the pipeline: it ran once, after the other commands
        assert await scripts.execute(pipe) == [1, 12, 2]
        # now Redis knows it: the same pipeline goes as sent
        pipe = redis.pipeline(transaction=False)
        fresh.queue(pipe, [key], [100])
        assert await scripts.execute(pipe) == [112]
        assert int(await redis.get(key)) == 112
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_a_script_error_is_raised(redis_url):
    redis = connect(redis_url)
    broken = scripts.Lua(redis, "broken", f"-- {uuid.uuid4()}\nreturn redis.call('NOSUCHCOMMAND')")
    pipe = redis.pipeline(transaction=False)
    broken.queue(pipe, [], [])
    with pytest.raises(ResponseError):
        await scripts.execute(pipe)
    await redis.aclose()


async def test_a_script_called_alone_that_redis_does_not_know_runs_once(redis_url):
    redis = connect(redis_url)
    key = f"mmq-test:scripts:{uuid.uuid4().hex}"
    fresh = scripts.Lua(redis, "incr", f"-- {uuid.uuid4()}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    try:
        assert await fresh([key], [5]) == 5  # NOSCRIPT, then the text: it ran once
        assert await fresh([key], [1]) == 6  # known now
        assert await redis.script_exists(fresh.sha) == [True]  # the sha is Redis' own name for the text
        broken = scripts.Lua(redis, "broken", f"-- {uuid.uuid4()}\nreturn redis.call('NOSUCHCOMMAND')")
        with pytest.raises(ResponseError):
            await broken([], [])
    finally:
        await redis.delete(key)
        await redis.aclose()
