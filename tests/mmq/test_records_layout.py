"""The job record layout on real Redis (mmq/records.py, mmq/keys.py): a batch job's hash holds only small
values, packed by Redis; its spec is in its batch's specs hash; every reader (get_jobs, the claim script)
puts the whole job back together, records written before this layout included. And arq's payloads as
enqueue_many writes them are serialize_job's."""

from __future__ import annotations

import json
import time

from arq.constants import job_key_prefix
from arq.jobs import deserialize_job_raw, serialize_job

from mmq import queue
from mmq.connections import connect
from mmq.contract import BatchRecord, CacheOptions, JobRecord, JobStatus, MediaPrep, Priority
from mmq.record_layout import (
    batch_row,
    batch_spec_json,
    new_batch_spec,
    queued_row,
    spec_json,
    spec_options_json,
)
from mmq.records import Records
from mmq.request_models import Kind

CONFIG = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai"}, {"provider": "anthropic"}]}
REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Write a tagline, é 😀."}]}


def a_job(**fields) -> JobRecord:
    base = {
        "id": "job_aaaabbbbccccddddeeeeffff",
        "batch_id": "batch_b1",
        "custom_id": "line-1",
        "tenant": "acme",
        "kind": Kind.chat,
        "request": REQUEST,
        "config": CONFIG,
        "cache_key": "ab" * 32,
    }
    return JobRecord(**(base | fields))


async def _batch(records: Records, redis, config=CONFIG) -> BatchRecord:
    batch = BatchRecord(id="batch_b1", tenant="acme", config=config)
    pipe = redis.pipeline(transaction=False)
    records.add_batch(pipe, batch)
    await pipe.execute()
    return batch


def test_a_new_batch_jobs_spec_from_its_parts_is_its_records_spec():
    for job in (
        a_job(),
        a_job(custom_id=None, request=None, request_key="requests/acme/batch_b1/job_a.json"),
        a_job(
            kind=Kind.image,
            request={"prompt": "a kettle", "n": 2},
            metadata={"tier": "gold"},
            media=MediaPrep(max_side=512),
            cache=CacheOptions(level="pixels", ttl_s=60),
            priority=Priority.high,
        ),
    ):
        stored = job.request_key is not None
        request = json.dumps(job.request_key if stored else job.request, ensure_ascii=False).encode()
        custom_id = json.dumps(job.custom_id, ensure_ascii=False).encode()
        spec = new_batch_spec(
            custom_id, job.kind, request, spec_options_json(job), job.created_at, stored=stored
        )
        assert json.loads(spec) == json.loads(batch_spec_json(job))
        assert not {"id", "tenant", "config"} & set(json.loads(spec))  # the batch's
        assert ("kind" in json.loads(spec)) == (job.kind is not Kind.chat)  # chat: the default, left out


async def test_a_batch_jobs_hash_is_small_and_packed_and_reads_back_whole(redis_url):
    redis = connect(redis_url)
    records = Records(redis)
    await _batch(records, redis)
    job = a_job(deadline=time.time() + 3600)
    spec = batch_spec_json(job).encode()
    pipe = redis.pipeline(transaction=False)
    records.add_rows(
        pipe,
        "batch_b1",
        [queued_row(job.id, "batch_b1", spec, cache_key=job.cache_key, deadline=job.deadline)],
    )
    await pipe.execute()

    fields = await redis.hgetall(records.job_key(job.id))
    assert set(fields) == {b"status", b"batch", b"cache_key", b"cache_lookup", b"deadline"}
    assert max(len(v) for v in fields.values()) <= 64  # Redis keeps such a hash in one packed allocation
    assert await redis.object("encoding", records.job_key(job.id)) == b"listpack"
    assert await redis.hget(records.batch_specs_key("batch_b1"), job.id) == spec
    assert await redis.lrange(records.batch_jobs_key("batch_b1"), 0, -1) == [job.id.encode()]

    [read] = await records.get_jobs([job.id], with_config=True)
    assert read == job
    [read] = await records.get_jobs([job.id])
    assert read == job.model_copy(update={"config": None})

    claim = await records.claim(job.id)  # the claim script adds the spec, id and tenant to the fields
    assert claim.outcome == "ok" and claim.cache == "lead"
    assert claim.job.model_dump(exclude={"status", "started_at"}) == job.model_dump(
        exclude={"status", "started_at"}
    )
    assert claim.job.status is JobStatus.running
    await redis.aclose()


