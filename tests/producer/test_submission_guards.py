"""What a submission refuses or survives, the same at every door (issue 13 items 4 and 7): a custom_id a
batch already used, a local `file` that is no regular file or too big, a newline-free line (split in
linear time), and lines that stop midway (the batch is sealed with what it got and says why)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from mmq.batch_options import BatchOptions
from mmq.connections import embedded_redis
from mmq.contract import JobStatus
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from mmq.submissions import SubmissionInterrupted, interrupt
from producer.api import create_app
from producer.auth import hash_key
from producer.jsonl import aiter_jsonl_chunks, iter_jsonl
from producer.quoting import quote_batch
from producer.submit import BatchLine, Producer

KEY = "mmq_unit_guards_key"
CHAT = "/v1/chat/completions"


def line(custom_id: str | None, prompt: str = "hi") -> dict:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def audio(custom_id: str, file: str) -> dict:
    body = {"model": "whisper-1", "file": file}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/audio/transcriptions", "body": body}


@pytest.fixture
async def producer(tmp_path) -> AsyncIterator[Producer]:
    redis = embedded_redis()
    settings = Settings(
        redis_url=None, storage_url=f"file://{tmp_path / 'store'}", enqueue_chunk=3, max_line_bytes=65536
    )
    yield Producer(
        redis, open_storage(settings.storage_url), settings, allow_local_paths=True, base_dir=tmp_path
    )
    await redis.aclose()


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    redis = embedded_redis()
    settings = Settings(
        redis_url=None, storage_url=f"file://{tmp_path / 'store'}", api_keys={hash_key(KEY): "tenant-a"}
    )
    app = create_app(settings, redis=redis, storage=open_storage(settings.storage_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        headers = {"authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://mmq", headers=headers) as c:
            yield c
    await redis.aclose()


async def jobs_of(records: Records, batch_id: str) -> list:
    return [j async for ids in records.iter_batch_job_ids(batch_id) for j in await records.get_jobs(ids)]


# ------------------------------------------------------------------------------------ duplicate custom_id
DUPLICATED = [line("a"), line("b"), line("a", "again"), line("c"), line("b", "once more")]


async def test_a_custom_id_used_twice_fails_its_later_line_naming_both(producer, tmp_path):
    """`mmq submit`'s path (a JSONL file): the later line fails alone as invalid_request, the rest runs."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in DUPLICATED))
    batch = await producer.submit_batch(iter_jsonl(path), tenant="t")
    assert (batch.counts.total, batch.counts.queued, batch.counts.failed) == (5, 3, 2)
    jobs = await jobs_of(producer.records, batch.id)
    failed = [(j.custom_id, j.error.type, j.error.message) for j in jobs if j.status is JobStatus.failed]
    assert failed == [
        ("a", "invalid_request", "line 3: custom_id 'a' is already used by line 1 (each line needs its own)"),
        ("b", "invalid_request", "line 5: custom_id 'b' is already used by line 2 (each line needs its own)"),
    ]


async def test_lines_without_numbers_are_named_by_their_position(producer):
    """The Python API's lines carry no line numbers: positions name them."""
    lines = [BatchLine.from_obj(x) for x in (line("x"), line(None), line("x", "2"))]
    batch = await producer.submit_batch(lines, tenant="t")
    [failed] = [j for j in await jobs_of(producer.records, batch.id) if j.status is JobStatus.failed]
    assert failed.error.message == "custom_id 'x' is already used by line 1 (each line needs its own)"


