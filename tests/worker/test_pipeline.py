"""The job function's decisions (retry, defer, fail) against the simulator and scripted providers.

In-process and in-memory for speed; tests/e2e runs the same pipeline in real worker processes.
"""

from __future__ import annotations

import itertools
import time

import httpx
import pytest
from arq import Retry

from mmq.contract import JobStatus
from mmq.simulator import SimulatorConfig
from mmq.simulator import create_app as create_simulator
from producer.submit import Producer
from tests.conftest import chat_body, data_url, png_bytes
from worker.http import make_client
from worker.pipeline import run_job
from worker.providers.base import Target


def sim_transport(**knobs) -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=create_simulator(SimulatorConfig(**knobs)))


_jobs = itertools.count()


async def submit(producer: Producer, colour=(200, 20, 20)) -> str:
    """A distinct job each time (identical ones would be answered by the cache)."""
    prompt = f"Describe product {next(_jobs)}."
    job = await producer.submit_job(
        "/v1/chat/completions", chat_body(data_url(png_bytes(colour)), prompt), tenant="t"
    )
    return job.id


async def test_a_job_runs_and_records_its_attempt(make_runtime):
    rt, producer = make_runtime(sim_transport())
    job_id = await submit(producer)
    assert (await run_job({"mmq": rt}, job_id))["ok"]
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.succeeded and [a.status for a in job.attempts] == [200]
    assert job.usage["total_tokens"] > 0
    # a re-run (arq is at-least-once) is a no-op, never a second provider call
    assert (await run_job({"mmq": rt}, job_id))["status"] == "succeeded"
    assert len((await rt.records.get_job(job_id)).attempts) == 1


async def test_a_short_retry_after_is_slept_through_and_honoured(make_runtime):
    rt, producer = make_runtime(sim_transport(requests_per_window=1, window_s=1.0))
    first, second = await submit(producer), await submit(producer, (0, 0, 200))
    await run_job({"mmq": rt}, first)
    started = time.monotonic()
    await run_job({"mmq": rt}, second)
    job = await rt.records.get_job(second)
    assert job.status is JobStatus.succeeded
    assert [a.status for a in job.attempts] == [429, 200]
    assert time.monotonic() - started >= 0.9  # waited for the window, not a blind fast retry


async def test_a_long_retry_after_defers_the_job_and_frees_the_slot(make_runtime):
    rt, producer = make_runtime(sim_transport(requests_per_window=1, window_s=30.0))
    first, second = await submit(producer), await submit(producer)
    await run_job({"mmq": rt}, first)
    with pytest.raises(Retry) as retry:
        await run_job({"mmq": rt}, second)
    assert retry.value.defer_score >= 25_000  # ms
    job = await rt.records.get_job(second)
    assert job.status is JobStatus.queued and [a.status for a in job.attempts] == [429]


def scripted(*responses: httpx.Response) -> httpx.MockTransport:
    calls = iter(responses)
    return httpx.MockTransport(lambda request: next(calls))


def err(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": f"scripted {code}", "type": code, "code": code}}, headers=headers
    )


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (err(400, "invalid_request_error"), "invalid_request_error"),
        (err(401, "invalid_api_key"), "invalid_api_key"),
        (err(429, "insufficient_quota"), "insufficient_quota"),
    ],
)
async def test_errors_that_cannot_succeed_fail_at_once(make_runtime, response, code):
    rt, producer = make_runtime(scripted(response))
    job_id = await submit(producer)
    await run_job({"mmq": rt}, job_id)
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.failed and len(job.attempts) == 1
    assert job.error.code == code and job.error.provider_status == response.status_code


async def test_server_errors_and_unusable_200s_are_retried_until_the_limit(make_runtime):
    rt, producer = make_runtime(
        scripted(err(503, "server_error"), httpx.Response(200, text="<html>oops"), err(500, "server_error")),
        max_attempts=3,
    )
    job_id = await submit(producer)
    await run_job({"mmq": rt}, job_id)
    job = await rt.records.get_job(job_id)
    assert [a.status for a in job.attempts] == [503, 200, 500]
    assert "unusable body" in job.attempts[1].error
    assert job.status is JobStatus.failed and job.error.provider_status == 500


