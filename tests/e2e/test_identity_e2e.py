"""One identity (issue 14, item 2) against real processes: an `mmq api` that is never restarted, a worker,
the simulator and real Redis. Keys made and revoked with the CLI take effect on the next request; a batch
made in admin mode is its tenant's through /api and the OpenAI SDK; the CLI in API mode (MMQ_API_URL)
works as its key's tenant without touching Redis; /api and /v1 batches are listed by each other."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
import openai
import pytest
import redis as redis_sync
from openai import OpenAI

from mmq.simulator import encode_speech_wav
from tests.e2e.conftest import KEY_A, run_mmq

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

CHAT = "/v1/chat/completions"


def req(custom_id: str, url: str = CHAT, body: dict | None = None) -> dict:
    body = body or {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Say {custom_id}."}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def write_jsonl(path: Path, *lines: dict) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def sdk(api: str, key: str) -> OpenAI:
    return OpenAI(base_url=f"{api}/v1", api_key=key, max_retries=0)


def make_key(env: dict[str, str], *args: str) -> str:
    made = run_mmq("keys", "create", *args, env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("mmq_") and len(key.splitlines()) == 1
    return key


def wait_v1(client: OpenAI, batch_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while (batch := client.batches.retrieve(batch_id)).status not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
    return batch


def redis_holds(redis_url: str, secret: str) -> list[str]:
    """Every Redis key whose name or value contains `secret`."""
    r = redis_sync.Redis.from_url(redis_url)
    found = []
    try:
        for name in r.scan_iter(match="*"):
            kind = r.type(name)
            values: list[bytes] = [name]
            if kind == b"hash":
                values += [*r.hkeys(name), *r.hvals(name)]
            elif kind in (b"zset",):
                values += r.zrange(name, 0, -1)
            elif kind == b"list":
                values += r.lrange(name, 0, -1)
            elif kind == b"set":
                values += list(r.smembers(name))
            elif kind == b"string":
                values.append(r.get(name) or b"")
            if any(secret.encode() in v for v in values):
                found.append(name.decode())
    finally:
        r.close()
    return found


def test_keys_made_and_revoked_with_the_cli_take_effect_without_a_restart(api, mmq_env, redis_url):
    key = make_key(mmq_env, "--tenant", "acme", "--name", "laptop")
    assert redis_holds(redis_url, key) == []  # only its SHA-256 is kept
    assert httpx.get(f"{api}/api/batches", headers={"authorization": f"Bearer {key}"}).status_code == 200
    assert sdk(api, key).batches.list().data == []

    listed = run_mmq("keys", "list", env=mmq_env)
    assert listed.returncode == 0, listed.stderr
    row = next(x for x in listed.stdout.splitlines() if "laptop" in x)
    assert "acme" in row and key[:8] in row and "active" in row and key not in listed.stdout

    revoked = run_mmq("keys", "revoke", "laptop", env=mmq_env)
    assert revoked.returncode == 0, revoked.stderr
    assert httpx.get(f"{api}/api/batches", headers={"authorization": f"Bearer {key}"}).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        sdk(api, key).batches.list()
    assert "laptop" not in run_mmq("keys", "list", env=mmq_env).stdout
    assert "revoked" in run_mmq("keys", "list", "--all", env=mmq_env).stdout


def test_a_batch_made_in_admin_mode_is_its_tenants_through_the_sdk_and_api(api, mmq_env, tmp_path):
    acme, default = make_key(mmq_env, "--tenant", "acme"), make_key(mmq_env)  # the second: tenant `default`
    write_jsonl(tmp_path / "in.jsonl", req("one"), req("two"))
    named = run_mmq("submit", "in.jsonl", "--tenant", "acme", "--watch", env=mmq_env, cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    unnamed = run_mmq("submit", "in.jsonl", "--watch", env=mmq_env, cwd=tmp_path)  # no --tenant
    assert unnamed.returncode == 0, unnamed.stderr
    acme_id, default_id = named.stdout.split()[0], unnamed.stdout.split()[0]

    client = sdk(api, acme)
    batch = wait_v1(client, acme_id)
    assert batch.status == "completed" and batch.endpoint == CHAT
    assert (batch.request_counts.total, batch.request_counts.completed) == (2, 2)
    assert batch.metadata == {"source": "in.jsonl"}
    lines = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in lines) == ["one", "two"]
    assert [b.id for b in client.batches.list()] == [acme_id]

    def get(key: str, batch_id: str) -> int:
        return httpx.get(
            f"{api}/api/batches/{batch_id}", headers={"authorization": f"Bearer {key}"}
        ).status_code

    assert (get(acme, acme_id), get(acme, default_id)) == (200, 404)
    assert (get(default, default_id), get(default, acme_id)) == (200, 404)
    assert wait_v1(sdk(api, default), default_id).status == "completed"


def test_the_cli_in_api_mode_works_as_its_keys_tenant_without_redis(api, mmq_env, redis_url, tmp_path):
    key = make_key(mmq_env, "--tenant", "acme", "--name", "cli")
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "note.wav").write_bytes(encode_speech_wav("call the supplier at nine"))
    write_jsonl(
        tmp_path / "in.jsonl",
        req("hello"),
        req(
            "note",
            "/v1/audio/transcriptions",
            {"model": "whisper-1", "file": "clips/note.wav", "response_format": "srt"},
        ),
        req("poster", "/v1/images/generations", {"prompt": "a van"}),
    )
    # Redis and the store are out of reach: everything goes through the API
    env = {
        "MMQ_API_URL": api,
        "MMQ_API_KEY": key,
        "MMQ_REDIS_URL": "redis://127.0.0.1:1/0",
        "MMQ_STORAGE_URL": f"file://{tmp_path / 'not-the-store'}",
    }
    submitted = run_mmq("submit", "in.jsonl", "--watch", env=env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.split()[0]
    assert "for tenant acme" in submitted.stderr and "3/3" in submitted.stderr
    r = redis_sync.Redis.from_url(redis_url)
    try:
        assert r.hget(f"mmq:batch:{batch_id}", "tenant") == b"acme"
    finally:
        r.close()

    status = run_mmq("status", batch_id, env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "status    completed" in status.stdout and "tenant    acme" in status.stdout
    assert json.loads(run_mmq("status", batch_id, "--json", env=env).stdout)["counts"]["succeeded"] == 3
    listed = run_mmq("batches", env=env)
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].startswith(batch_id)
    assert [b.id for b in sdk(api, key).batches.list()] == [batch_id]  # the same tenant through the SDK

    results = run_mmq("results", batch_id, "--out", "out.jsonl", "--files", "files", env=env, cwd=tmp_path)
    assert results.returncode == 0, results.stderr
    out = {x["custom_id"]: x for x in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert out["hello"]["response"]["status_code"] == 200
    assert "call the supplier at nine" in (tmp_path / "files" / "note.srt").read_text()  # the local file went
    assert (tmp_path / "files" / "poster.png").read_bytes().startswith(b"\x89PNG")
    job_id = out["hello"]["response"]["request_id"]
    job = run_mmq("status", job_id, env=env)
    assert job.returncode == 0 and f"job {job_id}" in job.stdout and "succeeded" in job.stdout

    # another tenant's batch does not exist for this key; --tenant and a bad key are named, not traced
    other = run_mmq("submit", "in.jsonl", "--tenant", "beta", env=mmq_env, cwd=tmp_path).stdout.split()[0]
    for args, says in (
        (("status", other), f"no batch {other}"),
        (("submit", "in.jsonl", "--tenant", "beta"), "--tenant beta is for admin mode"),
        (("batches", "--all-tenants"), "--all-tenants is for admin mode"),
    ):
        refused = run_mmq(*args, env=env, cwd=tmp_path)
        assert refused.returncode == 1 and says in refused.stderr and "Traceback" not in refused.stderr
    bad = run_mmq("batches", env={**env, "MMQ_API_KEY": "mmq_not_a_key_of_this_api"})
    assert bad.returncode == 1 and "refuses MMQ_API_KEY" in bad.stderr and "Traceback" not in bad.stderr


def test_api_and_v1_batches_are_listed_by_each_other(api):
    client = sdk(api, KEY_A)
    http = httpx.Client(base_url=api, headers={"authorization": f"Bearer {KEY_A}"})
    with http:
        made = http.post("/api/batches", json={"requests": [req("from-api")]})
        assert made.status_code == 201, made.text
        api_id = made.json()["id"]
        f = client.files.create(
            file=("in.jsonl", io.BytesIO(json.dumps(req("from-v1")).encode()), "application/jsonl"),
            purpose="batch",
        )
        v1_id = client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h").id

        assert {api_id, v1_id} <= {b.id for b in client.batches.list()}
        assert {api_id, v1_id} <= {b["id"] for b in http.get("/api/batches").json()["data"]}
        done = wait_v1(client, api_id)
        assert done.status == "completed" and done.endpoint == CHAT and done.input_file_id == ""
        [line] = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        assert line["custom_id"] == "from-api" and line["response"]["status_code"] == 200
        assert http.get(f"/api/batches/{v1_id}").json()["tenant"] == "tenant-a"
