"""Every kind end to end: producer → real Redis → `mmq worker` process → simulator over HTTP → storage."""

from __future__ import annotations

import io
import json
import os
import wave

import pytest
from PIL import Image

from mmq.contract import JobStatus
from mmq.simulator import encode_speech_wav
from producer.submit import BatchLine, Producer
from producer.views import iter_output, result_body
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import wait_batch

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def line(custom_id: str, url: str, body: dict) -> BatchLine:
    return BatchLine(body=body, url=url, custom_id=custom_id)


async def test_every_kind_runs_end_to_end(settings, stores, worker_process, tmp_path):
    redis, records, storage = stores
    spoken = "Twelve blue mugs, ready to ship. Grüße!"
    corrupt_png = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50  # passes the sniff, fails decoding
    lines = [
        line("red", "/v1/chat/completions", chat_body(data_url(png_bytes((220, 20, 20), (300, 200))))),
        line(
            "blue",
            "/v1/chat/completions",
            chat_body(data_url(png_bytes((20, 40, 210), (120, 90), "JPEG"), "image/jpeg")),
        ),
        line(
            "gen",
            "/v1/images/generations",
            {"model": "gpt-image-1", "prompt": "a teapot", "n": 2, "size": "256x256"},
        ),
        line(
            "say",
            "/v1/audio/speech",
            {"model": "tts-1", "input": "Hello catalog", "voice": "alloy", "response_format": "wav"},
        ),
        line(
            "hear",
            "/v1/audio/transcriptions",
            {"model": "whisper-1", "file": data_url(encode_speech_wav(spoken), "audio/wav")},
        ),
        line(
            "translate",
            "/v1/audio/translations",
            {
                "model": "whisper-1",
                "file": data_url(encode_speech_wav("Hola"), "audio/wav"),
                "response_format": "text",
            },
        ),
        line("corrupt", "/v1/chat/completions", chat_body(data_url(corrupt_png))),
        line("not-image", "/v1/chat/completions", chat_body(data_url(b"just some text", "image/png"))),
        line("bad-kind", "/v1/embeddings", {"model": "x", "input": "y"}),
        BatchLine(body=None, line_no=10, error="not valid JSON (Expecting value)"),
        line(
            "no-audio",
            "/v1/audio/transcriptions",
            {"model": "whisper-1", "file": data_url(png_bytes((1, 2, 3)), "audio/wav")},
        ),
    ]
    producer = Producer(redis, storage, settings)
    batch = await producer.submit_batch(lines, tenant="acme")
    assert batch.counts.total == len(lines)

    batch = await wait_batch(records, batch.id)
    assert worker_process.poll() is None, "the worker must survive bad jobs"
    jobs = {
        j.custom_id: j
        for ids in [x async for x in records.iter_batch_job_ids(batch.id)]
        for j in await records.get_jobs(ids)
    }
    ok = {"red", "blue", "gen", "say", "hear", "translate"}
    assert {c for c, j in jobs.items() if j.status is JobStatus.succeeded} == ok
    assert batch.counts.succeeded == len(ok) and batch.counts.failed == len(lines) - len(ok)
    assert batch.counts.queued == batch.counts.running == 0

    async def body(cid: str) -> dict:
        return await result_body(jobs[cid], storage)  # the body as the API shows it

    # the caption is derived from the pixels the provider received
    red = (await body("red"))["choices"][0]["message"]["content"]
    assert "red" in red and "300x200" in red
    assert "blue" in (await body("blue"))["choices"][0]["message"]["content"]

    gen = jobs["gen"].result
    assert len(gen.files) == 2
    for f in gen.files:
        img = Image.open(io.BytesIO(await storage.get(f.key)))
        assert img.format == "PNG" and img.size == (256, 256)
    assert [d["url"] for d in (await body("gen"))["data"]] == [
        f"/api/jobs/{jobs['gen'].id}/files/{n}" for n in range(2)
    ]

    audio = await storage.get(jobs["say"].result.files[0].key)
    with wave.open(io.BytesIO(audio)) as w:
        assert w.getnframes() > 0
    assert (await body("hear"))["text"] == spoken
    assert "Hola" in (await body("translate"))["text"]

    errors = {c: jobs[c].error for c in jobs if jobs[c].status is JobStatus.failed}
    assert "could not be decoded" in errors["corrupt"].message
    assert "messages[0].content[1]" in errors["corrupt"].message
    assert "not one of the accepted types" in errors["not-image"].message
    assert "unsupported url" in errors["bad-kind"].message
    assert errors[None].message.startswith("line 10: not valid JSON")
    assert "file" in errors["no-audio"].message

    output = b"".join([c async for c in iter_output(records, storage, batch.id)]).decode().splitlines()
    assert len(output) == len(lines)
    first = json.loads(output[0])
    assert first["custom_id"] == "red" and first["response"]["status_code"] == 200


async def test_a_2mb_image_adds_under_4kb_to_redis(settings, stores):
    redis, _, storage = stores
    noise = Image.frombytes("RGB", (820, 820), os.urandom(820 * 820 * 3))
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    big = buf.getvalue()
    assert len(big) > 2_000_000

    async def used() -> int:
        total = 0
        async for key in redis.scan_iter(count=1000):
            total += await redis.memory_usage(key, samples=0) or 0
        return total

    before = await used()
    job = await Producer(redis, storage, settings).submit_job(
        "/v1/chat/completions", chat_body(data_url(big)), tenant="acme"
    )
    added = await used() - before
    print(f"redis bytes added by one job with a {len(big) / 1e6:.1f} MB image: {added}")
    assert added < 4096
    assert job.request["messages"][0]["content"][1]["image_url"]["url"].startswith("mmq-blob://blobs/sha256/")
