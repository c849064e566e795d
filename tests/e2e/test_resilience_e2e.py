"""Routing and resilience over real HTTP and real Redis: simulator processes on loopback play the
providers; the job function runs in this process (or in worker processes where sharing is the point)."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest
from arq import Retry

from mmq.connections import connect
from mmq.contract import JobStatus
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.submit import BatchLine, Producer
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import _spawn, _stop, wait_batch
from worker.pipeline import run_job

IMAGE = data_url(png_bytes((20, 40, 200)))


def sim_root(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def fault(base_url: str, **spec) -> None:
    httpx.post(sim_root(base_url) + "/sim/faults", json=spec).raise_for_status()


def clear_faults(base_url: str) -> None:
    httpx.delete(sim_root(base_url) + "/sim/faults").raise_for_status()


def arrivals(base_url: str) -> list[float]:
    return httpx.get(sim_root(base_url) + "/sim/faults").json()["arrivals"]


def chat_calls(base_url: str) -> int:
    return httpx.get(sim_root(base_url) + "/sim/stats").json()["by_path"].get("/v1/chat/completions", 0)


_jobs = itertools.count()


async def submit(producer: Producer, config: dict | None = None, metadata: dict | None = None) -> str:
    """A distinct job each time (identical ones would be answered by the cache)."""
    body = chat_body(IMAGE, f"Describe product {next(_jobs)}.")
    job = await producer.submit_job(
        "/v1/chat/completions", body, tenant="t", config=config, metadata=metadata
    )
    return job.id


def two_targets(a: str, b: str, strategy: dict) -> tuple[dict, dict[str, str]]:
    config = {
        "strategy": strategy,
        "targets": [
            {"provider": "openai", "virtual_key": "sim-a", "name": "a"},
            {"provider": "openai", "virtual_key": "sim-b", "name": "b"},
        ],
    }
    env = {
        "MMQ_VK_SIM_A": "sk-a-0001",
        "MMQ_VK_SIM_A_BASE_URL": a,
        "MMQ_VK_SIM_B": "sk-b-0002",
        "MMQ_VK_SIM_B_BASE_URL": b,
    }
    return config, env


async def test_a_503_falls_back_to_the_second_provider(runtime, make_simulator):
    a, b = make_simulator(), make_simulator()
    config, env = two_targets(a, b, {"mode": "fallback", "on_status_codes": [503]})
    rt, producer = runtime(a, env)
    fault(a, status=503, count=1)
    job_id = await submit(producer, config)
    await run_job({"mmq": rt}, job_id)
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.succeeded
    assert [(x.target, x.status) for x in job.attempts] == [("a", 503), ("b", 200)]
    assert (chat_calls(a), chat_calls(b)) == (1, 1)


async def test_no_fallback_on_a_400_when_codes_are_configured(runtime, make_simulator):
    a, b = make_simulator(), make_simulator()
    config, env = two_targets(a, b, {"mode": "fallback", "on_status_codes": [503, 429]})
    rt, producer = runtime(a, env)
    fault(a, status=400, count=1, code="invalid_value")
    job_id = await submit(producer, config)
    await run_job({"mmq": rt}, job_id)
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.failed
    assert job.error.provider_status == 400 and job.error.code == "invalid_value"
    assert chat_calls(b) == 0


async def test_a_retry_after_of_2s_is_honoured_by_every_job_of_the_target(runtime, make_simulator):
    a = make_simulator()
    # 5 requests a second: the jobs would leave 200 ms apart, but the first 429 pauses all of them
    rt, producer = runtime(a, rate_limit={"rps": 5})
    fault(a, status=429, count=1, retry_after_s=2)
    ids = [await submit(producer) for _ in range(4)]
    await asyncio.gather(*(run_job({"mmq": rt}, i) for i in ids))
    jobs = [await rt.records.get_job(i) for i in ids]
    assert all(j.status is JobStatus.succeeded for j in jobs)
    seen = arrivals(a)
    assert len(seen) == 5  # one 429, then each job once
    assert min(seen[1:]) - seen[0] >= 2.0
    assert sorted(len(j.attempts) for j in jobs) == [1, 1, 1, 2]


async def test_a_long_retry_after_defers_the_job_and_resumes_on_the_same_target(runtime, make_simulator):
    a, b = make_simulator(), make_simulator()
    config, env = two_targets(a, b, {"mode": "loadbalance"})
    rt, producer = runtime(a, env)
    job_id = await submit(producer, config)
    fault(a, status=429, count=1, retry_after_s=60)
    fault(b, status=429, count=1, retry_after_s=60)
    with pytest.raises(Retry) as deferred:
        await run_job({"mmq": rt}, job_id)
    assert deferred.value.defer_score >= 60_000  # ms: the worker slot is free for a minute
    job = await rt.records.get_job(job_id)
    picked = job.attempts[0].target
    assert job.status is JobStatus.queued and [x.status for x in job.attempts] == [429]
    assert job.resume == {"target": picked, "tries": 1}
    # the re-run (arq would start it in a minute) goes back to the same target, past its cooldown
    await rt.gate.redis.delete(*await rt.gate.redis.keys("mmq:rl:*"))
    await run_job({"mmq": rt}, job_id)
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.succeeded
    assert [(x.target, x.status) for x in job.attempts] == [(picked, 429), (picked, 200)]


async def test_a_circuit_opens_after_repeated_failures_and_closes_after_a_good_probe(runtime, make_simulator):
    a, b = make_simulator(), make_simulator()
    config, env = two_targets(a, b, {"mode": "fallback"})
    rt, producer = runtime(a, env, circuit_threshold=3, circuit_open_s=1.0)
    fault(a, status=503, count=None)  # a is down until cleared
    for _ in range(3):
        await run_job({"mmq": rt}, await submit(producer, config))
    assert chat_calls(a) == 3

    # open: a is skipped without a call, b answers
    job_id = await submit(producer, config)
    await run_job({"mmq": rt}, job_id)
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.succeeded
    assert [(x.target, x.skipped, x.status) for x in job.attempts] == [("a", True, None), ("b", False, 200)]
    assert chat_calls(a) == 3

    # a recovers; after the open period one probe goes to a, succeeds, and the circuit closes
    clear_faults(a)
    await asyncio.sleep(1.1)
    for _ in range(2):
        job_id = await submit(producer, config)
        await run_job({"mmq": rt}, job_id)
        job = await rt.records.get_job(job_id)
        assert [(x.target, x.status) for x in job.attempts] == [("a", 200)]
    assert chat_calls(a) == 5


async def test_a_job_whose_every_target_is_sick_waits_for_the_probe_instead_of_failing(
    runtime, make_simulator
):
    a = make_simulator()
    rt, producer = runtime(a, circuit_threshold=2, circuit_open_s=30.0, max_attempts=2)
    fault(a, status=500, count=None)
    first = await submit(producer)
    await run_job({"mmq": rt}, first)  # two 500s: fails, and the circuit opens
    assert (await rt.records.get_job(first)).status is JobStatus.failed
    second = await submit(producer)
    with pytest.raises(Retry) as deferred:
        await run_job({"mmq": rt}, second)
    assert deferred.value.defer_score >= 25_000
    job = await rt.records.get_job(second)
    assert job.status is JobStatus.queued and [x.skipped for x in job.attempts] == [True]
    assert chat_calls(a) == 2


async def test_two_worker_processes_share_one_rate_limit(redis_url, make_simulator, tmp_path, storage_url):
    """10 requests per second per key at the simulator; the limit in mmq's config; two workers."""
    a = make_simulator("--rpw", "10", "--window-s", "1", "--latency-ms", "30")
    env = {
        "MMQ_REDIS_URL": redis_url,
        "MMQ_STORAGE_URL": storage_url,
        "MMQ_OPENAI_BASE_URL": a,
        "MMQ_OPENAI_API_KEY": "sk-shared",
        "MMQ_RATE_LIMIT": '{"rps": 10}',
        "MMQ_POLL_DELAY_S": "0.05",
    }
    settings = Settings(redis_url=redis_url, storage_url=env["MMQ_STORAGE_URL"])
    redis = connect(redis_url)
    try:
        producer = Producer(redis, open_storage(settings.storage_url), settings)
        lines = [
            BatchLine(body=chat_body(IMAGE, f"Product {i}"), url="/v1/chat/completions", custom_id=f"j{i}")
            for i in range(40)
        ]
        batch = await producer.submit_batch(lines, tenant="t")
        workers = [_spawn(["worker"], env, tmp_path / f"worker{i}.log") for i in range(2)]
        started = time.monotonic()
        try:
            done = await wait_batch(Records(redis), batch.id, timeout=60)
        finally:
            for w in workers:
                _stop(w)
        wall = time.monotonic() - started
        stats = httpx.get(sim_root(a) + "/sim/stats").json()  # noqa: ASYNC210
        assert done.counts.succeeded == 40
        # shared, the limit holds: unshared, two workers would send ~20/s and draw ~20 429s. A loaded
        # machine can delay one call past its slot and let the next follow it closely (the sliding window
        # then counts 11), so a stray 429 or two is jitter, not a broken limit
        assert stats["rate_limited"] <= 2
        assert wall >= 3.5  # 40 calls at 10/s cannot finish sooner, whichever worker sends them
    finally:
        await redis.aclose()