async def test_an_expired_batch_job_is_claimed_whole(redis_url):
    redis = connect(redis_url)
    records = Records(redis)
    await _batch(records, redis)
    job = a_job(deadline=time.time() - 1)
    pipe = redis.pipeline(transaction=False)
    records.add_jobs(pipe, "batch_b1", [job])
    await pipe.execute()
    claim = await records.claim(job.id)
    assert claim.outcome == "expired"
    assert (claim.job.id, claim.job.tenant, claim.job.request) == (job.id, "acme", REQUEST)
    await redis.aclose()


async def test_records_of_every_kind_round_trip_through_rows(redis_url):
    """A line refused at submit, a cache hit and a running job's state take the record path (batch_row)."""
    redis = connect(redis_url)
    records = Records(redis)
    await _batch(records, redis, config=None)
    jobs = [
        a_job(
            id="job_1",
            config=None,
            status=JobStatus.failed,
            cache_key=None,
            error={"type": "invalid_request", "message": "line 1: bad"},
        ),
        a_job(
            id="job_2",
            config=None,
            status=JobStatus.succeeded,
            cached=True,
            cached_from="job_0",
            result={"body_key": "results/x.json"},
            started_at=1.5,
            finished_at=2.5,
        ),
        a_job(
            id="job_3", config=None, custom_id=None, request=None, request_key="requests/acme/b/job_3.json"
        ),
    ]
    pipe = redis.pipeline(transaction=False)
    records.add_jobs(pipe, "batch_b1", jobs)
    await pipe.execute()
    assert await records.get_jobs([j.id for j in jobs]) == jobs
    assert [r.fields.get("cache_lookup") for r in map(batch_row, jobs)] == [None, "1", "1"]
    batch = await records.get_batch("batch_b1")
    assert (batch.counts.total, batch.counts.failed, batch.counts.succeeded, batch.counts.cached) == (
        3,
        1,
        1,
        1,
    )
    await redis.aclose()


async def test_records_written_before_the_specs_hash_still_read_and_claim(redis_url):
    """A batch job whose spec (with its id and tenant) is in its own hash, as an earlier mmq wrote it."""
    redis = connect(redis_url)
    records = Records(redis)
    await _batch(records, redis)
    job = a_job(config=None)
    await redis.hset(
        records.job_key(job.id),
        mapping={
            "status": "queued",
            "batch": "batch_b1",
            "cache_key": job.cache_key,
            "spec": spec_json(job, with_config=False),
        },
    )
    [read] = await records.get_jobs([job.id])
    assert read == job
    claim = await records.claim(job.id)
    assert claim.outcome == "ok" and claim.job.request == REQUEST and claim.job.config == CONFIG
    await redis.aclose()


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def psetex(self, *args) -> None:
        self.calls.append(("psetex", *args))

    def zadd(self, *args) -> None:
        self.calls.append(("zadd", *args))


def test_enqueue_many_writes_serialize_jobs_payloads_then_one_zadd(monkeypatch):
    monkeypatch.setattr(queue.time, "time", lambda: 1_796_306_799.903)
    ids = ["job_aaaabbbbccccddddeeeeffff", 'job_"quoted"\\', "job_é😀"]
    pipe = _Recorder()
    queue.enqueue_many(pipe, ids, "mmq:queue", priority="high")
    now_ms = 1_796_306_799_903
    for job_id, call in zip(ids, pipe.calls, strict=False):
        assert call[:3] == ("psetex", job_key_prefix + job_id, queue.JOB_EXPIRES_MS)
        assert call[3] == serialize_job(
            queue.JOB_FUNCTION, (job_id,), {}, None, now_ms, serializer=queue.serialize
        )
        assert deserialize_job_raw(call[3], deserializer=queue.deserialize) == (
            queue.JOB_FUNCTION,
            [job_id],
            {},
            None,
            now_ms,
        )
    assert pipe.calls[-1] == ("zadd", "mmq:queue", dict.fromkeys(ids, queue.score_for("high", now_ms)))
