"""The Vertex AI batch prediction client (Gemini and Claude on Vertex) against the simulator served on
127.0.0.1 by uvicorn, over the worker's production HTTP client: the input goes up to the simulated
Cloud Storage, the job is created, polled and harvested from its predictions, each answer read by the
realtime adapter's parse, and the bucket is left clean."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from mmq.errors import ProviderError
from mmq.request_models import Kind
from mmq.simulator import SimulatorConfig, create_app
from tests.worker.batch_tier.conftest import FAST
from tests.worker.batch_tier.helpers import chat_request, ended, parsed, png_data_url, results, wait_until
from worker.batch_tier.apis import native_for
from worker.batch_tier.apis.vertex import VertexBatches, VertexClaudeBatches, VertexGeminiBatches, folder_of
from worker.batch_tier.apis.vertex_gcs import GcsClient, GcsPlace
from worker.batch_tier.apis.vertex_lines import LABEL, claude_result, error_line, gemini_result
from worker.batch_tier.protocol import ProviderBatch
from worker.http import make_client
from worker.providers import get_adapter
from worker.providers.base import Target

PLACE = {"x-mmq-vertex-project": "acme-ml", "x-mmq-vertex-location": "us-central1"}
GEMINI, CLAUDE = "gemini-2.5-flash", "claude-sonnet-4-5@20250929"
GCS_URI = "gs://mmq-batches/tier"
Serve = Callable[..., Any]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """serve(**knobs) -> (base URL on 127.0.0.1, the app, a worker client): a simulator per call."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None], socket.socket, httpx.AsyncClient]] = []

    async def start(**knobs: object) -> tuple[str, Any, httpx.AsyncClient]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        app = create_app(SimulatorConfig(**{**FAST, **knobs}))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(1000):  # bounded: a server that never starts fails the test, not the run
            if server.started:
                break
            await asyncio.sleep(0.01)
        client = make_client(timeout_s=60)
        running.append((server, task, sock, client))
        return f"http://127.0.0.1:{sock.getsockname()[1]}", app, client

    yield start
    for server, task, sock, client in running:
        await client.aclose()
        server.should_exit = True
        await task
        sock.close()


def setup(provider: str, base: str) -> tuple[VertexBatches, Target]:
    api: VertexBatches = (
        VertexGeminiBatches(GCS_URI, base) if provider == "vertex" else VertexClaudeBatches(GCS_URI, base)
    )
    return api, Target(
        name="vx", provider=provider, base_url=base, api_key="ya29.sim-token", headers=dict(PLACE)
    )