async def test_conditional_routing_on_nested_metadata_and_params_with_or_beside_sibling_keys(
    runtime, make_simulator
):
    a, b = make_simulator(), make_simulator()
    _, env = two_targets(a, b, {"mode": "fallback"})
    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [
                {
                    # both keys must hold: the $or AND the sibling nested-path test
                    "query": {
                        "$or": [{"metadata.customer.tier": "gold"}, {"params.max_tokens": {"$gte": 500}}],
                        "metadata.customer.region": {"$in": ["eu", "uk"]},
                    },
                    "then": "a",
                }
            ],
            "default": "b",
        },
        "targets": [
            {"provider": "openai", "virtual_key": "sim-a", "name": "a"},
            {"provider": "openai", "virtual_key": "sim-b", "name": "b"},
        ],
    }
    rt, producer = runtime(a, env)
    cases = [
        ({"customer": {"tier": "gold", "region": "eu"}}, None, "a"),
        ({"customer": {"tier": "free", "region": "uk"}}, 800, "a"),
        ({"customer": {"tier": "gold", "region": "us"}}, None, "b"),  # $or holds, sibling does not
        ({"customer": {"tier": "free", "region": "eu"}}, 100, "b"),
    ]
    for metadata, max_tokens, expected in cases:
        body = chat_body(IMAGE)
        if max_tokens:
            body["max_tokens"] = max_tokens
        job = await producer.submit_job(
            "/v1/chat/completions", body, tenant="t", config=config, metadata=metadata
        )
        await run_job({"mmq": rt}, job.id)
        rec = await rt.records.get_job(job.id)
        assert [(x.target, x.status) for x in rec.attempts] == [(expected, 200)], metadata
    assert (chat_calls(a), chat_calls(b)) == (2, 2)


