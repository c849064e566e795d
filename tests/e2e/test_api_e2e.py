"""The HTTP API as a user sees it: a real `mmq api` process, a real worker, real Redis, the simulator."""

from __future__ import annotations

import io
import json
import time
import wave
from decimal import Decimal

import httpx
import pytest
from PIL import Image

from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import KEY_A, KEY_B

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def client(base: str, key: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=30)


def wait_done(c: httpx.Client, batch_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = c.get(f"/api/batches/{batch_id}").json()
        if batch["status"] != "in_progress":
            return batch
        time.sleep(0.2)
    raise TimeoutError(batch)


def test_batch_over_http_with_results_and_tenant_isolation(api):
    a, b, anonymous = client(api, KEY_A), client(api, KEY_B), client(api, None)
    lines = [
        {
            "custom_id": "green",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": chat_body(data_url(png_bytes((20, 180, 40), (200, 100)))),
        },
        {
            "custom_id": "art",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"prompt": "a lamp", "size": "128x128"},
        },
        {
            "custom_id": "voice",
            "method": "POST",
            "url": "/v1/audio/speech",
            "body": {"model": "tts-1", "input": "hi there", "voice": "nova", "response_format": "wav"},
        },
        "{broken json",
    ]
    jsonl = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    r = a.post("/api/batches", content=jsonl, headers={"content-type": "application/jsonl"})
    assert r.status_code == 201, r.text
    batch = wait_done(a, r.json()["id"])
    assert batch["counts"] == {
        "total": 4,
        "queued": 0,
        "running": 0,
        "succeeded": 3,
        "failed": 1,
        "cancelled": 0,
        "budget": 0,
        "provider_batch": 0,
        "cached": 0,
        "provider_calls": 3,  # the broken line never reached a provider
        "paid_twice": 0,
    }
    # what its calls cost, priced from the simulator's reported usage (a JSON number of dollars as text)
    assert Decimal(batch["cost"]["spent_usd"]) > 0 and batch["cost"]["max_cost_usd"] is None

    jobs = {j["custom_id"]: j for j in a.get(f"/api/batches/{batch['id']}/jobs").json()["data"]}
    assert "green" in a.get(jobs["green"]["result"]["url"]).json()["choices"][0]["message"]["content"]
    png = a.get(jobs["art"]["result"]["files"][0]["url"])
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (128, 128)
    wav = a.get(jobs["voice"]["result"]["files"][0]["url"])
    with wave.open(io.BytesIO(wav.content)) as w:
        assert w.getnframes() > 0
    assert "line 4" in jobs[None]["error"]["message"]

    out = [json.loads(x) for x in a.get(batch["output_url"]).text.splitlines()]
    assert [x["custom_id"] for x in out] == ["green", "art", "voice", None]
    assert out[3]["error"]["code"] == "invalid_request"

    # another tenant sees nothing of tenant A's, not even that it exists
    for path in (
        f"/api/batches/{batch['id']}",
        batch["output_url"],
        f"/api/jobs/{jobs['green']['id']}",
        jobs["art"]["result"]["files"][0]["url"],
        jobs["green"]["result"]["url"],
    ):
        assert b.get(path).status_code == 404, path
        assert anonymous.get(path).status_code == 401, path
    assert b.get("/api/batches").json()["data"] == []
    assert [x["id"] for x in a.get("/api/batches").json()["data"]] == [batch["id"]]
    assert client(api, "mmq_wrong").get("/api/batches").status_code == 401


