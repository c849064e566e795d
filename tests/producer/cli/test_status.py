"""`mmq status` as a person reads it (producer/cli/status.py) and `mmq batches` (batches.py): local
times, "waiting until", counts, failures by error type; newest batch first."""

from __future__ import annotations

import time

from mmq.connections import embedded_redis
from mmq.contract import BatchCounts, BatchRecord, BatchStatus
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.cli.batches import recent_batches, table
from producer.cli.humanize import clock, moment
from producer.cli.status import batch_lines, failures_by_type
from producer.jsonl import parse_line
from producer.submit import Producer


def test_a_waiting_batch_says_until_when_in_local_time():
    now = time.time()
    opens = now + 5 * 3600
    batch = BatchRecord(
        id="batch_w", tenant="ops", sealed=True, not_before=opens, created_at=now - 60,
        counts=BatchCounts(total=40, queued=40), metadata={"source": "night.jsonl"},
    )  # fmt: skip
    text = "\n".join(batch_lines(batch, [], now))
    assert f"status    waiting until {clock(opens, now)}" in text
    assert moment(batch.created_at) in text and "1m00s ago" in text
    assert "40 in all: 0 ok, 0 failed, 0 cancelled, 40 queued, 0 running" in text
    assert "source    night.jsonl" in text
    assert "mmq status batch_w --watch" in text
    assert str(int(opens)) not in text  # no epoch floats


def test_an_ended_batch_shows_its_failures_by_error_type_and_what_next():
    now = time.time()
    batch = BatchRecord(
        id="batch_e", tenant="ops", sealed=True, status=BatchStatus.completed, created_at=now - 125,
        finished_at=now - 5, counts=BatchCounts(total=10, succeeded=7, failed=3, provider_calls=12),
    )  # fmt: skip
    failures = [("provider_error (invalid_api_key)", 2, "a: HTTP 401"), ("invalid_request", 1, "b: bad")]
    text = "\n".join(batch_lines(batch, failures, now))
    assert "status    completed" in text and "took 2m00s" in text
    assert "failures by error type:" in text
    assert "2  provider_error (invalid_api_key)  e.g. a: HTTP 401" in text
    assert "12 provider calls" in text
    assert "mmq retry-failed batch_e --watch" in text


def test_a_batch_on_the_batch_tier_lists_its_provider_batches():
    from mmq.packs import Pack
    from producer.views import provider_batches_view

    now = time.time()
    batch = BatchRecord(
        id="batch_t", tenant="ops", sealed=True, created_at=now - 60, tier="batch",
        counts=BatchCounts(total=9, provider_batch=6, succeeded=3),
    )  # fmt: skip
    base = dict(group="g", target="t", provider="openai", model="gpt-4o-mini", kind="chat", jobs=6)
    running = Pack(id="p2", state="running", created_at=now - 30, provider_batch_id="batch_abc",
                   fallback_due=now + 3600, tokens=900, **base)  # fmt: skip
    refused = Pack(id="p1", state="failed", created_at=now - 50, error="refused for the quota", **base)
    views = provider_batches_view([running, refused])
    assert [v["pack"] for v in views] == ["p1", "p2"]  # oldest first
    assert views[1]["fallback_at"] == now + 3600 and views[1]["tokens"] == 900
    text = "\n".join(batch_lines(batch, [], now, views))
    assert "6 in provider batches (tier batch)" in text
    assert f"openai batch_abc: running, 6 lines, made {clock(now - 30, now)}" in text
    assert f"falls back to realtime {clock(now + 3600, now)} if not ended" in text
    assert "openai (not created): failed" in text and "(refused for the quota)" in text


async def test_failures_are_grouped_by_type_with_an_example(tmp_path):
    redis = embedded_redis()
    settings = Settings(redis_url=None, storage_url=f"file://{tmp_path}")
    producer = Producer(redis, open_storage(settings.storage_url), settings)
    lines = [
        parse_line('{"custom_id": "a", "url": "/v1/nope", "body": {}}', 1),
        parse_line("{broken", 2),
        parse_line('{"custom_id": "c", "url": "/v1/nope", "body": {}}', 3),
    ]
    batch = await producer.submit_batch(lines, tenant="ops")
    found = await failures_by_type(Records(redis, settings.key_prefix), batch.id)
    assert sum(n for _, n, _ in found) == 3
    kind, n, example = found[0]
    assert kind.startswith("invalid") and n == 3
    assert example.startswith("a: ")


async def test_batches_lists_newest_first(tmp_path):
    redis = embedded_redis()
    settings = Settings(redis_url=None, storage_url=f"file://{tmp_path}")
    producer = Producer(redis, open_storage(settings.storage_url), settings)
    first = await producer.create_batch(tenant="ops", metadata={"source": "first.jsonl"})
    second = await producer.create_batch(tenant="ops", metadata={"source": "second.jsonl"})
    await producer.create_batch(tenant="else")
    found = await recent_batches(Records(redis, settings.key_prefix), ["ops"], limit=10)
    assert [b.id for b in found] == [second.id, first.id]
    rows = table(found, time.time(), with_tenant=False)
    assert rows[0].split() == ["BATCH", "CREATED", "STATE", "DONE", "FAILED", "SOURCE"]
    assert rows[1].startswith(second.id) and rows[1].endswith("second.jsonl")
    assert "submitting" in rows[1]  # never sealed: still being fed


def test_a_job_reads_as_its_attempts_and_error():
    from mmq.contract import Attempt, JobError, JobRecord, JobStatus
    from mmq.request_models import Kind
    from producer.cli.status import job_lines

    now = time.time()
    job = JobRecord(
        id="job_1", batch_id="batch_1", custom_id="photo-7", tenant="ops", kind=Kind.chat,
        status=JobStatus.failed, created_at=now - 30, started_at=now - 20, finished_at=now - 10,
        attempts=[Attempt(target="openai", status=401, latency_ms=80.4, error="HTTP 401", at=now - 15)],
        error=JobError(type="provider_error", code="invalid_api_key", message="Incorrect API key"),
    )  # fmt: skip
    text = "\n".join(job_lines(job, now))
    assert "status     failed" in text and "custom_id  photo-7" in text
    assert "attempt 1  openai: HTTP 401 in 80 ms" in text
    assert "error      provider_error (invalid_api_key): Incorrect API key" in text
    assert moment(job.created_at) in text