@pytest.mark.parametrize("as_jsonl", [False, True])
async def test_the_api_refuses_a_repeated_custom_id_per_line_in_json_and_jsonl_bodies(api, as_jsonl):
    if as_jsonl:
        content = "".join(json.dumps(x) + "\n" for x in DUPLICATED).encode()
        r = await api.post("/api/batches", content=content, headers={"content-type": "application/jsonl"})
    else:
        r = await api.post("/api/batches", json={"requests": DUPLICATED})
    assert r.status_code == 201, r.text
    assert (r.json()["counts"]["queued"], r.json()["counts"]["failed"]) == (3, 2)
    jobs = (await api.get(f"/api/batches/{r.json()['id']}/jobs")).json()["data"]
    messages = [j["error"]["message"] for j in jobs if j["status"] == "failed"]
    assert messages == [
        "line 3: custom_id 'a' is already used by line 1 (each line needs its own)",
        "line 5: custom_id 'b' is already used by line 2 (each line needs its own)",
    ]


async def test_v1_names_the_first_line_too_with_openais_code(api):
    data = "".join(json.dumps(x) + "\n" for x in DUPLICATED).encode()
    f = (await api.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", data)})).json()
    create = {"input_file_id": f["id"], "endpoint": CHAT, "completion_window": "24h"}
    r = await api.post("/v1/batches", json=create)
    for _ in range(200):
        batch = (await api.get(f"/v1/batches/{r.json()['id']}")).json()
        if batch["status"] != "validating":
            break
    errors = [(e["line"], e["code"], e["message"]) for e in batch["errors"]["data"]]
    assert errors == [
        (3, "duplicate_custom_id", "custom_id 'a' is already used by line 1 (each line needs its own)"),
        (5, "duplicate_custom_id", "custom_id 'b' is already used by line 2 (each line needs its own)"),
    ]


async def test_a_quote_refuses_the_repeated_line_as_the_submit_would():
    lines = [BatchLine.from_obj(x, n) for n, x in enumerate(DUPLICATED, start=1)]
    quote = await quote_batch(lines, BatchOptions(), Settings(redis_url=None))
    assert quote.invalid == 2
    assert [(r.line, r.custom_id) for r in quote.refused] == [(3, "a"), (5, "b")]


# ------------------------------------------------------------------------------------ local files
async def test_a_local_file_that_is_no_regular_file_or_too_big_fails_its_line_without_reading_it(
    producer, tmp_path
):
    """`file: /dev/zero` was read until memory ran out; a FIFO would block the submit for ever."""
    from mmq.simulator import encode_speech_wav

    (tmp_path / "ok.wav").write_bytes(encode_speech_wav("hi"))
    (tmp_path / "big.wav").write_bytes(b"RIFF" + b"\0" * 70_000)  # over the fixture's 64 KB line limit
    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "folder.wav").mkdir()
    lines = [
        audio("zero", "/dev/zero"),
        audio("pipe", "pipe.wav"),
        audio("folder", "folder.wav"),
        audio("big", "big.wav"),
        audio("ok", "ok.wav"),
    ]
    started = time.monotonic()
    numbered = [BatchLine.from_obj(x, n) for n, x in enumerate(lines, start=1)]
    batch = await producer.submit_batch(numbered, tenant="t")
    assert time.monotonic() - started < 5
    by = {j.custom_id: j for j in await jobs_of(producer.records, batch.id)}
    assert by["ok"].status is JobStatus.queued
    assert by["zero"].error.message == (
        "line 1: file: '/dev/zero' is not a regular file (a device, pipe or socket); name an audio file"
    )
    assert "'pipe.wav' is not a regular file (a device, pipe or socket)" in by["pipe"].error.message
    assert "'folder.wav' is not a regular file (a folder)" in by["folder"].error.message
    assert by["big"].error.message == (
        "line 4: file: 'big.wav' is larger than 65536 bytes, the most a line may carry (MMQ_MAX_LINE_BYTES)"
    )


def test_the_api_mode_cli_does_not_read_a_device_either(tmp_path, capsys, monkeypatch):
    from producer.cli import remote

    monkeypatch.setenv("MMQ_MAX_LINE_BYTES", "4096")
    from mmq.settings import get_settings

    get_settings.cache_clear()
    try:
        raw = json.dumps(audio("zero", "/dev/zero")).encode()
        assert remote._inline_audio(raw, 7, tmp_path) == raw  # sent as it is: the API fails that line
    finally:
        get_settings.cache_clear()
    assert "line 7: '/dev/zero' is not a regular file" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ line splitting
