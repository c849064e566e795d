"""Scheduling windows, deadlines, priorities and webhooks, with real worker processes and real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mmq.connections import connect
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.options import LineError
from producer.submit import BatchLine, Producer
from producer.views import iter_output
from tests.e2e.conftest import _spawn, _stop, run_mmq, wait_batch


def lines(n: int, tag: str) -> list[BatchLine]:
    return [
        BatchLine(
            body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{tag} item {i}"}]},
            url="/v1/chat/completions",
            custom_id=f"{tag}-{i}",
        )
        for i in range(n)
    ]


@pytest.fixture
async def slow_mmq(redis_url: str, storage_url: str, make_simulator, tmp_path: Path):
    """A worker running ONE job at a time against a provider answering in 150 ms, and a producer."""
    env = {
        "MMQ_REDIS_URL": redis_url,
        "MMQ_STORAGE_URL": storage_url,
        "MMQ_OPENAI_BASE_URL": make_simulator("--latency-ms", "150"),
        "MMQ_OPENAI_API_KEY": "sk-test",
        "MMQ_POLL_DELAY_S": "0.05",
        "MMQ_MAX_JOBS": "1",
        "MMQ_WEBHOOK_SECRET": "whsec-test",
        "MMQ_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",  # the test's receiver is on loopback
    }
    settings = Settings(redis_url=redis_url, storage_url=storage_url, webhook_allow_hosts=["127.0.0.1"])
    redis = connect(redis_url)
    worker = _spawn(["worker"], env, tmp_path / "worker.log")
    try:
        yield Producer(redis, open_storage(storage_url), settings), Records(redis, settings.key_prefix), env
    finally:
        _stop(worker)
        await redis.aclose()


async def jobs_of(records: Records, batch_id: str) -> list:
    ids = [i async for chunk in records.iter_batch_job_ids(batch_id) for i in chunk]
    return await records.get_jobs(ids)


async def test_a_scheduled_batch_does_not_start_before_its_window(stores, settings, worker_process):
    redis, records, storage = stores
    producer = Producer(redis, storage, settings)
    opens = time.time() + 2.0
    batch = await producer.submit_batch(lines(5, "night"), tenant="t", not_before=opens)
    await asyncio.sleep(1.5)
    early = await records.get_batch(batch.id)
    assert early.counts.queued == 5 and early.counts.running == 0 and early.status.value == "in_progress"
    done = await wait_batch(records, batch.id, timeout=20)
    assert done.status.value == "completed" and done.counts.succeeded == 5
    assert min(j.started_at for j in await jobs_of(records, batch.id)) >= opens


async def test_what_has_not_run_by_the_deadline_expires_with_batch_expired(slow_mmq):
    producer, records, _ = slow_mmq
    warm = await producer.submit_batch(lines(1, "warm"), tenant="t")  # the worker is up and taking jobs
    await wait_batch(records, warm.id, timeout=60)
    batch = await producer.submit_batch(lines(60, "late"), tenant="t", deadline=time.time() + 2.0)
    done = await wait_batch(records, batch.id, timeout=60)
    assert done.status.value == "expired"
    jobs = await jobs_of(records, batch.id)
    expired = [j for j in jobs if j.error and j.error.code == "batch_expired"]
    ran = [j for j in jobs if j.status.value == "succeeded"]
    # one job at a time at 150 ms each: some ran (fewer on a busy machine), the rest expired
    assert ran and expired and len(ran) + len(expired) == 60
    # expired jobs never started (no provider was paid for them) and were not expired early; no wall-clock
    # bound on how soon after the deadline the expiry ran (a loaded machine delays it)
    assert all(j.started_at is None and j.finished_at >= batch.deadline for j in expired)
    out = [
        json.loads(line)
        async for chunk in iter_output(records, producer.storage, batch.id)
        for line in chunk.splitlines()
    ]
    assert sum(1 for line in out if (line["error"] or {}).get("code") == "batch_expired") == len(expired)


async def test_high_priority_jobs_overtake_queued_low_ones(slow_mmq):
    producer, records, _ = slow_mmq
    low = await producer.submit_batch(lines(12, "low"), tenant="t", priority="low")
    await asyncio.sleep(0.4)  # the worker is busy with the first low jobs
    high = await producer.submit_batch(lines(3, "high"), tenant="t", priority="high")
    await wait_batch(records, high.id, timeout=20)
    await wait_batch(records, low.id, timeout=20)
    last_high = max(j.finished_at for j in await jobs_of(records, high.id))
    low_after = [j for j in await jobs_of(records, low.id) if j.started_at > last_high]
    assert len(low_after) >= 6  # most low jobs waited for every high one, though they were queued first


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict, bytes]]]]:
    """A webhook receiver on loopback that fails its first delivery (500), then accepts."""
    got: list[tuple[dict, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append((dict(self.headers), body))
            self.send_response(500 if len(got) == 1 else 204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/mmq", got
    server.shutdown()


async def test_a_signed_webhook_is_posted_when_the_batch_ends_and_retried(slow_mmq, receiver):
    producer, records, env = slow_mmq
    url, got = receiver
    batch = await producer.submit_batch(lines(2, "hook"), tenant="t", webhook_url=url)
    await wait_batch(records, batch.id, timeout=20)
    for _ in range(150):  # the retry comes ~2 s after the 500
        if len(got) >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(got) == 2  # a 500, then delivered on the retry
    headers, body = got[-1]
    event = json.loads(body)
    assert event["type"] == "batch.completed" and event["data"]["id"] == batch.id
    assert event["data"]["counts"]["succeeded"] == 2
    parts = dict(p.split("=", 1) for p in headers["mmq-signature"].split(","))
    stamp, mac = parts["t"], parts["v1"]
    expected = hmac.new(env["MMQ_WEBHOOK_SECRET"].encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(mac, expected.hexdigest())
    # the Standard Webhooks headers verify with the specification's own library, as a receiver would
    from standardwebhooks import Webhook

    verified = Webhook(env["MMQ_WEBHOOK_SECRET"].encode()).verify(body.decode(), headers)
    assert verified["data"]["id"] == batch.id
    assert headers["webhook-id"] == f"{batch.id}.completed" == got[0][0]["webhook-id"]  # the same on a retry
    assert b"whsec-test" not in body and "sk-test" not in json.dumps(event)


async def test_bad_schedules_are_refused_before_anything_is_stored(stores, settings):
    redis, records, storage = stores
    producer = Producer(redis, storage, settings)
    for kwargs, message in [
        ({"deadline": time.time() - 1}, "past"),
        ({"not_before": time.time() + 60, "deadline": time.time() + 30}, "after not_before"),
        ({"priority": "urgent"}, "priority"),
        ({"webhook_url": "ftp://x"}, "webhook_url"),
        # webhooks go to public addresses only, unless the operator lists an internal receiver
        ({"webhook_url": "http://127.0.0.1:6379/"}, "webhook_url: host 127.0.0.1 is 127.0.0.1: .*loopback"),
        ({"webhook_url": "http://localhost:8000/hook"}, "MMQ_WEBHOOK_ALLOW_HOSTS"),
        ({"webhook_url": "http://[::1]/hook"}, "loopback"),
        ({"webhook_url": "http://169.254.169.254/latest"}, "link-local"),
        ({"webhook_url": "http://0x7f000001/hook"}, "loopback"),
    ]:
        with pytest.raises(LineError, match=message):
            await producer.submit_batch(lines(1, "x"), tenant="t", **kwargs)
    assert await records.list_batches("t") == []


async def test_cancel_from_the_cli_keeps_finished_results_and_cancels_the_queue(slow_mmq):
    producer, records, env = slow_mmq
    batch = await producer.submit_batch(lines(60, "cancel"), tenant="t")
    deadline = time.monotonic() + 60
    while (await records.get_batch(batch.id)).counts.succeeded < 1:  # the worker is taking them
        assert time.monotonic() < deadline, "the worker ran nothing"
        await asyncio.sleep(0.05)
    done = await asyncio.to_thread(run_mmq, "cancel", batch.id, env=env)
    assert done.returncode == 0, done.stderr
    final = await wait_batch(records, batch.id, timeout=60)
    assert final.status.value == "cancelled"
    c = final.counts
    # one job at a time, 150 ms each: 60 take 9 s, far longer than the CLI takes to start, even on a
    # loaded machine; whatever ran finished, the rest was cancelled
    assert c.succeeded >= 1 and c.cancelled >= 1 and c.succeeded + c.cancelled == 60
    out = [
        json.loads(x)
        async for chunk in iter_output(records, producer.storage, batch.id)
        for x in chunk.splitlines()
    ]
    assert sum(1 for x in out if x["response"] and x["response"]["status_code"] == 200) == c.succeeded
    assert sum(1 for x in out if (x["error"] or {}).get("code") == "batch_cancelled") == c.cancelled


async def test_retry_failed_runs_the_failed_jobs_again_and_reopens_the_batch(slow_mmq):
    producer, records, env = slow_mmq
    sim = env["MMQ_OPENAI_BASE_URL"].removesuffix("/v1")
    async with httpx.AsyncClient() as client:
        fault = {"status": 400, "count": 3, "message": "scripted"}
        (await client.post(sim + "/sim/faults", json=fault)).raise_for_status()
    batch = await producer.submit_batch(lines(6, "retry"), tenant="t")
    first = await wait_batch(records, batch.id, timeout=20)
    assert (first.counts.succeeded, first.counts.failed, first.status.value) == (3, 3, "completed")
    done = await asyncio.to_thread(run_mmq, "retry-failed", batch.id, "--watch", env=env)
    assert done.returncode == 0 and "3 failed jobs" in done.stderr, done.stderr
    again = await records.get_batch(batch.id)
    assert (again.counts.succeeded, again.counts.failed, again.status.value) == (6, 0, "completed")
    assert again.counts.provider_calls == 9  # 6 first, then the 3 that had failed