async def test_loadbalance_picks_among_healthy_targets_while_a_circuit_is_open(runtime, make_simulator):
    a, b = make_simulator(), make_simulator()
    config, env = two_targets(a, b, {"mode": "loadbalance"})
    rt, producer = runtime(a, env, circuit_threshold=1, circuit_open_s=30.0)
    await rt.gate.settle("openai:sim-a:gpt-4o-mini", "sick")  # a's circuit is open
    for _ in range(6):
        job_id = await submit(producer, config)
        await run_job({"mmq": rt}, job_id)
        job = await rt.records.get_job(job_id)
        # picked b outright: no skipped attempt at a, no wait for a's probe
        assert [(x.target, x.skipped, x.status) for x in job.attempts] == [("b", False, 200)]
    assert (chat_calls(a), chat_calls(b)) == (0, 6)


async def test_a_deferred_job_runs_again_after_its_delay_through_the_worker(runtime, make_simulator):
    """Through mmq's own arq worker: the deferral's delay counts from now. A started job's queue score
    sits at its lease's end (out of the polls' way), so adding the delay to it, as arq does, parked a
    deferred job for ten minutes."""
    from worker.worker import build_worker

    a = make_simulator()
    rt, producer = runtime(a, retry_sleep_max_s=0.5, poll_delay_s=0.05)
    job_id = await submit(producer)
    fault(a, status=429, count=1, retry_after_s=2)
    worker = build_worker(rt.settings, burst=True, handle_signals=False)
    started = time.monotonic()
    try:
        await asyncio.wait_for(worker.main(), timeout=120)
    finally:
        await worker.close()
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.succeeded
    assert [x.status for x in job.attempts] == [429, 200]
    seen = arrivals(a)
    assert seen[1] - seen[0] >= 2.0  # it waited for the Retry-After
    assert time.monotonic() - started < 60  # and not for the lease (in_progress_s: over 600 s)