def lines_for(
    api: VertexBatches, target: Target, requests: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    adapter = get_adapter(api.provider)
    return [api.line(job, Kind.chat, adapter.translate(target, Kind.chat, r)) for job, r in requests.items()]  # type: ignore[attr-defined]


def chats(n: int, model: str, prefix: str = "job") -> dict[str, dict[str, Any]]:
    return {f"{prefix}-{i}": chat_request(f"line {i}", model) for i in range(n)}


def objects(app: Any) -> list[str]:
    return [o.name for o in app.state.sim.gcs.listed("mmq-batches")]


def test_registry_settings_line_shapes_and_place() -> None:
    assert isinstance(native_for("vertex"), VertexGeminiBatches)
    assert isinstance(native_for("vertex-anthropic"), VertexClaudeBatches)
    assert not VertexGeminiBatches("").enabled  # not configured: Vertex jobs run realtime
    assert not VertexGeminiBatches("s3://nope/x").enabled and not VertexGeminiBatches("gs://A_B/x").enabled
    assert VertexClaudeBatches(GCS_URI).enabled
    api, target = setup("vertex", "https://us-central1-aiplatform.googleapis.com")
    root, headers = api.place(target)
    assert root == "https://us-central1-aiplatform.googleapis.com/v1/projects/acme-ml/locations/us-central1"
    assert headers == {"authorization": "Bearer ya29.sim-token"}  # the routing headers are not sent
    wire = get_adapter("vertex").translate(target, Kind.chat, chat_request("hi", GEMINI))  # type: ignore[attr-defined]
    assert api.line("job_abc", Kind.chat, wire) == {"request": {**wire.json, "labels": {LABEL: "job_abc"}}}
    assert api.model_name("models/" + GEMINI) == f"publishers/google/models/{GEMINI}"
    claude, ctarget = setup("vertex-anthropic", "https://us-east5-aiplatform.googleapis.com")
    cwire = get_adapter("vertex-anthropic").translate(ctarget, Kind.chat, chat_request("hi", CLAUDE))  # type: ignore[attr-defined]
    line = claude.line("job_abc", Kind.chat, cwire)
    assert line == {"custom_id": "job_abc", "request": cwire.json}
    assert line["request"]["anthropic_version"] == "vertex-2023-10-16" and "model" not in line["request"]
    assert claude.model_name(CLAUDE) == f"publishers/anthropic/models/{CLAUDE}"
    assert folder_of({"mmq_pack": "pack_1 2"}) == "mmq_pack_pack_1_2"
    place = GcsPlace.parse("gs://mmq-batches/tier/")
    assert place.uri("p", "input.jsonl") == "gs://mmq-batches/tier/p/input.jsonl"
    assert place.owns("gs://mmq-batches/tier/p/output/x") == "tier/p/output/x"
    for foreign in ("gs://other/tier/p", "gs://mmq-batches/tiers/p", "gs://mmq-batches/tier/../x", None):
        assert place.owns(foreign) is None
    with pytest.raises(ValueError):
        GcsPlace.parse("gs://mmq-batches/a//b")


@pytest.mark.parametrize(("provider", "model"), [("vertex", GEMINI), ("vertex-anthropic", CLAUDE)])
async def test_round_trip_parses_like_a_realtime_answer_and_cleans_the_bucket(serve, provider, model) -> None:
    base, app, client = await serve(batch_validate_s=0.3)
    api, target = setup(provider, base)
    requests = chats(2, model)
    requests["job-img"] = chat_request("what colour?", model, image=png_data_url((240, 200, 10)))
    batch = await api.create(
        client, target, Kind.chat, model, lines_for(api, target, requests), {"mmq_pack": "p-1"}
    )
    assert batch.id.isdigit() and batch.metadata == {"mmq_pack": "p-1"}
    assert batch.state in ("validating", "running") and batch.raw_status.startswith("JOB_STATE_")
    assert objects(app) == ["tier/mmq_pack_p-1/input.jsonl"]

    done = await ended(api, client, target, batch.id)
    assert (done.state, done.raw_status) == ("ended", "JOB_STATE_SUCCEEDED")
    assert (done.total, done.done, done.failed) == (3, 3, 0)
    assert str(done.handles["output_dir"]).startswith("gs://mmq-batches/tier/mmq_pack_p-1/output/")
    got = await results(api, client, target, done)
    assert sorted(got) == sorted(requests)
    adapter = get_adapter(provider)
    for job, line in got.items():
        answer = parsed(adapter, Kind.chat, requests[job], line)  # type: ignore[arg-type]
        assert answer.body is not None and answer.body["object"] == "chat.completion"
        assert answer.usage is not None and answer.usage["total_tokens"] > 0
    assert "dominant" in str(got["job-img"].body) or "colour" in str(got["job-img"].body)
    stats = app.state.stats
    assert stats.batches_created == {provider: 1}
    assert stats.batch_billed_ids == {job: 1 for job in requests}  # billed once each, under the job id
    assert objects(app) == []  # input and predictions deleted once harvested
    found = await api.find(client, target, "mmq_pack", "p-1")
    assert found is not None and found.id == batch.id
    assert await api.find(client, target, "mmq_pack", "p-2") is None


@pytest.mark.parametrize(("provider", "model"), [("vertex", GEMINI), ("vertex-anthropic", CLAUDE)])
async def test_partial_failures_are_classified(serve, provider, model) -> None:
    base, _, client = await serve(batch_fail_rate=0.3)
    api, target = setup(provider, base)
    requests = chats(10, model)
    lines = lines_for(api, target, requests)
    bogus = "bogusField" if provider == "vertex" else "bogus_field"  # refused by the realtime validation
    lines[9]["request"] = {**lines[9]["request"], bogus: 1}
    batch = await api.create(client, target, Kind.chat, model, lines, {"mmq_pack": "p-2"})
    done = await ended(api, client, target, batch.id)
    got = await results(api, client, target, done)
    assert sorted(got) == sorted(requests)
    bad = {job: line for job, line in got.items() if not line.ok}
    assert 3 <= len(bad) <= 4 and done.failed == len(bad)
    for line in bad.values():
        if line.retryable:  # the injected failures
            assert (line.error_code, line.status_code) == ("INTERNAL", 500), line
        else:
            assert line.status_code == 400 and bogus in (line.error_message or ""), line
    if "job-9" in bad:
        assert not bad["job-9"].retryable


async def test_cancel_mid_way_keeps_what_finished_and_the_rest_has_no_outcome(serve) -> None:
    base, app, client = await serve(batch_complete_s=20, batch_cancel_s=0.5)
    api, target = setup("vertex", base)
    requests = chats(10, GEMINI)
    batch = await api.create(
        client, target, Kind.chat, GEMINI, lines_for(api, target, requests), {"mmq_pack": "p-3"}
    )
    await wait_until(lambda: api.get(client, target, batch.id), lambda b: (b.done or 0) >= 1)
    cancelling = await api.cancel(client, target, batch.id)
    assert (cancelling.state, cancelling.raw_status) in (
        ("cancelling", "JOB_STATE_CANCELLING"),
        ("ended", "JOB_STATE_CANCELLED"),
    )
    done = await ended(api, client, target, batch.id)
    assert (done.state, done.raw_status) == ("ended", "JOB_STATE_CANCELLED")
    got = await results(api, client, target, done)
    assert got and all(line.ok for line in got.values()) and len(got) < 10  # the unrun lines: no outcome
    assert len(got) == done.done and app.state.stats.batch_cancels == {"vertex": 1}
    assert (await api.cancel(client, target, batch.id)).state == "ended"  # a 400 for an ended job


async def test_expired_is_terminal_and_its_unrun_lines_have_no_outcome(serve) -> None:
    base, _, client = await serve(batch_complete_s=10, batch_expire_s=2)
    api, target = setup("vertex-anthropic", base)
    batch = await api.create(
        client, target, Kind.chat, CLAUDE, lines_for(api, target, chats(8, CLAUDE)), {"mmq_pack": "p-4"}
    )
    done = await ended(api, client, target, batch.id)
    assert (done.state, done.raw_status) == ("ended", "JOB_STATE_EXPIRED")
    got = await results(api, client, target, done)
    assert len(got) < 8 and all(line.ok for line in got.values())


async def test_a_create_run_again_after_a_crash_is_found_and_reuses_its_input_object(serve) -> None:
    base, app, client = await serve(batch_complete_s=5)
    api, target = setup("vertex", base)
    lines = lines_for(api, target, chats(2, GEMINI))
    other = await api.create(client, target, Kind.chat, GEMINI, lines, {"mmq_pack": "p-other"})
    made = await api.create(client, target, Kind.chat, GEMINI, lines, {"mmq_pack": "p-5"})
    found = await api.find(client, target, "mmq_pack", "p-5")
    assert found is not None and found.id == made.id != other.id
    # the same pack's input is the same object: an upload re-run after a crash overwrites it
    await GcsClient(base).upload(client, "t", "mmq-batches", "tier/mmq_pack_p-5/input.jsonl", b"{}\n")
    assert objects(app).count("tier/mmq_pack_p-5/input.jsonl") == 1


async def test_refusals_failed_jobs_and_the_claude_job_quota(serve) -> None:
    base, _, client = await serve(batch_max_requests=2, batch_complete_s=30)
    api, target = setup("vertex", base)
    failed = await api.create(
        client, target, Kind.chat, GEMINI, lines_for(api, target, chats(3, GEMINI)), {"mmq_pack": "p-6"}
    )
    failed = await ended(api, client, target, failed.id)
    assert (failed.state, failed.raw_status) == ("failed", "JOB_STATE_FAILED") and "at most 2" in str(
        failed.error
    )
    with pytest.raises(ProviderError) as refused:
        await api.get(client, target, "12345")
    assert refused.value.status == 404 and not refused.value.retryable
    with pytest.raises(ProviderError, match="not a batch prediction job id"):
        await api.get(client, target, "../x")
    claude, ctarget = setup("vertex-anthropic", base)
    lines = lines_for(claude, ctarget, chats(1, CLAUDE))
    for i in range(4):  # Vertex's default: 4 Claude batch jobs at a time per project
        await claude.create(client, ctarget, Kind.chat, CLAUDE, lines, {"mmq_pack": f"c-{i}"})
    with pytest.raises(ProviderError) as busy:
        await claude.create(client, ctarget, Kind.chat, CLAUDE, lines, {"mmq_pack": "c-4"})
    assert busy.value.status == 429 and busy.value.retryable
    unauthenticated = Target(name="vx", provider="vertex", base_url=base, headers=dict(PLACE))
    with pytest.raises(ProviderError) as no_token:
        await api.get(client, unauthenticated, failed.id)
    assert no_token.value.status == 401


async def test_an_output_directory_outside_the_configured_bucket_is_refused() -> None:
    job = {
        "name": "projects/acme-ml/locations/us-central1/batchPredictionJobs/42",
        "state": "JOB_STATE_SUCCEEDED",
        "outputInfo": {"gcsOutputDirectory": "gs://someone-else/predictions"},
    }
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, json=job)

    api, target = setup("vertex", "http://sim")
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    with pytest.raises(ProviderError, match="outside gs://mmq-batches/tier"):
        await results(api, client, target, ProviderBatch("42", "ended", "JOB_STATE_SUCCEEDED"))
    assert sent == [
        "http://sim/v1/projects/acme-ml/locations/us-central1/batchPredictionJobs/42"
    ]  # no GCS call
    await client.aclose()


