"""The API reads no body before it knows the key, and no more of a body than its limit: an anonymous or
careless client cannot make the API hold hundreds of megabytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from mmq.connections import embedded_redis
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.api import create_app
from producer.auth import hash_key
from producer.jsonl import aiter_jsonl_chunks, iter_jsonl

KEY = "mmq_unit_limits_key"
CHUNK = 64 * 1024
LIMIT = 256 * 1024


class Body:
    """A streamed request body that counts how much of it the server pulled."""

    def __init__(self, total: int, head: bytes = b"") -> None:
        self.total, self.head, self.pulled = total, head, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        while self.pulled < self.total:
            self.pulled += CHUNK
            yield b" " * CHUNK


@pytest.fixture
async def app_client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    redis = embedded_redis()
    settings = Settings(
        redis_url=None,
        storage_url=f"file://{tmp_path / 'store'}",
        api_keys={hash_key(KEY): "tenant-a"},
        max_body_bytes=LIMIT,
        max_upload_bytes=LIMIT,
        max_line_bytes=LIMIT,
    )
    app = create_app(settings, redis=redis, storage=open_storage(settings.storage_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mmq", timeout=60) as c:
            yield c
    await redis.aclose()


@pytest.mark.parametrize("path", ["/api/jobs", "/api/batches", "/v1/files", "/v1/batches", "/api/templates"])
async def test_an_anonymous_body_is_refused_before_it_is_read(app_client, path):
    body = Body(50 * 1024 * 1024, b'{"url": "/v1/chat/completions", "body": {"x": "')
    r = await app_client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 401
    assert body.pulled == 0  # not one chunk past the first read of the transport
    if path.startswith("/v1"):
        assert r.json()["error"]["code"] == "invalid_api_key"


async def test_a_json_body_over_the_limit_gets_413_naming_the_limit(app_client):
    auth = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    body = Body(50 * 1024 * 1024, b'{"url": "/v1/chat/completions", "body": {"x": "')
    r = await app_client.post("/api/jobs", content=body, headers=auth)
    assert r.status_code == 413 and "MMQ_MAX_BODY_BYTES" in r.json()["detail"]
    assert body.pulled <= LIMIT + CHUNK  # reading stopped at the limit
    declared = await app_client.post("/api/jobs", content=b"{" + b" " * (LIMIT + 10) + b"}", headers=auth)
    assert declared.status_code == 413


async def test_an_upload_over_its_limit_gets_413_in_the_openai_shape(app_client):
    r = await app_client.post(
        "/v1/files",
        data={"purpose": "batch"},
        files={"file": ("big.jsonl", b"x" * (LIMIT * 2), "application/jsonl")},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 413 and "MMQ_MAX_UPLOAD_BYTES" in r.json()["error"]["message"]


async def test_a_jsonl_line_over_the_limit_fails_alone(app_client):
    good = {
        "custom_id": "ok",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    huge = dict(good, custom_id="huge", body={**good["body"], "pad": "x" * (LIMIT * 3)})
    data = "\n".join(json.dumps(x) for x in (good, huge, dict(good, custom_id="ok2"))).encode()
    r = await app_client.post(
        "/api/batches",
        content=data,
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/jsonl"},
    )
    assert r.status_code == 201, r.text
    counts = r.json()["counts"]
    assert counts["failed"] == 1 and counts["queued"] == 2
    jobs = (
        await app_client.get(
            f"/api/batches/{r.json()['id']}/jobs", headers={"authorization": f"Bearer {KEY}"}
        )
    ).json()
    [failed] = [j for j in jobs["data"] if j["status"] == "failed"]
    assert "MMQ_MAX_LINE_BYTES" in failed["error"]["message"]


async def test_the_jsonl_readers_bound_every_line(tmp_path):
    lines = [b'{"a": 1}', b'{"pad": "' + b"x" * 5000 + b'"}', b'{"b": 2}']

    async def chunks() -> AsyncIterator[bytes]:
        data = b"\n".join(lines)
        for i in range(0, len(data), 700):  # lines split across chunks
            yield data[i : i + 700]

    got = [x async for x in aiter_jsonl_chunks(chunks(), max_line_bytes=1000)]
    assert [(x.line_no, x.error is not None and "longer than 1000" in x.error) for x in got] == [
        (1, False),
        (2, True),
        (3, False),
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    got = list(iter_jsonl(path, max_line_bytes=1000))
    assert [(x.line_no, x.error is not None and "longer than 1000" in x.error) for x in got] == [
        (1, False),
        (2, True),
        (3, False),
    ]
