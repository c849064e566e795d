"""A virtual key's secret reaches the provider and nothing else: not Redis, not storage, not logs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import redis as redis_sync

from producer.auth import hash_key
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import _spawn, _stop, free_port, wait_http
from tests.e2e.test_api_e2e import client, wait_done

SECRET = "sk-live-SECRET-7f3a9c2e51d04b8e"
API_KEY = "mmq_test_key_secrets"


def everything_in_redis(url: str) -> bytes:
    r = redis_sync.Redis.from_url(url)
    out = []
    for key in r.scan_iter(count=1000):
        out.append(key)
        kind = r.type(key)
        if kind == b"string":
            out.append(r.get(key) or b"")
        elif kind == b"hash":
            out.extend(b for kv in r.hgetall(key).items() for b in kv)
        elif kind == b"list":
            out.extend(r.lrange(key, 0, -1))
        elif kind == b"set":
            out.extend(r.smembers(key))
        elif kind == b"zset":
            out.extend(m for m, _ in r.zrange(key, 0, -1, withscores=True))
        out.append(r.dump(key) or b"")  # the serialized value, whatever the type
    r.close()
    return b"\n".join(out)


def everything_in(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def everything_in_storage(url: str, request: pytest.FixtureRequest) -> bytes:
    """Every object under a test's storage URL: a local folder, or a prefix of the local S3 server."""
    if url.startswith("file://"):
        return everything_in(Path(url.removeprefix("file://")))
    server = request.getfixturevalue("s3_server")
    parsed = urlparse(url)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    client = server.client()
    keys = server.list_keys(bucket, prefix)
    return b"\n".join(client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys)


def test_a_virtual_key_never_lands_in_redis_storage_or_logs(mmq_env, simulator, tmp_path, request):
    env = {
        **mmq_env,
        "MMQ_OPENAI_API_KEY": "",  # the worker's default key is not in play: only the virtual key
        "MMQ_VK_CATALOG_PROD": SECRET,
        "MMQ_VK_CATALOG_PROD_BASE_URL": simulator,
        "MMQ_API_KEYS": json.dumps({hash_key(API_KEY): "tenant-s"}),
        "MMQ_LOG_LEVEL": "DEBUG",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = _spawn(["worker"], env, logs / "worker.log")
    port = free_port()
    api = _spawn(["api", "--port", str(port)], env, logs / "api.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", api, logs / "api.log")
        sim_root = simulator.removesuffix("/v1")
        # the provider echoes the key in an error, as OpenAI's 401s do; the job retries and succeeds
        httpx.post(
            sim_root + "/sim/faults",
            json={"status": 500, "count": 1, "message": "Incorrect API key provided: {key}"},
        ).raise_for_status()
        config = {"provider": "openai", "virtual_key": "catalog-prod", "retry": {"attempts": 2}}
        lines = [
            {
                "custom_id": f"item-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat_body(data_url(png_bytes((40 * i, 90, 200)))),
            }
            for i in range(3)
        ]
        c = client(f"http://127.0.0.1:{port}", API_KEY)
        created = c.post("/api/batches", json={"requests": lines, "config": config})
        assert created.status_code == 201, created.text
        batch = wait_done(c, created.json()["id"])
        assert batch["counts"]["succeeded"] == 3, batch
        jobs = c.get(f"/api/batches/{batch['id']}/jobs").json()["data"]
        attempts = [a for j in jobs for a in j["attempts"]]
        assert any(a["status"] == 500 and "***" in (a["error"] or "") for a in attempts)
        output = c.get(f"/api/batches/{batch['id']}/output.jsonl").content
        seen = httpx.get(sim_root + "/sim/faults").json()["key_hashes"]
    finally:
        _stop(api)
        _stop(worker)

    # the provider really was called with the virtual key's secret...
    assert hashlib.sha256(SECRET.encode()).hexdigest()[:16] in seen
    # ...and it is nowhere else
    secret = SECRET.encode()
    assert secret not in everything_in_redis(mmq_env["MMQ_REDIS_URL"])
    stored = everything_in_storage(mmq_env["MMQ_STORAGE_URL"], request)
    assert b"choices" in stored  # the scan reached the stored results
    assert secret not in stored
    assert secret not in everything_in(logs)
    assert secret not in output
