"""OpenTelemetry spans (issue 14): one `mmq.job` span per job run and a GenAI-conventions CLIENT span per
provider call under it, with ids, names, counts and statuses only: never the prompt, the image or the key.
Off unless MMQ_OTEL=1."""

from __future__ import annotations

import itertools
from dataclasses import replace

import httpx
import pytest

from mmq import tracing
from mmq.contract import JobStatus
from mmq.simulator import SimulatorConfig
from mmq.simulator import create_app as create_simulator
from tests.conftest import chat_body, data_url, png_bytes
from worker.pipeline import run_job

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

KEY = "sk-test-5f3c9e1a7b2d4c6e8f0a1b2c3d4e5f60"
_n = itertools.count()


@pytest.fixture
def exporter(monkeypatch):
    """Spans on (MMQ_OTEL=1) into memory, with the test's own provider (the global one is left alone)."""
    monkeypatch.setenv("MMQ_OTEL", "1")
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    assert tracing.configure(tracer_provider=provider)
    yield spans
    tracing.configure(enabled=False)
    provider.shutdown()


def _with_key(rt):
    rt.target = replace(rt.target, api_key=KEY)
    return rt


def _with_key_pair(pair):
    rt, producer = pair
    return _with_key(rt), producer


async def _submit(producer, prompt: str, **extra) -> str:
    body = chat_body(data_url(png_bytes((next(_n) % 250, 7, 9))), prompt) | extra
    job = await producer.submit_job("/v1/chat/completions", body, tenant="acme")
    return job.id


def _by_name(spans) -> tuple[object, list]:
    jobs = [s for s in spans if s.name == "mmq.job"]
    assert len(jobs) == 1
    return jobs[0], [s for s in spans if s.name != "mmq.job"]


def _no_secrets(spans, *secrets: str) -> None:
    for span in spans:
        for name, value in span.attributes.items():
            for secret in secrets:
                assert secret not in str(value), f"{span.name} {name} holds {secret!r}"
        assert all(secret not in (span.status.description or "") for secret in secrets)
        assert not span.events  # no exception events: their text may echo a key or a prompt


async def test_a_job_is_one_span_with_its_call_as_a_genai_child(make_runtime, exporter):
    rt, producer = make_runtime(httpx.ASGITransport(app=create_simulator(SimulatorConfig())))
    _with_key(rt)
    prompt = f"Describe the secret product number {next(_n)} in detail."
    job_id = await _submit(producer, prompt, max_tokens=77)
    assert (await run_job({"mmq": rt}, job_id))["ok"]
    job = await rt.records.get_job(job_id)

    spans = exporter.get_finished_spans()
    job_span, calls = _by_name(spans)
    assert len(calls) == 1
    call = calls[0]
    assert job_span.kind is SpanKind.INTERNAL and call.kind is SpanKind.CLIENT
    assert call.name == "chat gpt-4o-mini"
    assert call.parent is not None and call.parent.span_id == job_span.context.span_id
    assert call.context.trace_id == job_span.context.trace_id

    expected = {
        "mmq.job.id": job_id,
        "mmq.batch.id": job.batch_id,
        "mmq.tenant": "acme",
        "mmq.job.kind": "chat",
        "mmq.job.status": "succeeded",
        "mmq.job.cached": False,
        "mmq.job.attempts": 1,
    }
    assert dict(job_span.attributes) == {k: v for k, v in expected.items() if v is not None}
    attrs = dict(call.attributes)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.request.max_tokens"] == 77
    assert attrs["gen_ai.usage.input_tokens"] == job.usage["prompt_tokens"] > 0
    assert attrs["gen_ai.usage.output_tokens"] == job.usage["completion_tokens"] > 0
    assert attrs["gen_ai.response.id"].startswith("chatcmpl-")
    assert attrs["http.response.status_code"] == 200
    assert attrs["server.address"] == "sim" and attrs["mmq.target"] == "sim"
    assert "error.type" not in attrs and call.status.status_code is StatusCode.UNSET
    _no_secrets(spans, prompt, "secret product", KEY, "data:image", "iVBOR")


def scripted(*responses: httpx.Response) -> httpx.MockTransport:
    answers = iter(responses)
    return httpx.MockTransport(lambda request: next(answers))


async def test_a_retried_call_is_two_child_spans_and_a_failure_names_its_type_only(make_runtime, exporter):
    ok = {
        "id": "chatcmpl-42",
        "model": "gpt-4o-mini-2024",
        "choices": [{"message": {"role": "assistant", "content": "A mug."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }
    echo = {"error": {"message": f"upstream broke reading key {KEY}", "type": "server_error"}}
    rt, producer = _with_key_pair(
        make_runtime(scripted(httpx.Response(500, json=echo), httpx.Response(200, json=ok)))
    )
    prompt = "Tell nobody: the launch code is 0000."
    job_id = await _submit(producer, prompt)
    assert (await run_job({"mmq": rt}, job_id))["ok"]

    spans = exporter.get_finished_spans()
    job_span, calls = _by_name(spans)
    assert [c.attributes["http.response.status_code"] for c in calls] == [500, 200]
    assert all(c.parent.span_id == job_span.context.span_id for c in calls)
    failed, answered = calls
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["error.type"] == "server_error"
    assert answered.attributes["gen_ai.response.id"] == "chatcmpl-42"
    assert answered.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024"
    assert tuple(answered.attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert answered.attributes["gen_ai.usage.input_tokens"] == 11
    assert job_span.attributes["mmq.job.attempts"] == 2
    assert job_span.attributes["mmq.job.status"] == "succeeded"
    _no_secrets(spans, prompt, "launch code", KEY, "upstream broke")


async def test_a_failed_job_span_carries_the_error_type_not_its_message(make_runtime, exporter):
    bad = {"error": {"message": "The model `gpt-x` does not exist", "code": "model_not_found"}}
    rt, producer = _with_key_pair(make_runtime(scripted(httpx.Response(404, json=bad))))
    job_id = await _submit(producer, "Describe it.")
    assert not (await run_job({"mmq": rt}, job_id))["ok"]
    assert (await rt.records.get_job(job_id)).status is JobStatus.failed

    job_span, (call,) = _by_name(exporter.get_finished_spans())
    assert call.attributes["error.type"] == "model_not_found"
    assert call.attributes["http.response.status_code"] == 404
    assert job_span.attributes["mmq.job.status"] == "failed"
    assert job_span.attributes["error.type"] == "provider_error"
    assert job_span.status.status_code is StatusCode.ERROR
    _no_secrets([job_span, call], "does not exist", KEY)


async def test_no_span_without_mmq_otel(make_runtime, monkeypatch):
    monkeypatch.delenv("MMQ_OTEL", raising=False)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    assert not tracing.configure(tracer_provider=provider)  # installed, but off by default
    assert not tracing.enabled()
    rt, producer = make_runtime(httpx.ASGITransport(app=create_simulator(SimulatorConfig())))
    job_id = await _submit(producer, "Describe it.")
    assert (await run_job({"mmq": rt}, job_id))["ok"]
    assert spans.get_finished_spans() == ()
    # the hot path's hooks are shared no-op objects
    assert tracing.call_span(rt.target, "chat", {"model": "m"}) is tracing.NO_CALL
    provider.shutdown()