async def test_a_newline_free_line_is_split_in_linear_time():
    """A 48 MB line without a newline (the limit raised past it) in 64 KB chunks: the old splitter copied
    and searched its whole buffer at every chunk (20 MB: 3.9 s of CPU, 4x per doubling; 200 MB: 89 s);
    the current one costs ~0.2 s for 40 MB."""
    chunk = b"x" * 65536

    async def body() -> AsyncIterator[bytes]:
        for _ in range(48 * 16):
            yield chunk
        yield b'\n{"custom_id": "after"}\n'

    started = time.process_time()
    got = [x async for x in aiter_jsonl_chunks(body(), max_line_bytes=1 << 30)]
    assert time.process_time() - started < 3.0
    assert [x.line_no for x in got] == [1, 2] and got[0].error.startswith("not valid JSON")


# ------------------------------------------------------------------------------------ stopped submissions
def stops_after(n: int) -> Iterator[BatchLine]:
    for i in range(n):
        yield BatchLine.from_obj(line(f"r{i}", f"prompt {i}"), i + 1)
    raise OSError("the input went away")


async def test_lines_that_stop_midway_leave_a_sealed_batch_that_says_why(producer):
    """Was: the batch stayed unsealed, `in_progress` for ever. Now it is sealed at once with the lines
    sent (whole chunks: 6 of the 7 read, at 3 a chunk), marked submission_interrupted, and ends when
    they have run."""
    made = []
    with pytest.raises(OSError, match="went away"):
        await producer.submit_batch(stops_after(7), tenant="t", on_created=made.append)
    batch = await producer.records.get_batch(made[0].id)
    assert batch.sealed and batch.interrupted == "submission_interrupted" and batch.interrupted_at
    assert (batch.counts.total, batch.counts.queued) == (6, 6)
    assert await producer.redis.zscore(producer.records.keys.submitting(), batch.id) is None


async def test_a_batch_is_listed_as_being_submitted_until_its_seal(producer):
    batch = await producer.create_batch(tenant="t")
    key = producer.records.keys.submitting()
    mark = await producer.redis.zscore(key, batch.id)
    assert mark is not None and abs(mark / 1000 - batch.created_at) < 1
    await producer.add_lines(batch, [BatchLine.from_obj(line("a"), 1)])
    assert await producer.redis.zscore(key, batch.id) is not None
    await producer.records.seal_batch(batch.id)
    assert await producer.redis.zscore(key, batch.id) is None


async def test_a_live_submission_whose_batch_was_sealed_by_a_sweep_stops_at_its_next_mark(tmp_path):
    """A submission suspended past the stall (its batch sealed meanwhile) adds no more lines."""
    redis = embedded_redis()
    settings = Settings(redis_url=None, storage_url=f"file://{tmp_path}", submit_stall_s=0.2, enqueue_chunk=2)
    producer = Producer(redis, open_storage(settings.storage_url), settings)
    batch = await producer.create_batch(tenant="t")

    async def lines() -> AsyncIterator[BatchLine]:
        for i in range(1000):
            if i == 3:
                assert await interrupt(producer.records, settings.queue_name, batch.id) == "sealed"
                await asyncio.sleep(0.1)  # past the next mark (every 0.05 s at this stall)
            yield BatchLine.from_obj(line(f"r{i}", f"p{i}"), i + 1)

    with pytest.raises(SubmissionInterrupted, match="MMQ_SUBMIT_STALL_S"):
        await producer.add_lines(batch, lines())
    after = await producer.records.get_batch(batch.id)
    assert after.interrupted == "submission_interrupted" and after.counts.total <= 4
    await redis.aclose()