def test_single_job_and_clear_errors_over_http(api):
    a = client(api, KEY_A)
    r = a.post("/api/jobs", json={"url": "/v1/chat/completions", "body": {"model": "m"}})
    assert r.status_code == 422 and "messages" in r.json()["detail"]
    r = a.post(
        "/api/jobs",
        json={"url": "/v1/audio/transcriptions", "body": {"model": "whisper-1", "file": "/etc/passwd"}},
    )
    assert r.status_code == 422 and "data: URL" in r.json()["detail"]
    r = a.post(
        "/api/jobs",
        json={
            "url": "/v1/chat/completions",
            "custom_id": "one",
            "body": chat_body(data_url(png_bytes((250, 250, 0)))),
        },
    )
    assert r.status_code == 201
    job_id = r.json()["id"]
    deadline = time.monotonic() + 30
    while (job := a.get(f"/api/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "succeeded" and job["attempts"][0]["status"] == 200
    assert "yellow" in a.get(job["result"]["url"]).json()["choices"][0]["message"]["content"]


def test_a_jsonl_batch_can_ask_for_downscaled_images(api):
    a = client(api, KEY_A)
    line = {
        "custom_id": "big",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": chat_body(data_url(png_bytes((20, 180, 40), (640, 480)))),
    }
    r = a.post(
        "/api/batches",
        params={"media": json.dumps({"max_side": 64})},
        content=json.dumps(line) + "\n",
        headers={"content-type": "application/jsonl"},
    )
    assert r.status_code == 201, r.text
    batch = wait_done(a, r.json()["id"])
    [out] = map(json.loads, a.get(f"/api/batches/{batch['id']}/output.jsonl").text.splitlines())
    assert "64x48" in out["response"]["body"]["choices"][0]["message"]["content"]
    assert "media" not in batch["metadata"]  # an option, not metadata
    bad = a.post(
        "/api/batches",
        params={"media": '{"max_side": -1}'},
        content=json.dumps(line) + "\n",
        headers={"content-type": "application/jsonl"},
    )
    assert bad.status_code == 422 and "max_side" in bad.text


def test_cache_options_over_http_and_the_saving_in_batch_counts(api):
    a = client(api, KEY_A)
    red = png_bytes((200, 30, 30), (40, 30))
    webp = io.BytesIO()
    Image.open(io.BytesIO(red)).save(webp, "WEBP", lossless=True)  # the same pixels, other bytes
    lines = [
        {"custom_id": "png", "url": "/v1/chat/completions", "body": chat_body(data_url(red))},
        {
            "custom_id": "webp",
            "url": "/v1/chat/completions",
            "body": chat_body(data_url(webp.getvalue(), "image/webp")),
        },
    ]
    jsonl = "\n".join(json.dumps(x) for x in lines)
    headers = {"content-type": "application/jsonl"}
    pixels = a.post("/api/batches", params={"cache": '{"level": "pixels"}'}, content=jsonl, headers=headers)
    assert pixels.status_code == 201, pixels.text
    done = wait_done(a, pixels.json()["id"])
    assert (done["counts"]["provider_calls"], done["counts"]["cached"]) == (1, 1)

    again = a.post("/api/batches", json={"requests": lines, "cache": {"level": "pixels"}}).json()
    assert again["status"] == "completed" and again["counts"]["cached"] == 2  # answered at submit
    bypass = wait_done(a, a.post("/api/batches", json={"requests": lines, "cache": False}).json()["id"])
    assert (bypass["counts"]["provider_calls"], bypass["counts"]["cached"]) == (2, 0)

    one = {"url": "/v1/chat/completions", "body": lines[1]["body"], "cache": {"level": "pixels"}}
    job = a.post("/api/jobs", json=one).json()
    assert job["status"] == "succeeded" and job["cached"] and job["cached_from"]
    refused = a.post(
        "/api/jobs", json={"url": "/v1/chat/completions", "body": lines[0]["body"], "cache": {"level": "x"}}
    )
    assert refused.status_code == 422 and "cache options" in refused.text


def test_retry_failed_and_cancel_over_http(api, mmq_env):
    a, b = client(api, KEY_A), client(api, KEY_B)
    sim = mmq_env["MMQ_OPENAI_BASE_URL"].removesuffix("/v1")
    httpx.post(
        sim + "/sim/faults", json={"status": 400, "count": 2, "message": "scripted"}
    ).raise_for_status()
    lines = [
        {
            "custom_id": f"r{i}",
            "url": "/v1/chat/completions",
            "body": chat_body(data_url(png_bytes((i, 50, 90)))),
        }
        for i in range(4)
    ]
    batch = wait_done(a, a.post("/api/batches", json={"requests": lines}).json()["id"])
    assert (batch["counts"]["succeeded"], batch["counts"]["failed"]) == (2, 2)
    assert b.post(f"/api/batches/{batch['id']}/retry-failed").status_code == 404  # another tenant's
    retried = a.post(f"/api/batches/{batch['id']}/retry-failed").json()
    assert retried["requeued"] == 2
    again = wait_done(a, batch["id"])
    assert (again["counts"]["succeeded"], again["counts"]["failed"], again["status"]) == (4, 0, "completed")

    # cancelling a batch that has ended changes nothing
    assert a.post(f"/api/batches/{batch['id']}/cancel").json()["status"] == "completed"
    assert b.post(f"/api/batches/{batch['id']}/cancel").status_code == 404
