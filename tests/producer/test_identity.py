"""One identity (issue 14, item 2), in process on real Redis: keys made in Redis work on the next request
and revoked ones stop on the next, on /api, /v1 and the console alike; the keys file is re-read when it
changes; only a key's SHA-256 is stored; and every batch of a tenant, whatever made it, is listed and
read through /api, /v1/batches and the console."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from mmq.connections import connect
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.api import create_app
from producer.api_keys import ApiKeyStore, hash_key
from producer.submit import BatchLine, Producer
from tests.producer.console.conftest import sign_in

pytestmark = pytest.mark.redis

CONFIGURED = "mmq_configured_key_of_tenant_c"
BASE = "http://mmq.test"
CHAT = "/v1/chat/completions"


@dataclass
class Api:
    app: object
    transport: httpx.ASGITransport
    store: ApiKeyStore
    producer: Producer
    keys_file: Path

    def client(self, key: str | None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(transport=self.transport, base_url=BASE, headers=headers)


@pytest.fixture
async def api(redis_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text("{}")
    settings = Settings(
        redis_url=None,  # the app is handed its Redis: no store marker check
        storage_url=f"file://{tmp_path / 'store'}",
        api_keys={hash_key(CONFIGURED): "tenant-c"},
        api_keys_file=keys_file,
    )
    redis = connect(redis_url)
    storage = open_storage(settings.storage_url)
    app = create_app(settings, redis=redis, storage=storage)
    async with app.router.lifespan_context(app):
        yield Api(
            app,
            httpx.ASGITransport(app),
            ApiKeyStore(redis, settings.key_prefix),
            Producer(redis, storage, settings),
            keys_file,
        )
    await redis.aclose()


def line(custom_id: str) -> dict:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi {custom_id}"}]}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


async def test_a_key_made_in_redis_works_at_once_and_a_revoked_one_stops_on_the_next_request(api: Api):
    key, info = await api.store.create("acme", "laptop")
    async with api.client(key) as c:
        assert (await c.get("/api/batches")).status_code == 200
        assert (await c.get("/v1/batches")).status_code == 200
        assert (await c.post("/api/batches", json={"requests": [line("a")]})).status_code == 201
        await api.store.revoke(info)
        assert (await c.get("/api/batches")).status_code == 401
        r = await c.get("/v1/batches")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        # the guard refuses a body before reading it, with the same rule
        assert (await c.post("/api/batches", json={"requests": [line("b")]})).status_code == 401


async def test_only_the_hash_of_a_key_is_stored(api: Api, redis_url: str):
    key, info = await api.store.create("acme", "ci")
    assert info.prefix == key[:8] and info.key_hash == hash_key(key)
    r = redis_sync.Redis.from_url(redis_url)
    try:
        for name in r.scan_iter(match="*"):
            assert key.encode() not in name
            kind = r.type(name)
            values: list[bytes] = []
            if kind == b"hash":
                values = [*r.hkeys(name), *r.hvals(name)]
            elif kind == b"zset":
                values = r.zrange(name, 0, -1)
            elif kind == b"string":
                values = [r.get(name) or b""]
            assert not any(key.encode() in v for v in values), name
    finally:
        r.close()


async def test_a_revoked_configured_key_is_refused_and_a_console_session_ends_with_its_key(api: Api):
    async with api.client(CONFIGURED) as c:
        assert (await c.get("/api/batches")).status_code == 200
    key, info = await api.store.create("acme", "browser")
    browser = httpx.AsyncClient(transport=api.transport, base_url=BASE, headers={"accept": "text/html"})
    async with browser:
        assert (await sign_in(browser, key)).status_code == 303
        assert (await browser.get("/console/")).status_code == 200
        await api.store.revoke(info)
        assert (await browser.get("/console/")).status_code == 303  # back to sign-in
        assert (await sign_in(browser, key)).status_code == 401
    # revoking a configured key writes a record that wins over MMQ_API_KEYS
    from producer.api_keys import KeyInfo

    await api.store.revoke(KeyInfo(hash_key(CONFIGURED), "tenant-c", source="MMQ_API_KEYS"))
    async with api.client(CONFIGURED) as c:
        assert (await c.get("/api/batches")).status_code == 401


async def test_the_keys_file_is_read_again_when_it_changes(api: Api):
    new = "mmq_added_to_the_file_while_running"
    async with api.client(new) as c:
        assert (await c.get("/api/batches")).status_code == 401
        api.keys_file.write_text(json.dumps({hash_key(new): "filed"}))
        assert (await c.get("/api/batches")).status_code == 200
        api.keys_file.write_text("{not json")  # a broken edit keeps the keys last read
        assert (await c.get("/api/batches")).status_code == 200
        api.keys_file.write_text(json.dumps({hash_key("mmq_some_other_key_entirely"): "filed"}))
        assert (await c.get("/api/batches")).status_code == 401
        api.keys_file.unlink()
        assert (await c.get("/api/batches")).status_code == 401


async def test_every_batch_of_a_tenant_is_listed_and_read_by_api_v1_and_console(api: Api):
    key, _ = await api.store.create("acme")
    # made as the CLI's admin mode makes them: straight through the producer, on Redis
    admin = await api.producer.submit_batch(
        [BatchLine.from_obj(line("x"), 1)], tenant="acme", metadata={"source": "in.jsonl"}
    )
    other = await api.producer.submit_batch([BatchLine.from_obj(line("y"), 1)], tenant="beta")
    async with api.client(key) as c:
        via_api = (await c.post("/api/batches", json={"requests": [line("z")]})).json()
        upload = await c.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={"file": ("in.jsonl", json.dumps(line("w")).encode() + b"\n", "application/jsonl")},
        )
        body = {"input_file_id": upload.json()["id"], "endpoint": CHAT, "completion_window": "24h"}
        via_v1 = (await c.post("/v1/batches", json=body)).json()

        mine = {admin.id, via_api["id"], via_v1["id"]}
        assert {b["id"] for b in (await c.get("/api/batches")).json()["data"]} == mine
        assert {b["id"] for b in (await c.get("/v1/batches")).json()["data"]} == mine
        for batch_id in mine:
            assert (await c.get(f"/api/batches/{batch_id}")).json()["tenant"] == "acme"
        made_elsewhere = (await c.get(f"/v1/batches/{admin.id}")).json()
        assert made_elsewhere["object"] == "batch" and made_elsewhere["endpoint"] == CHAT
        assert made_elsewhere["model"] == "gpt-4o-mini" and made_elsewhere["input_file_id"] == ""
        assert made_elsewhere["request_counts"]["total"] == 1
        assert made_elsewhere["metadata"] == {"source": "in.jsonl"}
        assert (await c.get(f"/v1/batches/{via_api['id']}")).json()["status"] in ("in_progress", "validating")
        # another tenant's batch stays a 404 everywhere
        assert (await c.get(f"/v1/batches/{other.id}")).status_code == 404
        assert (await c.get(f"/api/batches/{other.id}")).status_code == 404
        # cancelling a batch made elsewhere through /v1 keeps its derived fields
        cancelled = (await c.post(f"/v1/batches/{via_api['id']}/cancel")).json()
        assert cancelled["status"] in ("cancelling", "cancelled") and cancelled["endpoint"] == CHAT

    browser = httpx.AsyncClient(transport=api.transport, base_url=BASE, headers={"accept": "text/html"})
    async with browser:
        assert (await sign_in(browser, key)).status_code == 303
        page = (await browser.get("/console/")).text
        assert all(b in page for b in mine) and other.id not in page
        assert re.search(r"acme", page)
