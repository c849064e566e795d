"""The console in process: the API app on an in-memory Redis, two tenants, and a batch whose jobs are
ended by hand (results written as the worker writes them) so every kind of page and medium exists."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from mmq.connections import embedded_redis
from mmq.contract import Attempt, JobError, JobRecord, JobResult, JobStatus, ResultFile
from mmq.records import Records
from mmq.settings import Settings
from mmq.simulator import encode_speech_wav
from mmq.storage import Storage, open_storage, put_blob
from producer.api import create_app
from producer.auth import hash_key
from tests.conftest import chat_body, data_url, png_bytes

KEY_A, KEY_B = "mmq_console_key_a", "mmq_console_key_b"
NASTY = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
BASE = "http://mmq.test"


@dataclass
class Env:
    app: object
    records: Records
    storage: Storage
    transport: httpx.ASGITransport
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    async def client(self, key: str | None = None) -> httpx.AsyncClient:
        """A browser-like client (cookies kept), signed in with `key` when given."""
        c = httpx.AsyncClient(transport=self.transport, base_url=BASE, headers={"accept": "text/html"})
        self.clients.append(c)
        if key is not None:
            r = await sign_in(c, key)
            assert r.status_code == 303, r.text
        return c


async def sign_in(c: httpx.AsyncClient, key: str, next_: str = "") -> httpx.Response:
    page = await c.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token, page.text
    return await c.post("/console/login", data={"key": key, "login_token": token.group(1), "next": next_})


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@pytest.fixture
async def env(tmp_path) -> AsyncIterator[Env]:
    redis = embedded_redis()
    settings = Settings(
        redis_url=None,
        storage_url=f"file://{tmp_path / 'store'}",
        api_keys={hash_key(KEY_A): "tenant-a", hash_key(KEY_B): "tenant-b"},
    )
    storage = open_storage(settings.storage_url)
    app = create_app(settings, redis=redis, storage=storage)
    async with app.router.lifespan_context(app):
        e = Env(app, app.state.records, storage, httpx.ASGITransport(app))
        yield e
        for c in e.clients:
            await c.aclose()
    await redis.aclose()


def line(custom_id: str, url: str, body: dict) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


async def submit(env: Env, key: str, requests: list[dict], **options) -> dict:
    async with httpx.AsyncClient(
        transport=env.transport, base_url=BASE, headers={"authorization": f"Bearer {key}"}
    ) as api:
        r = await api.post("/api/batches", json={"requests": requests, **options})
        assert r.status_code == 201, r.text
        return r.json()


async def job_records(env: Env, batch_id: str) -> list[JobRecord]:
    return [
        j async for ids in env.records.iter_batch_job_ids(batch_id) for j in await env.records.get_jobs(ids)
    ]


async def end_job(
    env: Env,
    job: JobRecord,
    status: JobStatus = JobStatus.succeeded,
    *,
    body: dict | None = None,
    files: list[tuple[bytes, str]] = (),
    error: JobError | None = None,
    attempts: list[Attempt] | None = None,
    usage: dict | None = None,
    cached_from: str | None = None,
) -> None:
    """What a worker does to a job: claim it, store its result, finish it."""
    claim = await env.records.claim(job.id)
    assert claim.outcome == "ok", claim.outcome
    ran = claim.job
    assert ran is not None
    now = time.time()
    ran.attempts = (
        attempts if attempts is not None else [Attempt(target="openai", status=200, latency_ms=120.0)]
    )
    if body is not None:
        stored = [
            ResultFile(key=await put_blob(env.storage, data, ctype), content_type=ctype, bytes=len(data))
            for data, ctype in files
        ]
        key = await put_blob(env.storage, json.dumps(body).encode(), "application/json")
        ran.result = JobResult(body_key=key, files=stored)
    ran.error = error
    ran.usage = usage
    ran.cached = cached_from is not None
    ran.cached_from = cached_from
    ran.finished_at = now
    await env.records.finish(ran, [JobStatus.running], status, provider_calls=len(ran.attempts))


def chat_answer(text: str) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
CSV = "sku,caption\nsku-001,<b>red mug</b>\n"


def documents_body() -> dict:
    """A chat request with a PDF (stored at submit) and a CSV (kept inline) beside its text."""
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these."},
                    {
                        "type": "file",
                        "file": {"file_data": data_url(PDF, "application/pdf"), "filename": NASTY},
                    },
                    {
                        "type": "file",
                        "file": {"file_data": data_url(CSV.encode(), "text/csv"), "filename": "c.csv"},
                    },
                ],
            }
        ],
    }


@dataclass
class Seeded:
    batch_id: str
    jobs: dict[str, JobRecord]  # by custom_id


@pytest.fixture
async def seeded(env: Env) -> Seeded:
    """Tenant A's batch: chat jobs with images (one answered with markup, one failed, one queued), a
    generated image, speech, a transcription with segments, and an SVG result file."""
    wav = encode_speech_wav("hello there")
    requests = [
        line(NASTY, "/v1/chat/completions", chat_body(data_url(png_bytes((200, 30, 30), (120, 90))), NASTY)),
        line("chat-failed", "/v1/chat/completions", chat_body(data_url(png_bytes((30, 200, 30))))),
        line("chat-queued", "/v1/chat/completions", chat_body(data_url(png_bytes((30, 30, 200))))),
        line("gen-image", "/v1/images/generations", {"prompt": "a red mug", "model": "gpt-image-1"}),
        line("speech", "/v1/audio/speech", {"model": "tts-1", "input": "hello there", "voice": "alloy"}),
        line(
            "transcript",
            "/v1/audio/transcriptions",
            {"model": "whisper-1", "file": data_url(wav, "audio/wav"), "response_format": "verbose_json"},
        ),
        line(
            "svg-result",
            "/v1/audio/transcriptions",
            {"model": "whisper-1", "file": data_url(wav, "audio/wav")},
        ),
        line("documents", "/v1/chat/completions", documents_body()),
    ]
    batch = await submit(env, KEY_A, requests, metadata={"source": NASTY})
    jobs = {j.custom_id: j for j in await job_records(env, batch["id"])}
    await end_job(
        env,
        jobs[NASTY],
        body=chat_answer(f"A red square. {NASTY}"),
        attempts=[
            Attempt(target="openai", status=500, latency_ms=80.0, error=f"server error {NASTY}"),
            Attempt(target="openai", status=200, latency_ms=150.0),
        ],
        usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    )
    await end_job(
        env,
        jobs["chat-failed"],
        JobStatus.failed,
        error=JobError(type="provider_error", message=f"upstream said {NASTY}", provider_status=502),
        attempts=[Attempt(target="openai", status=502, latency_ms=90.0, error="bad gateway")],
    )
    png = png_bytes((250, 200, 0), (256, 256))
    await end_job(
        env,
        jobs["gen-image"],
        body={"created": 1, "data": [{"url": "mmq-file:0"}]},
        files=[(png, "image/png")],
    )
    await end_job(
        env,
        jobs["speech"],
        body={"object": "audio.speech", "url": "mmq-file:0", "content_type": "audio/wav"},
        files=[(wav, "audio/wav")],
    )
    await end_job(
        env,
        jobs["transcript"],
        body={
            "text": "hello there",
            "segments": [{"id": 0, "start": 0.0, "end": 1.25, "text": "hello there"}],
        },
    )
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(3)</script></svg>'
    await end_job(
        env,
        jobs["svg-result"],
        body={"text": "x", "url": "mmq-file:0"},
        files=[(svg, "image/svg+xml"), (b"<html><script>alert(4)</script></html>", "text/plain")],
    )
    jobs = {j.custom_id: j for j in await job_records(env, batch["id"])}
    return Seeded(batch["id"], jobs)
