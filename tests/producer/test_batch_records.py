"""A batch's lines through the producer's fast path on real Redis (its write pipeline is redis-py's only
over fakeredis): every kind of line becomes the record the JobRecord path would make, in file order,
with its arq job and nothing else queued; and the write pipeline reports Redis's errors."""

from __future__ import annotations

import json
import time

import pytest
from arq.constants import job_key_prefix
from redis.exceptions import ResponseError

from mmq.cache import CacheEntry, KeyScope
from mmq.connections import connect
from mmq.contract import CacheLevel, CacheOptions, JobResult, JobStatus, Priority
from mmq.records import Records
from mmq.request_models import BLOB_SCHEME, Kind, dump_request, parse_request
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.jsonl import iter_jsonl
from producer.submit import Producer
from producer.write_pipeline import write_pipeline
from tests.conftest import chat_body, data_url, png_bytes

TEXT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Write a tagline, é."}],
    "max_tokens": 9,
}


@pytest.fixture
async def producer(redis_url, tmp_path):
    redis = connect(redis_url)
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path / 'store'}", enqueue_chunk=4)
    yield Producer(redis, open_storage(settings.storage_url), settings)
    await redis.aclose()


def _write(tmp_path, lines: list) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _line(custom_id: str, body: dict, url: str = "/v1/chat/completions", **more) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body, **more}


async def test_every_kind_of_line_becomes_its_record(producer, tmp_path):
    png = png_bytes((1, 2, 3))
    hit_body = {"model": "m", "messages": [{"role": "user", "content": "cached already"}]}
    # a cache entry for one line's key, as a worker would have left it: that line is answered at submit
    probe = await producer.submit_job("/v1/chat/completions", hit_body, tenant="acme", cache=False)
    request = dump_request(parse_request(Kind.chat, hit_body))
    fingerprints = producer._fingerprints(CacheLevel.exact)
    key = await KeyScope(tenant="acme", config=None, metadata={}).key(
        Kind.chat, request, CacheOptions(), fingerprints
    )
    await producer.cache.put(key, CacheEntry(job_id=probe.id, result=JobResult(body_key="results/x.json")))

    lines = [
        _line("text", TEXT),
        "{not json",
        _line("image", chat_body(data_url(png))),
        _line("http", chat_body("https://example.com/a.png")),
        _line("own-cache", TEXT, cache={"level": "pixels", "refresh": True}),
        _line("no-cache", TEXT, cache=False),
        _line("big", {"model": "m", "messages": [{"role": "user", "content": "x" * 40_000}]}),
        _line("bad-body", {"model": "m", "messages": []}),
        _line("blob", chat_body(BLOB_SCHEME + "blobs/sha256/ab/cd.png")),
        _line("hit", hit_body),
        _line("image-gen", {"prompt": "a kettle"}, url="/v1/images/generations"),
        {"method": "POST", "url": "/v1/chat/completions", "body": TEXT},  # no custom_id
    ]
    deadline = time.time() + 3600
    batch = await producer.submit_batch(
        iter_jsonl(_write(tmp_path, lines)),
        tenant="acme",
        priority="high",
        deadline=deadline,
        metadata={"k": "v"},
    )
    counts = batch.counts
    assert (counts.total, batch.invalid_lines, counts.failed, counts.succeeded, counts.cached) == (
        12,
        3,
        3,
        1,
        1,
    )
    records = Records(producer.redis)
    [ids] = [ids async for ids in records.iter_batch_job_ids(batch.id)]
    jobs = await records.get_jobs(ids)
    by = {j.custom_id: j for j in jobs}
    assert [j.custom_id for j in jobs] == [
        "text",
        None,
        "image",
        "http",
        "own-cache",
        "no-cache",
        "big",
        "bad-body",
        "blob",
        "hit",
        "image-gen",
        None,
    ]
    for job in jobs:
        assert (job.batch_id, job.tenant, job.priority, job.deadline) == (
            batch.id,
            "acme",
            Priority.high,
            deadline,
        )
        assert job.id.startswith("job_") and len(job.id) == 28
        assert job.config is None and job.metadata == {}  # the batch's metadata routes only with a config

    text = by["text"]
    assert text.kind is Kind.chat and text.status is JobStatus.queued and text.request == TEXT
    assert text.cache is None and len(text.cache_key) == 64
    assert jobs[1].status is JobStatus.failed and jobs[1].error.message.startswith("line 2: not valid JSON")
    assert jobs[1].error.type == "invalid_request" and jobs[1].started_at is None
    image_url = by["image"].request["messages"][0]["content"][1]["image_url"]
    assert (
        image_url["url"].startswith(BLOB_SCHEME) and image_url["detail"] == "auto" and by["image"].cache_key
    )
    assert by["http"].cache_key is None and by["http"].status is JobStatus.queued  # the worker keys it
    assert by["own-cache"].cache.level is CacheLevel.pixels and by["own-cache"].cache.refresh
    assert by["no-cache"].cache.enabled is False and by["no-cache"].cache_key is None
    big = by["big"]
    assert big.request is None and big.request_key.endswith(f"/{batch.id}/{big.id}.json")
    assert json.loads(await producer.storage.get(big.request_key))["messages"][0]["content"] == "x" * 40_000
    assert (
        by["bad-body"].error.message
        == "line 8: messages: List should have at least 1 item after validation, not 0"
    )
    assert by["blob"].error.message.startswith("line 9: mmq-blob:// references are internal")
    hit = by["hit"]
    assert (
        hit.status is JobStatus.succeeded
        and hit.cached
        and hit.cached_from == probe.id
        and hit.cache_key == key
    )
    assert by["image-gen"].kind is Kind.image and by["image-gen"].request == {"prompt": "a kettle", "n": 1}

    # what a worker may start: every runnable line but the cache hit, each with its arq payload (beside
    # the probe job and the batch's expiry task)
    queued = {m.decode() for m in await producer.redis.zrange("mmq:queue", 0, -1)}
    queued -= {probe.id, f"expire:{batch.id}"}
    assert queued == {j.id for j in jobs if j.status is JobStatus.queued}
    assert all([await producer.redis.exists(job_key_prefix + i) for i in queued])
    lookups = {
        j.custom_id for j in jobs if await producer.redis.hget(records.job_key(j.id), "cache_lookup") == b"1"
    }
    assert lookups == {"text", "image", "big", "hit", "image-gen", None}  # as the record path marks them


async def test_the_write_pipeline_reads_every_reply_and_raises_redis_errors(producer):
    redis = producer.redis
    await redis.set("a-string", "x")
    pipe = write_pipeline(redis)
    pipe.hset("h1", mapping={"a": "1"})
    pipe.hset("a-string", "f", "v")  # WRONGTYPE
    pipe.rpush("l1", "x", "y")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await pipe.execute()
    assert await redis.hget("h1", "a") == b"1" and await redis.llen("l1") == 2  # the others ran
    pipe = write_pipeline(redis)
    pipe.hset("h2", "a", "2")
    pipe.zadd("z", {"m": 1.5})
    assert await pipe.execute() == [1, 1]
    assert await redis.ping()  # the connection stayed in step
