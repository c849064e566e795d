"""The /v1 Files + Batches API in process (in-memory Redis, no worker): shapes, checks, cancel, failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from mmq.connections import embedded_redis
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.api import create_app
from producer.auth import hash_key
from producer.openai_api import batches
from producer.openai_api.file_store import PART_BYTES, FileStore

KEY, OTHER = "mmq_unit_key_a", "mmq_unit_key_b"
CHAT = "/v1/chat/completions"


def line(custom_id: str | None, url: str = CHAT, **extra) -> dict:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body, **extra}


def jsonl(*lines: dict | str) -> bytes:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode() + b"\n"


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    redis = embedded_redis()
    settings = Settings(
        redis_url=None,
        storage_url=f"file://{tmp_path / 'store'}",
        api_keys={hash_key(KEY): "tenant-a", hash_key(OTHER): "tenant-b"},
    )
    app = create_app(settings, redis=redis, storage=open_storage(settings.storage_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        headers = {"authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://mmq", headers=headers) as c:
            yield c
    await redis.aclose()


async def upload(c: httpx.AsyncClient, data: bytes, **fields: str) -> dict:
    r = await c.post(
        "/v1/files",
        data={"purpose": "batch", **fields},
        files={"file": ("in.jsonl", data, "application/jsonl")},
    )
    assert r.status_code == 200, r.text
    return r.json()


async def create(c: httpx.AsyncClient, file_id: str, **extra) -> httpx.Response:
    body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h", **extra}
    return await c.post("/v1/batches", json=body)


async def settled(c: httpx.AsyncClient, batch_id: str, leave: tuple[str, ...] = ("validating",)) -> dict:
    for _ in range(200):
        batch = (await c.get(f"/v1/batches/{batch_id}")).json()
        if batch["status"] not in leave:
            return batch
        await asyncio.sleep(0.02)
    raise TimeoutError(batch)


def is_openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


async def test_errors_are_openai_shaped_on_v1_and_unchanged_elsewhere(client):
    assert is_openai_error(await client.get("/v1/batches", headers={"authorization": ""}), 401)["code"] == (
        "invalid_api_key"
    )
    assert is_openai_error(await client.get("/v1/batches", params={"limit": 0}), 400)["param"] == "limit"
    assert is_openai_error(await client.post("/v1/batches", json={}), 400)["param"] == "input_file_id"
    assert is_openai_error(await client.post("/v1/batches", content=b"{no"), 400)["type"] == (
        "invalid_request_error"
    )
    is_openai_error(await client.get("/v1/no-such-thing"), 404)
    is_openai_error(await client.delete("/v1/batches"), 405)
    # the mmq API keeps FastAPI's own shapes
    assert (await client.get("/api/batches", headers={"authorization": ""})).json() == {
        "detail": "missing or unknown API key (send Authorization: Bearer <key>)"
    }
    assert "detail" in (await client.post("/api/jobs", json={})).json()


async def test_upload_streams_to_storage_in_parts_and_counts_lines(client):
    row = json.dumps(line("x")) + "\n"
    data = "".join(row.replace('"x"', f'"r{n}"') for n in range(100_000)).encode()
    meta = await upload(
        client, data, **{"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"}
    )
    assert meta["bytes"] == len(data) and meta["expires_at"] == meta["created_at"] + 3600
    assert (await client.get(f"/v1/files/{meta['id']}/content")).content == data
    stored = await client._transport.app.state.oai.files.get(meta["id"], "tenant-a")  # type: ignore[attr-defined]
    assert stored.lines == 100_000 and stored.parts == -(-len(data) // PART_BYTES) > 1

    bad = await client.post("/v1/files", data={"purpose": "assistants"}, files={"file": ("a", b"x")})
    assert is_openai_error(bad, 400)["param"] == "purpose"
    no_file = await client.post("/v1/files", data={"purpose": "batch"})
    assert is_openai_error(no_file, 400)["param"] == "file"
    expiry = await client.post(
        "/v1/files",
        data={"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "5"},
        files={"file": ("a", b"x")},
    )
    assert is_openai_error(expiry, 400)["param"] == "expires_after[seconds]"


async def test_line_counting_across_chunk_borders(tmp_path):
    store = FileStore(embedded_redis(), open_storage(f"file://{tmp_path}"))
    data = b'\n  \n{"a": 1}\n{"b":\n 2}\n\n{"c": 3}'  # 4 non-blank lines, the last one unterminated

    async def tiny_chunks() -> AsyncIterator[bytes]:
        for n in range(0, len(data), 3):
            yield data[n : n + 3]

    meta = await store.create(tenant="t", filename="f", purpose="batch", chunks=tiny_chunks())
    assert (meta.lines, meta.bytes) == (4, len(data))
    assert b"".join([c async for c in store.stream(meta)]) == data


async def test_bad_lines_are_listed_and_cancel_without_a_worker(client):
    data = jsonl(
        line("ok-1"),
        line("ok-2"),
        line("ok-1"),  # duplicate custom_id
        line(None),
        line("speech", url="/v1/audio/speech"),
        "{broken",
        line("bad-body", body={"model": "m"}),
    )
    f = await upload(client, data)
    r = await create(
        client, f["id"], metadata={"k": "v"}, output_expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert r.status_code == 200 and r.json()["status"] == "validating"
    batch = await settled(client, r.json()["id"])
    assert batch["status"] == "in_progress" and batch["metadata"] == {"k": "v"}
    errors = {e["line"]: (e["code"], e["param"]) for e in batch["errors"]["data"]}
    assert errors == {
        3: ("duplicate_custom_id", "custom_id"),
        4: ("invalid_request", "custom_id"),
        5: ("invalid_url", "url"),
        6: ("invalid_json_line", None),
        7: ("invalid_request", "body.messages"),
    }
    assert batch["request_counts"] == {"total": 7, "completed": 0, "failed": 5}

    other = httpx.Headers({"authorization": f"Bearer {OTHER}"})
    is_openai_error(await client.post(f"/v1/batches/{batch['id']}/cancel", headers=other), 404)
    cancelling = await client.post(
        f"/v1/batches/{batch['id']}/cancel", headers={"content-type": "application/json"}
    )
    assert cancelling.status_code == 200 and cancelling.json()["status"] in ("cancelling", "cancelled")
    batch = await settled(client, batch["id"], leave=("cancelling",))
    assert batch["status"] == "cancelled" and batch["request_counts"] == {
        "total": 7,
        "completed": 0,
        "failed": 7,
    }
    assert batch["output_file_id"] is None and batch["error_file_id"] == f"file-err-{batch['id']}"
    content = (await client.get(f"/v1/files/{batch['error_file_id']}/content")).text
    lines = [json.loads(x) for x in content.splitlines()]
    assert [x["error"]["code"] for x in lines[:2]] == ["batch_cancelled"] * 2 and len(lines) == 7
    again = await client.post(f"/v1/batches/{batch['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    # the mmq view of the same batch
    assert (await client.get(f"/api/batches/{batch['id']}")).json()["status"] == "cancelled"


async def test_a_finished_batch_cannot_be_cancelled(client):
    f = await upload(client, jsonl("{oops", line(None)))  # nothing runnable: done once submitted
    batch = await settled(client, (await create(client, f["id"])).json()["id"])
    assert batch["status"] == "completed" and batch["completed_at"] and batch["error_file_id"]
    r = await client.post(f"/v1/batches/{batch['id']}/cancel")
    assert "completed" in is_openai_error(r, 409)["message"]
    assert r.headers["x-should-retry"] == "false"  # the SDK would otherwise retry a 409


async def test_create_refusals(client):
    missing = await create(client, "file-nope")
    assert is_openai_error(missing, 404)["param"] == "input_file_id"
    f = await upload(client, jsonl(line("a")))
    assert is_openai_error(await create(client, f["id"], completion_window="1d"), 400)["param"] == (
        "completion_window"
    )
    assert (
        is_openai_error(await create(client, f["id"], endpoint="/v1/embeddings"), 400)["param"] == "endpoint"
    )
    bad_config = await create(client, f["id"], config={"strategy": {"mode": "nope"}})
    assert is_openai_error(bad_config, 400)["param"] == "config"
    assert is_openai_error(await create(client, f["id"], cache={"level": "nope"}), 400)["param"] == "cache"
    assert is_openai_error(await create(client, f["id"], media={"max_side": -1}), 400)["param"] == "media"
    too_much = await create(client, f["id"], metadata={f"k{n}": "v" for n in range(17)})
    assert is_openai_error(too_much, 400)["param"] == "metadata"
    empty = await upload(client, b"\n\n")
    assert is_openai_error(await create(client, empty["id"]), 400)["code"] == "empty_file"
    other = await client.post(
        "/v1/batches",
        json={"input_file_id": f["id"], "endpoint": CHAT, "completion_window": "24h"},
        headers={"authorization": f"Bearer {OTHER}"},
    )
    is_openai_error(other, 404)
    ok = await create(client, f["id"], completion_window="48h", some_future_field={"x": 1})
    assert ok.status_code == 200 and ok.json()["expires_at"] == ok.json()["created_at"] + 48 * 3600


async def test_an_unreadable_input_file_fails_the_batch(client, monkeypatch):
    async def broken(self, meta, chunk_size=0) -> AsyncIterator[bytes]:
        yield jsonl(line("first"))
        raise OSError("disk went away")

    f = await upload(client, jsonl(line("first"), line("second")))
    monkeypatch.setattr(FileStore, "stream", broken)
    batch = await settled(client, (await create(client, f["id"])).json()["id"])
    assert batch["status"] == "failed" and batch["failed_at"]
    assert batch["errors"]["data"][0]["code"] == "submission_failed"
    assert "disk went away" in batch["errors"]["data"][0]["message"]
    assert batch["output_file_id"] is None and batch["error_file_id"] is None
    mmq = (await client.get(f"/api/batches/{batch['id']}")).json()
    assert mmq["counts"]["queued"] == 0  # a failed batch runs nothing more


async def test_files_and_batches_list_pages(client):
    files = [await upload(client, jsonl(line(f"c{n}"))) for n in range(3)]
    ids = []
    for f in files:
        ids.append((await create(client, f["id"])).json()["id"])
        await asyncio.sleep(0.002)
    page = (await client.get("/v1/batches", params={"limit": 2})).json()
    assert [b["id"] for b in page["data"]] == ids[::-1][:2] and page["has_more"]
    assert (page["first_id"], page["last_id"]) == (ids[2], ids[1])
    rest = (await client.get("/v1/batches", params={"limit": 2, "after": page["last_id"]})).json()
    assert [b["id"] for b in rest["data"]] == [ids[0]] and not rest["has_more"]

    asc = (await client.get("/v1/files", params={"order": "asc", "limit": 2})).json()
    assert [x["id"] for x in asc["data"]] == [files[0]["id"], files[1]["id"]] and asc["has_more"]
    assert (await client.get("/v1/files", params={"purpose": "batch_output"})).json()["data"] == []
    deleted = (await client.delete(f"/v1/files/{files[0]['id']}")).json()
    assert deleted == {"id": files[0]["id"], "object": "file", "deleted": True}
    is_openai_error(await client.get(f"/v1/files/{files[0]['id']}"), 404)
    assert len((await client.get("/v1/files")).json()["data"]) == 2
    assert batches.MAX_LINES == 100_000
