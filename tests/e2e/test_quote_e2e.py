"""Quotes before a run, through the real doors (issue 16): `mmq quote`, `--dry-run` on `mmq submit` and on
a workflow, `POST /api/batches?dry_run=true` (JSON and JSONL) and `/v1/batches` with
`extra_body={"dry_run": True}` through the stock openai SDK. Beside a running worker and a simulator,
none of them writes a key in Redis or calls the provider; and a bad price file is refused with its line
and reason, in one paragraph, with no traceback."""

from __future__ import annotations

import io
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from openai import OpenAI

from producer.auth import hash_key
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import _spawn, _stop, free_port, run_mmq, wait_http
from tests.e2e.test_cli_errors_e2e import refused

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

KEY = "mmq_quote_e2e_key"
LINES = [
    {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": chat_body(data_url(png_bytes((9, 9, 9)))),
    },
    {
        "custom_id": "b",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": chat_body("https://example.com/b.jpg"),
    },
    {
        "custom_id": "c",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {**chat_body("https://x/c.png"), "model": "gpt-9-ears"},
    },
]
JSONL = "".join(json.dumps(x) + "\n" for x in LINES)
BAD_PRICES = """\
version: team-1
providers:
  openai:
    models:
      gpt-4o-mini:
        effective_from: 2024-07-18
        source: "our contract"
        chat: {input: lots, output: 0.60}
"""


@pytest.fixture
def stack(redis_url: str, storage_url: str, make_simulator, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An API and a worker on a key prefix of their own, against a simulator; the env, with the API's
    and the simulator's URLs in MMQ_TEST_API / MMQ_TEST_SIM."""
    prefix = f"mmqquote{uuid.uuid4().hex[:8]}"
    sim = make_simulator("--seed", "7")
    env = {
        "MMQ_REDIS_URL": redis_url,
        "MMQ_KEY_PREFIX": prefix,
        "MMQ_QUEUE_NAME": f"{prefix}:queue",
        "MMQ_STORAGE_URL": storage_url,
        "MMQ_OPENAI_BASE_URL": sim,
        "MMQ_OPENAI_API_KEY": "sk-test-e2e-virtual",
        "MMQ_POLL_DELAY_S": "0.05",
        "MMQ_API_KEYS": json.dumps({hash_key(KEY): "tenant-a"}),
    }
    port = free_port()
    worker = _spawn(["worker"], env, tmp_path / "worker.log")
    server = _spawn(["api", "--port", str(port)], env, tmp_path / "api.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", server, tmp_path / "api.log")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        yield {**env, "MMQ_TEST_API": f"http://127.0.0.1:{port}", "MMQ_TEST_SIM": sim.removesuffix("/v1")}
    finally:
        _stop(server)
        _stop(worker)


def written(env: dict[str, str]) -> set[bytes]:
    """Every key of the test's prefix and every arq key (a queued job), but the worker's health check."""
    client = redis_sync.Redis.from_url(env["MMQ_REDIS_URL"])
    try:
        keys = set(client.scan_iter(match=env["MMQ_KEY_PREFIX"] + "*", count=1000))
        keys |= set(client.scan_iter(match="arq:*", count=1000))
    finally:
        client.close()
    return {k for k in keys if not k.endswith(b":health-check")}


def provider_calls(env: dict[str, str]) -> int:
    return httpx.get(env["MMQ_TEST_SIM"] + "/sim/stats", timeout=10).json()["requests"]


def mmq(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    done = run_mmq(*args, env=env, cwd=cwd)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout, done.stderr)
    return done


def test_every_dry_run_writes_nothing_and_calls_no_provider(stack, tmp_path):
    (tmp_path / "in.jsonl").write_text(JSONL)
    (tmp_path / "photos").mkdir()
    for n in range(3):
        (tmp_path / "photos" / f"{n}.png").write_bytes(png_bytes((n * 40, 90, 90), (640, 480)))
    api = httpx.Client(base_url=stack["MMQ_TEST_API"], headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    sdk = OpenAI(base_url=stack["MMQ_TEST_API"] + "/v1", api_key=KEY, max_retries=0)
    uploaded = sdk.files.create(
        file=("in.jsonl", io.BytesIO(JSONL.encode()), "application/jsonl"), purpose="batch"
    )
    before = written(stack)

    cli = {k: v for k, v in stack.items() if not k.startswith("MMQ_TEST_")}
    quoted = json.loads(mmq("quote", "in.jsonl", "--json", env=cli, cwd=tmp_path).stdout)
    assert (quoted["jobs"], quoted["priced_jobs"], quoted["missing"]) == (
        3,
        2,
        {"no price for openai/gpt-9-ears": 1},
    )
    submitted = mmq("submit", "in.jsonl", "--dry-run", env=cli, cwd=tmp_path).stdout
    assert "dry run: nothing was submitted" in submitted and "no price for openai/gpt-9-ears" in submitted
    captions = mmq("caption", "photos", "--dry-run", "--max-tokens", "50", env=cli, cwd=tmp_path).stdout
    assert "openai/gpt-4o-mini" in captions and "total: 3 of 3 job(s) priced" in captions

    as_json = api.post("/api/batches", params={"dry_run": "true"}, json={"requests": LINES})
    assert as_json.status_code == 200 and as_json.json() == quoted
    as_jsonl = api.post(
        "/api/batches?dry_run=true", content=JSONL, headers={"content-type": "application/jsonl"}
    )
    assert as_jsonl.status_code == 200 and as_jsonl.json() == quoted

    answer = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_body={"dry_run": True},
    )
    assert answer.object == "batch.quote"
    assert answer.to_dict()["quote"] == quoted

    time.sleep(1.0)  # a job queued by mistake would have reached the worker and the simulator by now
    assert written(stack) == before
    assert provider_calls(stack) == 0
    assert api.get("/api/batches").json()["data"] == []
    assert sdk.batches.list().data == []

    # the same file submitted for real does write (the scan sees writes) and reaches the provider
    real = api.post("/api/batches", json={"requests": LINES[:1]})
    assert real.status_code == 201, real.text
    assert written(stack) - before


def test_a_bad_price_file_is_refused_with_its_line_and_reason(tmp_path):
    (tmp_path / "in.jsonl").write_text(JSONL)
    (tmp_path / "prices.yaml").write_text(BAD_PRICES)
    env = {"MMQ_REDIS_URL": ""}  # a quote needs no Redis
    flag = run_mmq("quote", "in.jsonl", "--prices", "prices.yaml", env=env, cwd=tmp_path)
    message = refused(
        flag, "prices.yaml is refused", "line 8", "chat.input", "valid decimal", "drop --prices"
    )
    assert "Traceback" not in message
    from_env = run_mmq(
        "submit", "in.jsonl", "--dry-run", env={**env, "MMQ_PRICES_FILE": "prices.yaml"}, cwd=tmp_path
    )
    refused(from_env, "prices.yaml is refused", "line 8", "unset MMQ_PRICES_FILE")
    (tmp_path / "broken.yaml").write_text("providers: [\n")
    refused(
        run_mmq("quote", "in.jsonl", "--prices", "broken.yaml", env=env, cwd=tmp_path),
        "line 2",
        "invalid YAML",
    )
