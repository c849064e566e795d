"""The gate (rate limits, 429 pauses, concurrency, circuit breaker) as Lua on a real Redis: the admissions
every worker sees."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from mmq.connections import connect
from mmq.routing import RateLimit
from worker.gate import Gate, estimate_tokens


@pytest.fixture
async def redis(redis_url):
    r = connect(redis_url)
    yield r
    await r.aclose()


async def admit(limiter: Gate, limit: RateLimit, tokens: int = 1, max_wait_s: float = 10.0):
    return await limiter.admit("b", limit, tokens=tokens, max_wait_s=max_wait_s, lease_ttl_s=30)


async def pass_gate(gate: Gate, bucket: str):
    return await gate.admit(bucket, None, max_wait_s=10.0, lease_ttl_s=30)


async def test_requests_are_booked_evenly_spaced_slots(redis):
    limiter = Gate(redis, "t", margin=0.0)
    waits, booked = [], []
    for _ in range(5):
        waits.append((await admit(limiter, RateLimit(rps=10))).wait_s)
        booked.append(float(await redis.hget(limiter.keys.rate_limit("b")[0], "r")))  # the next free slot
    # 10/s: one slot every 100 ms, whoever asks. The booked slots are exact (Redis' clock, no jitter of
    # ours); the waits each caller is told shrink by however long the asks took on this machine
    assert waits[0] == pytest.approx(0.0, abs=0.05)
    assert [b - a for a, b in itertools.pairwise(booked)] == pytest.approx([100.0] * 4)
    assert all(0.0 < b - a <= 0.1 + 1e-6 for a, b in itertools.pairwise(waits))


async def test_a_slot_beyond_the_longest_wait_is_refused_and_not_booked(redis):
    limiter = Gate(redis, "t", margin=0.0)
    for _ in range(3):
        assert (await admit(limiter, RateLimit(rps=1), max_wait_s=2.5)).admitted
    refused = await admit(limiter, RateLimit(rps=1), max_wait_s=2.5)
    assert not refused.admitted and refused.wait_s == pytest.approx(3.0, abs=0.05)
    again = await admit(limiter, RateLimit(rps=1), max_wait_s=2.5)
    assert again.wait_s == pytest.approx(3.0, abs=0.05)  # the refusal booked nothing


async def test_tokens_per_minute_spend_a_burst_then_pace_and_learn_the_real_usage(redis):
    limiter = Gate(redis, "t", margin=0.0)
    limit = RateLimit(tpm=6000)  # 100 tokens/s; a burst of a tenth of the minute: 600 tokens
    first = await admit(limiter, limit, tokens=600)
    second = await admit(limiter, limit, tokens=600)
    third = await admit(limiter, limit, tokens=600)
    assert first.wait_s == pytest.approx(0.0, abs=0.02) and second.wait_s == pytest.approx(0.0, abs=0.02)
    assert third.wait_s == pytest.approx(6.0, abs=0.1)  # 1,200 tokens booked, 600 of them ahead of now
    # the first two calls really used 100 tokens each: 1,000 tokens come back to the clock, so the
    # booked 1,800 become 800, 200 of them beyond the burst: the next call waits 2 s, not 12 s
    await limiter.settle("b", "other", limit=limit, estimated=600, actual=100)
    await limiter.settle("b", "other", limit=limit, estimated=600, actual=100)
    fourth = await admit(limiter, limit, tokens=600)
    assert fourth.wait_s == pytest.approx(2.0, abs=0.1)


async def test_max_concurrent_admits_only_that_many_until_a_lease_is_released(redis):
    limiter = Gate(redis, "t")
    limit = RateLimit(max_concurrent=2)
    a, b = await admit(limiter, limit), await admit(limiter, limit)
    assert a.admitted and b.admitted and a.lease and b.lease
    third = await admit(limiter, limit)
    assert not third.admitted and third.wait_s == pytest.approx(0.05)
    await limiter.settle("b", "other", lease=a.lease)
    assert (await admit(limiter, limit)).admitted


async def test_a_429_pauses_the_target_for_everyone_then_calls_resume_spaced(redis):
    limiter = Gate(redis, "t", margin=0.0)
    other_worker = Gate(redis, "t", margin=0.0)
    await limiter.settle("b", "429", cooldown_s=0.5)
    paused = await admit(other_worker, RateLimit(rps=10))
    assert not paused.admitted and 0.3 < paused.wait_s <= 0.5
    await asyncio.sleep(0.55)
    waits = [(await admit(other_worker, RateLimit(rps=10))).wait_s for _ in range(2)]
    assert waits[1] - waits[0] == pytest.approx(0.1, abs=0.02)


def test_token_estimates_count_text_images_by_detail_and_the_completion_budget():
    request = {
        "max_tokens": 300,
        "messages": [
            {"role": "system", "content": "x" * 400},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "y" * 40},
                    {"type": "image_url", "image_url": {"url": "data:,", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "data:,"}},
                ],
            },
        ],
    }
    assert estimate_tokens(request) == 110 + 85 + 765 + 300


async def test_a_healthy_target_leaves_no_circuit_state_and_one_failure_is_forgotten_on_success(redis):
    breaker = Gate(redis, "t", threshold=2, open_s=30)
    await breaker.settle("x", "sick")
    assert (await pass_gate(breaker, "x")).admitted
    await breaker.settle("x", "ok")
    assert await redis.exists("t:cb:{x}") == 0  # a success leaves nothing on record
    await breaker.settle("x", "sick")
    assert (await pass_gate(breaker, "x")).admitted  # one failure since the success: still closed
    assert await breaker.open_targets(["x", "y"]) == set()
    await breaker.settle("x", "sick")
    assert await breaker.open_targets(["x", "y"]) == {"x"}


async def test_scattered_failures_between_other_workers_successes_never_open_the_circuit(redis):
    """Workers interleave: each one's success resets the count, even when it was allowed before
    another worker's failure landed (a 3% error rate must not read as 5 consecutive failures)."""
    breaker = Gate(redis, "t", threshold=3, open_s=30)
    for _ in range(10):
        assert (await pass_gate(breaker, "x")).admitted  # worker A starts its call
        assert (await pass_gate(breaker, "x")).admitted  # worker B starts its call
        await breaker.settle("x", "sick")  # B fails
        await breaker.settle("x", "ok")  # A succeeds
    assert await breaker.open_targets(["x"]) == set()