def test_states_and_prediction_lines() -> None:
    api = VertexGeminiBatches(GCS_URI)
    for state, mapped in (
        ("JOB_STATE_QUEUED", "validating"),
        ("JOB_STATE_PENDING", "validating"),
        ("JOB_STATE_RUNNING", "running"),
        ("JOB_STATE_UPDATING", "running"),
        ("JOB_STATE_PAUSED", "running"),
        ("JOB_STATE_CANCELLING", "cancelling"),
        ("JOB_STATE_SUCCEEDED", "ended"),
        ("JOB_STATE_PARTIALLY_SUCCEEDED", "ended"),
        ("JOB_STATE_CANCELLED", "ended"),
        ("JOB_STATE_EXPIRED", "ended"),
        ("JOB_STATE_FAILED", "failed"),
        ("JOB_STATE_SOMETHING_NEW", "running"),
    ):
        assert (
            api.batch({"name": "projects/p/locations/l/batchPredictionJobs/7", "state": state}).state
            == mapped
        )
    echoed = {"request": {"contents": [], "labels": {LABEL: "job_a"}}}
    assert gemini_result({**echoed, "response": {"candidates": []}, "status": ""}).ok  # type: ignore[union-attr]
    assert gemini_result({"request": {"contents": []}, "response": {}}) is None  # not a line mmq wrote
    quota = gemini_result({**echoed, "status": "Too Many Requests: RESOURCE_EXHAUSTED"})
    assert quota is not None and (quota.error_code, quota.status_code, quota.retryable) == (
        "RESOURCE_EXHAUSTED",
        429,
        True,
    )
    bad = error_line(
        "j", 'Bad Request: {"error": {"code": 400, "message": "no", "status": "INVALID_ARGUMENT"}}'
    )
    assert (bad.error_code, bad.status_code, bad.error_message, bad.retryable) == (
        "INVALID_ARGUMENT",
        400,
        "no",
        False,
    )
    assert error_line("j", "something odd").retryable  # unreadable: a realtime call decides
    overloaded = claude_result(
        {
            "custom_id": "j",
            "response": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
            "status": "x",
        }
    )
    assert overloaded is not None and (overloaded.error_code, overloaded.retryable) == (
        "overloaded_error",
        True,
    )
    message = {"type": "message", "content": [], "usage": {"input_tokens": 1, "output_tokens": 1}}
    assert claude_result({"custom_id": "j", "response": message, "status": ""}).ok  # type: ignore[union-attr]
    assert claude_result({"response": message}) is None
