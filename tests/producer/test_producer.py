"""Producer behaviour on an in-memory Redis (fast); tests/e2e repeats the important parts on real Redis."""

from __future__ import annotations

import json

import pytest

from mmq.connections import embedded_redis
from mmq.contract import JobStatus
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.jsonl import iter_jsonl
from producer.options import LineError
from producer.submit import Producer
from tests.conftest import chat_body, data_url, png_bytes


@pytest.fixture
async def producer(tmp_path):
    redis = embedded_redis()
    settings = Settings(redis_url=None, storage_url=f"file://{tmp_path / 'store'}", enqueue_chunk=3)
    yield Producer(
        redis, open_storage(settings.storage_url), settings, allow_local_paths=True, base_dir=tmp_path
    )
    await redis.aclose()


async def test_inline_media_goes_to_storage_and_redis_keeps_a_reference(producer):
    image = png_bytes((200, 10, 10))
    job = await producer.submit_job("/v1/chat/completions", chat_body(data_url(image)), tenant="t")
    ref = job.request["messages"][0]["content"][1]["image_url"]["url"]
    assert ref.startswith("mmq-blob://blobs/sha256/")
    assert await producer.storage.get(ref.removeprefix("mmq-blob://")) == image
    record = await producer.redis.hgetall(f"mmq:job:{job.id}")
    assert record and not any(b"base64" in v for v in record.values())
    assert await producer.redis.zscore("mmq:queue", job.id) is not None
    assert await producer.redis.exists(f"arq:job:{job.id}")


async def test_jsonl_batch_streams_and_bad_lines_fail_alone(producer, tmp_path):
    wav = tmp_path / "clip.wav"
    from mmq.simulator import encode_speech_wav

    wav.write_bytes(encode_speech_wav("hello"))
    lines = [
        {
            "custom_id": "a",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": chat_body("https://x.test/a.png"),
        },
        "{not json",
        {
            "custom_id": "b",
            "method": "POST",
            "url": "/v1/audio/transcriptions",
            "body": {"model": "whisper-1", "file": "clip.wav"},
        },
        {"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", "body": {}},
        {
            "custom_id": "d",
            "method": "POST",
            "url": "/v1/audio/transcriptions",
            "body": {"model": "whisper-1", "file": "missing.wav"},
        },
        {"custom_id": "e", "method": "POST", "url": "/v1/images/generations", "body": {"prompt": ""}},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n")
    batch = await producer.submit_batch(iter_jsonl(path), tenant="t")
    assert batch.counts.total == 6 and batch.counts.queued == 2 and batch.counts.failed == 4
    assert batch.sealed and batch.invalid_lines == 4
    records = Records(producer.redis)
    jobs = [j async for ids in records.iter_batch_job_ids(batch.id) for j in await records.get_jobs(ids)]
    assert [j.custom_id for j in jobs] == ["a", None, "b", "c", "d", "e"]
    by = {j.custom_id: j for j in jobs}
    assert by[None].error.message.startswith("line 2: not valid JSON")
    assert "method must be POST" in by["c"].error.message
    assert "cannot read 'missing.wav'" in by["d"].error.message
    assert by["e"].error.message.startswith("line 6: prompt")
    assert by["b"].status is JobStatus.queued and by["b"].request["file"].startswith("mmq-blob://")
    assert by["b"].request["filename"] == "clip.wav"
    assert await producer.redis.zcard("mmq:queue") == 2


async def test_http_producers_cannot_read_local_files(producer):
    producer.intake.allow_local_paths = False
    with pytest.raises(LineError, match="data: URL"):
        await producer.submit_job(
            "/v1/audio/transcriptions", {"model": "whisper-1", "file": "/etc/passwd"}, tenant="t"
        )


async def test_large_requests_are_stored_out_of_redis(producer):
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 50_000}]}
    job = await producer.submit_job("/v1/chat/completions", body, tenant="t")
    assert job.request is None and job.request_key
    assert json.loads(await producer.storage.get(job.request_key))["messages"][0]["content"] == "x" * 50_000