async def test_an_open_circuit_lets_exactly_one_probe_through_and_its_success_closes_it(redis):
    gate = Gate(redis, "t", threshold=2, open_s=0.3)
    await gate.settle("x", "sick")
    assert await gate.settle("x", "sick") == "open"
    refused = await pass_gate(gate, "x")
    assert refused.circuit_open and 0 < refused.wait_s <= 0.3
    await asyncio.sleep(0.35)
    probe, other = await pass_gate(gate, "x"), await pass_gate(gate, "x")
    assert probe.admitted and other.circuit_open  # one probe at a time
    assert await gate.settle("x", "ok") == "closed"
    assert (await pass_gate(gate, "x")).admitted and await gate.open_targets(["x"]) == set()


async def test_a_probe_refused_by_the_rate_limit_does_not_use_up_the_half_open_slot(redis):
    gate = Gate(redis, "t", threshold=1, open_s=0.2, margin=0.0)
    limit = RateLimit(rps=1)
    assert (await admit(gate, limit)).admitted  # books the only slot of this second
    await gate.settle("b", "sick")  # and the call failed: open
    await asyncio.sleep(0.25)
    refused = await admit(gate, limit, max_wait_s=0.1)  # half-open, but the next slot is ~1 s away
    assert not refused.admitted and not refused.circuit_open
    assert (await admit(gate, limit)).admitted  # the probe slot was not taken by the refusal


