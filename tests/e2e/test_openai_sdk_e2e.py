"""The stock `openai` SDK against mmq's /v1 Files + Batches API: a real `mmq api` process, a real worker,
real Redis and the provider simulator, all on loopback."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from openai.types import Batch

from mmq.simulator import encode_speech_wav
from producer.auth import hash_key
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import _spawn, _stop, free_port, wait_http

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

KEY_A, KEY_B = "mmq_sdk_key_tenant_a", "mmq_sdk_key_tenant_b"
DONE = ("completed", "failed", "expired", "cancelled")


@pytest.fixture
def api(redis_url: str, storage_url: str, make_simulator, tmp_path: Path) -> Iterator[str]:
    """mmq's API and one worker with two slots against a simulator answering in 150 ms: slow enough
    that a 40-line batch still has queued lines to cancel, fast enough for small batches."""
    env = {
        "MMQ_REDIS_URL": redis_url,
        "MMQ_STORAGE_URL": storage_url,
        "MMQ_OPENAI_BASE_URL": make_simulator("--latency-ms", "150", "--seed", "7"),
        "MMQ_OPENAI_API_KEY": "sk-test-e2e-virtual",
        "MMQ_POLL_DELAY_S": "0.05",
        "MMQ_RETRY_BASE_S": "0.05",
        "MMQ_MAX_JOBS": "2",
        # a /v1 batch's 24 h window would make it `auto`: provider batches, polled every 30 s; these tests
        # are about the OpenAI wire, so they run realtime (tests/e2e/test_batch_tier_e2e.py has the tier)
        "MMQ_BATCH_TIER_MIN_WINDOW_S": str(30 * 86400),
    }
    port = free_port()
    keys = json.dumps({hash_key(KEY_A): "tenant-a", hash_key(KEY_B): "tenant-b"})
    worker = _spawn(["worker"], env, tmp_path / "worker.log")
    server = _spawn(["api", "--port", str(port)], {**env, "MMQ_API_KEYS": keys}, tmp_path / "api.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", server, tmp_path / "api.log")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(server)
        _stop(worker)


def sdk(api: str, key: str) -> OpenAI:
    return OpenAI(base_url=f"{api}/v1", api_key=key, max_retries=0)


def jsonl(*lines: dict | str) -> bytes:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode() + b"\n"


def req(custom_id: str, url: str, body: dict) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def upload(client: OpenAI, data: bytes, name: str = "in.jsonl"):
    return client.files.create(file=(name, io.BytesIO(data), "application/jsonl"), purpose="batch")


def wait(client: OpenAI, batch_id: str, until: tuple[str, ...] = DONE, timeout: float = 30) -> Batch:
    deadline = time.monotonic() + timeout
    while (batch := client.batches.retrieve(batch_id)).status not in until:
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
    return batch


def read_lines(client: OpenAI, file_id: str) -> dict[str | None, dict]:
    return {x["custom_id"]: x for x in map(json.loads, client.files.content(file_id).text.splitlines())}


def test_batch_lifecycle_with_the_openai_sdk(api):
    a, b = sdk(api, KEY_A), sdk(api, KEY_B)
    green, yellow = png_bytes((20, 180, 40)), png_bytes((250, 250, 0))
    data = jsonl(
        req("green", "/v1/chat/completions", chat_body(data_url(green))),
        req("yellow", "/v1/chat/completions", chat_body(data_url(yellow))),
        req("wrong-url", "/v1/images/generations", {"prompt": "a lamp"}),
        "{broken json",
    )
    f = a.files.create(
        file=("products.jsonl", io.BytesIO(data), "application/jsonl"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert (f.object, f.bytes, f.filename, f.purpose, f.status) == (
        "file",
        len(data),
        "products.jsonl",
        "batch",
        "processed",
    )
    assert f.id.startswith("file-") and f.expires_at == f.created_at + 3600
    assert a.files.retrieve(f.id).bytes == len(data)
    assert a.files.content(f.id).content == data

    created = a.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "catalog"},
        extra_body={"output_expires_after": {"anchor": "created_at", "seconds": 7200}},
    )
    assert created.status in ("validating", "in_progress") and created.id.startswith("batch_")
    assert created.endpoint == "/v1/chat/completions" and created.input_file_id == f.id
    assert created.expires_at == created.created_at + 24 * 3600

    batch = wait(a, created.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 2}
    assert batch.model == "gpt-4o-mini" and batch.metadata == {"job": "catalog"}
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.usage and batch.usage.total_tokens > 0
    errors = {e.line: e for e in batch.errors.data}
    assert (errors[3].code, errors[3].param) == ("invalid_url", "url") and errors[
        4
    ].code == "invalid_json_line"
    assert batch.output_file_id == f"file-out-{batch.id}" and batch.error_file_id == f"file-err-{batch.id}"

    out = read_lines(a, batch.output_file_id)
    assert set(out) == {"green", "yellow"}
    for colour in out:
        line = out[colour]
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        assert colour in line["response"]["body"]["choices"][0]["message"]["content"]
    err = read_lines(a, batch.error_file_id)
    assert set(err) == {"wrong-url", None}
    assert err["wrong-url"]["response"] is None and "endpoint" in err["wrong-url"]["error"]["message"]
    output_file = a.files.retrieve(batch.output_file_id)
    assert output_file.purpose == "batch_output" and output_file.bytes == len(
        a.files.content(batch.output_file_id).content
    )

    with pytest.raises(openai.ConflictError) as conflict:  # a finished batch cannot be cancelled
        a.batches.cancel(batch.id)
    assert "completed" in conflict.value.message

    # another tenant cannot see any of it; a wrong key is an AuthenticationError
    for call in (
        lambda: b.batches.retrieve(batch.id),
        lambda: b.batches.cancel(batch.id),
        lambda: b.files.retrieve(f.id),
        lambda: b.files.content(batch.output_file_id),
        lambda: b.files.delete(f.id),
    ):
        with pytest.raises(openai.NotFoundError) as nf:
            call()
        assert nf.value.status_code == 404 and set(nf.value.body) == {"message", "type", "param", "code"}
    assert b.batches.list().data == [] and b.files.list().data == []
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        sdk(api, "mmq_not_a_key").batches.list()
    assert unauthorized.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as bad:
        a.files.create(file=("x.jsonl", io.BytesIO(data), "application/jsonl"), purpose="fine-tune")
    assert bad.value.param == "purpose"
    with pytest.raises(openai.BadRequestError) as bad:
        a.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    assert bad.value.param == "endpoint"

    deleted = a.files.delete(f.id)
    assert (deleted.id, deleted.deleted) == (f.id, True)
    for call in (lambda: a.files.retrieve(f.id), lambda: a.files.content(f.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError):
        a.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert a.batches.retrieve(batch.id).status == "completed"  # the batch outlives its input file


def test_list_pages_newest_first_and_other_endpoints(api):
    a = sdk(api, KEY_A)
    spoken = "Twelve blue mugs, ready to ship."
    inputs = [
        (
            "/v1/images/generations",
            req("art", "/v1/images/generations", {"prompt": "a lamp", "size": "64x64"}),
        ),
        (
            "/v1/audio/transcriptions",
            req(
                "hear",
                "/v1/audio/transcriptions",
                {"model": "whisper-1", "file": data_url(encode_speech_wav(spoken), "audio/wav")},
            ),
        ),
        (
            "/v1/chat/completions",
            req("one", "/v1/chat/completions", chat_body(data_url(png_bytes((0, 0, 200))))),
        ),
    ]
    ids = []
    for endpoint, line in inputs:
        f = upload(a, jsonl(line))
        ids.append(a.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h").id)
        time.sleep(0.01)  # distinct creation times

    page = a.batches.list(limit=2)
    assert [x.id for x in page.data] == ids[::-1][:2] and page.has_more
    assert [x.id for x in a.batches.list(limit=2)] == ids[::-1]  # the SDK's auto-pager follows `after`
    assert [x.id for x in a.batches.list(limit=2, after=ids[1]).data] == [ids[0]]

    done = [wait(a, i) for i in ids]
    assert [x.status for x in done] == ["completed"] * 3
    art = read_lines(a, done[0].output_file_id)["art"]["response"]["body"]
    assert art["data"][0].get("url") or art["data"][0].get("b64_json")
    assert read_lines(a, done[1].output_file_id)["hear"]["response"]["body"]["text"] == spoken
    assert done[0].error_file_id is None  # no failed line, no error file (as OpenAI)


def test_cancel_keeps_partial_results(api):
    a = sdk(api, KEY_A)
    lines = [
        req(f"r{n}", "/v1/chat/completions", chat_body(data_url(png_bytes((n * 6, 100, 50)))))
        for n in range(40)
    ]
    f = upload(a, jsonl(*lines))
    created = a.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 20
    while (batch := a.batches.retrieve(created.id)).request_counts.completed < 2:
        assert batch.status in ("validating", "in_progress") and time.monotonic() < deadline, batch
        time.sleep(0.05)

    cancelling = a.batches.cancel(created.id)  # the SDK sends an empty JSON body
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    assert a.batches.cancel(created.id).status in ("cancelling", "cancelled")  # asking twice is fine

    batch = wait(a, created.id, until=("cancelled",))
    counts = batch.request_counts
    assert 2 <= counts.completed < 40 and counts.completed + counts.failed == counts.total == 40
    assert batch.cancelled_at and batch.completed_at is None
    out = read_lines(a, batch.output_file_id)
    assert len(out) == counts.completed
    assert all(x["response"]["status_code"] == 200 for x in out.values())
    err = read_lines(a, batch.error_file_id)
    assert len(err) == counts.failed and set(out) | set(err) == {f"r{n}" for n in range(40)}
    assert {x["error"]["code"] for x in err.values()} == {"batch_cancelled"}