async def test_a_retry_then_success(make_runtime):
    ok = httpx.Response(
        200, json={"choices": [{"message": {"content": "fine"}}], "usage": {"total_tokens": 3}}
    )
    rt, producer = make_runtime(scripted(err(502, "bad_gateway", **{"retry-after-ms": "20"}), ok))
    job_id = await submit(producer)
    await run_job({"mmq": rt}, job_id)
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.succeeded and [a.status for a in job.attempts] == [502, 200]


async def test_a_corrupt_image_fails_its_job_before_any_provider_call(make_runtime):
    rt, producer = make_runtime(scripted())  # any call would raise StopIteration → internal error
    job = await producer.submit_job(
        "/v1/chat/completions", chat_body(data_url(png_bytes((1, 1, 1))[:40])), tenant="t"
    )
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.failed and rec.error.type == "invalid_media" and rec.attempts == []


async def test_a_provider_echoing_the_api_key_never_gets_it_into_the_record(make_runtime):
    rt, producer = make_runtime(scripted(err(401, "invalid_api_key")))
    rt.target = Target(name="sim", provider="openai", base_url="http://sim/v1", api_key="sk-secret-value-123")
    echo = httpx.Response(
        401,
        json={
            "error": {"message": "Incorrect API key provided: sk-secret-value-123", "code": "invalid_api_key"}
        },
    )
    rt.client = make_client(transport=scripted(echo))
    job_id = await submit(producer)
    await run_job({"mmq": rt}, job_id)
    raw = b" ".join(
        v for kv in (await rt.records.redis.hgetall(rt.records.job_key(job_id))).items() for v in kv
    )
    assert b"sk-secret-value-123" not in raw and b"Incorrect API key provided: ***" in raw
    await rt.client.aclose()


async def test_repeated_identical_attempts_are_one_entry_and_still_count(make_runtime):
    """A target failing the same way again and again is one attempt entry with its count: the record
    stays bounded (a deferred job grew to 38 entries), and the retry budget still counts every try."""
    busy = httpx.Response(503, json={"error": {"message": "overloaded", "code": "overloaded"}})
    ok = httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "fine"}}]})
    rt, producer = make_runtime(scripted(busy, busy, busy, ok), max_attempts=6)
    job_id = await submit(producer)
    await run_job({"mmq": rt}, job_id)
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.succeeded
    assert [(a.status, a.repeats) for a in job.attempts] == [(503, 3), (200, 1)]

    rt, producer = make_runtime(scripted(*[busy] * 6), max_attempts=4)
    job_id = await submit(producer)
    await run_job({"mmq": rt}, job_id)
    job = await rt.records.get_job(job_id)
    assert job.status is JobStatus.failed and [(a.status, a.repeats) for a in job.attempts] == [(503, 4)]


async def test_a_text_transcript_is_priced_by_the_seconds_measured_from_its_recording(make_runtime):
    import base64

    from mmq.pricing import cost_of
    from mmq.pricing.audio import measure_audio
    from mmq.simulator import encode_speech_wav

    rt, producer = make_runtime(sim_transport())
    wav = encode_speech_wav("the blue chair ships today, and the red lamp tomorrow")
    seconds = measure_audio(wav)
    assert seconds and seconds > 1
    body = {"model": "whisper-1", "response_format": "srt"}
    body["file"] = "data:audio/wav;base64," + base64.b64encode(wav).decode()
    job = await producer.submit_job("/v1/audio/transcriptions", body, tenant="t")
    assert (await run_job({"mmq": rt}, job.id))["ok"]
    done = await rt.records.get_job(job.id)
    # an srt answer reports no duration: the cost comes from the recording, not "duration unknown"
    assert done.cost.missing is None and done.cost.micro_usd > 0
    priced = cost_of("openai", "whisper-1", "transcription", {"seconds": seconds})
    assert done.cost.micro_usd == priced.micro_usd and done.cost.usd == str(priced.amount)