async def test_an_unpriced_call_goes_without_an_estimate_unless_a_budget_applies(redis):
    gate = Gate(redis, "t-est", margin=0.0)
    spend = "t-est:batch:b1"
    await redis.delete(spend, *gate.keys.rate_limit("b"))
    ask = dict(max_wait_s=10.0, lease_ttl_s=30, spend_keys=[spend], spend_limits=[""])
    try:
        # no limit anywhere: a call goes unpriced (-1) and holds nothing
        free = await gate.admit("b", RateLimit(rps=10), estimate_micro=-1, **ask)
        assert free.admitted and free.reservation == ""
        assert await redis.hget(spend, "reserved") is None
        # a batch budget: the script asks for the price and books nothing (no rate slot taken)
        await redis.hset(spend, "max_cost", 1000)
        slot = await redis.hget(gate.keys.rate_limit("b")[0], "r")
        asked = await gate.admit("b", RateLimit(rps=10), estimate_micro=-1, **ask)
        assert asked.needs_estimate and not asked.admitted
        assert await redis.hget(gate.keys.rate_limit("b")[0], "r") == slot
        held = await gate.admit("b", RateLimit(rps=10), estimate_micro=400, **ask)
        assert held.admitted and held.reservation
        assert int(await redis.hget(spend, "reserved")) == 400
    finally:
        await redis.delete(spend, *gate.keys.rate_limit("b"), *gate._budget_keys())


async def test_a_retry_takes_the_nearest_sleeping_first_calls_slot_and_that_call_books_again(redis):
    gate = Gate(redis, "t-steal", margin=0.0)
    limit = RateLimit(rps=5)  # a slot every 200 ms
    try:
        now, second, third = [await admit(gate, limit) for _ in range(3)]
        assert now.wait_s == pytest.approx(0.0, abs=0.05)
        clock = float(await redis.hget(gate.keys.rate_limit("b")[0], "r"))
        sleeping = [asyncio.create_task(gate.wait_for_slot("b", a.wait_s)) for a in (second, third)]
        await asyncio.sleep(0.02)  # both sleep until their slots
        taken = gate.take_slot("b")
        assert taken is not None and 0.05 < taken < second.wait_s + 0.01  # the nearest: the second's
        retry = await gate.admit("b", limit, max_wait_s=10.0, lease_ttl_s=30, book_slot=False)
        assert retry.admitted and retry.wait_s == 0.0
        # the taken call is told to book again; the other keeps its slot; the retry booked none
        assert await asyncio.wait_for(sleeping[0], 5) == -1.0
        assert await asyncio.wait_for(sleeping[1], 5) == 0.0
        assert float(await redis.hget(gate.keys.rate_limit("b")[0], "r")) == clock
        assert gate.take_slot("b") is None  # nothing sleeps any more
    finally:
        await redis.delete(*gate._bucket_keys("b"))


async def test_a_retrys_own_sleep_is_never_taken(redis):
    gate = Gate(redis, "t-steal2", margin=0.0)
    sleeping = asyncio.create_task(gate.wait_for_slot("b", 0.3, first_call=False))
    await asyncio.sleep(0.02)
    assert gate.take_slot("b") is None
    assert await asyncio.wait_for(sleeping, 5) == 0.0


async def test_a_429_this_process_saw_holds_its_calls_sleeping_until_their_slots(redis):
    gate = Gate(redis, "t-pause", margin=0.0)
    try:
        sleeping = asyncio.create_task(gate.wait_for_slot("b", 0.1))
        await gate.settle("b", "429", cooldown_s=1.0)
        left = await asyncio.wait_for(sleeping, 5)
        assert 0.5 < left <= 1.0  # woke at its slot, inside the pause: it waits and books again
        assert await gate.wait_for_slot("other", 0.01) == 0.0  # another target is not paused
    finally:
        await redis.delete(*gate._settle_keys("b"))


async def test_an_admitted_call_is_counted_once_when_admitted_even_to_a_later_slot(redis):
    gate = Gate(redis, "t-count", margin=0.0)
    counter = "t-count:batch"
    try:
        for _ in range(3):
            await gate.admit("b", RateLimit(rps=2), max_wait_s=10.0, lease_ttl_s=30, count_in=counter)
        assert int(await redis.hget(counter, "provider_calls")) == 3
        # a call booking again (its slot taken, or paused) passes no counter: still three calls
        await gate.admit("b", RateLimit(rps=2), max_wait_s=10.0, lease_ttl_s=30)
        assert int(await redis.hget(counter, "provider_calls")) == 3
    finally:
        await redis.delete(counter, *gate._bucket_keys("b"))
