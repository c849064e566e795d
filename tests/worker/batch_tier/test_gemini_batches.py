"""The Gemini batch mode client against the in-process simulator: inline requests from the realtime
adapter's translation, create → poll → results read by the realtime adapter's parse."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mmq.errors import ProviderError
from mmq.request_models import Kind
from tests.worker.batch_tier.conftest import FAST
from tests.worker.batch_tier.helpers import chat_request, ended, parsed, png_data_url, results, wait_until
from worker.batch_tier.apis import gemini as gemini_api
from worker.batch_tier.apis import native_for
from worker.batch_tier.apis.gemini import GeminiBatches, display_name, line_result, metadata_of
from worker.batch_tier.protocol import ProviderBatch
from worker.providers.base import Target
from worker.providers.gemini import GeminiAdapter

TARGET = Target(name="gem", provider="gemini", base_url="http://sim", api_key="AIza-test")
ADAPTER = GeminiAdapter()
API = GeminiBatches()
MODEL = "gemini-2.5-flash"


def chats(n: int, prefix: str = "job") -> dict[str, dict[str, Any]]:
    return {f"{prefix}-{i}": chat_request(f"line {i}", MODEL) for i in range(n)}


def lines_for(requests: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        API.line(job, Kind.chat, ADAPTER.translate(TARGET, Kind.chat, req)) for job, req in requests.items()
    ]


def test_registry_line_shape_and_place() -> None:
    assert isinstance(native_for("gemini"), GeminiBatches)
    assert not isinstance(native_for("vertex"), GeminiBatches)  # Vertex batch prediction: apis/vertex.py
    wire = ADAPTER.translate(TARGET, Kind.chat, chat_request("hi", MODEL))
    assert API.line("job-1", Kind.chat, wire) == {"key": "job-1", "request": wire.json}
    root, url, headers = API.place(TARGET, MODEL)
    assert root == "http://sim/v1beta"
    assert url == f"http://sim/v1beta/models/{MODEL}:batchGenerateContent"
    assert headers == {"x-goog-api-key": "AIza-test"}
    assert API.place(Target(name="g", provider="gemini", base_url="http://sim/v1beta/"))[0] == root
    assert metadata_of(display_name({"mmq_pack": "p 1&x", "t": "a"})) == {"mmq_pack": "p 1&x", "t": "a"}
    assert metadata_of("my own batch") == {} and metadata_of(None) == {}


async def test_round_trip_parses_like_a_realtime_answer(make_sim) -> None:
    client, app = make_sim(**{**FAST, "batch_validate_s": 0.5})
    requests = chats(2)
    requests["job-img"] = chat_request("what colour?", MODEL, image=png_data_url((240, 200, 10)))
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(requests), {"mmq_pack": "p-1"})
    assert batch.id.startswith("batches/") and batch.state == "validating"
    assert batch.raw_status == "BATCH_STATE_PENDING" and batch.metadata == {"mmq_pack": "p-1"}
    assert batch.handles["keys"] == list(requests)

    done = await ended(API, client, TARGET, batch.id)
    assert (done.state, done.raw_status) == ("ended", "BATCH_STATE_SUCCEEDED")
    assert (done.total, done.done, done.failed) == (3, 3, 0)
    got = await results(API, client, TARGET, done)  # a batch from `get`: mapped by the echoed keys
    assert list(got) == list(requests)
    for job, line in got.items():
        answer = parsed(ADAPTER, Kind.chat, requests[job], line)
        assert answer.body is not None and answer.body["object"] == "chat.completion"
        assert answer.usage is not None and answer.usage["total_tokens"] > 0
    assert app.state.stats.batch_billed_ids == {job: 1 for job in requests}  # type: ignore[attr-defined]


async def test_a_pack_past_the_inline_limit_goes_as_an_uploaded_file(make_sim, monkeypatch) -> None:
    monkeypatch.setattr(gemini_api, "MAX_INLINE_BYTES", 65 * 1024)  # (less 64 KB of room: 1 KB inline)
    client, app = make_sim(**{**FAST, "batch_fail_rate": 0.0})
    requests = chats(3)
    requests["job-img"] = chat_request("what colour?", MODEL, image=png_data_url((240, 200, 10), (400, 400)))
    lines = lines_for(requests)
    assert len(gemini_api._http.jsonl(lines)) > 1024
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines, {"mmq_pack": "p-file"})
    assert batch.metadata == {"mmq_pack": "p-file"} and not batch.handles.get("keys")  # keyed in the file
    done = await ended(API, client, TARGET, batch.id)
    assert done.state == "ended" and done.handles.get("responses_file", "").startswith("files/")
    got = await results(API, client, TARGET, done)
    assert sorted(got) == sorted(requests)
    for job, line in got.items():
        answer = parsed(ADAPTER, Kind.chat, requests[job], line)
        assert answer.usage is not None and answer.usage["total_tokens"] > 0
    assert app.state.stats.batch_billed_ids == {job: 1 for job in requests}  # type: ignore[attr-defined]


async def test_an_upload_session_off_the_targets_host_is_refused() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "sim", "the key went to another host"
        return httpx.Response(200, headers={"x-goog-upload-url": "https://elsewhere.example/upload?id=1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(ProviderError) as refused:
            await API._upload(client, TARGET, b"{}\n", {"mmq_pack": "p"})
    assert refused.value.code == "foreign_upload_url"


async def test_partial_failures_are_classified(make_sim) -> None:
    client, _ = make_sim(**FAST, batch_fail_rate=0.3)
    requests = chats(10)
    lines = lines_for(requests)
    lines[9]["request"] = {**lines[9]["request"], "bogusField": 1}  # Google refuses it: INVALID_ARGUMENT
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines, {"mmq_pack": "p-2"})
    done = await ended(API, client, TARGET, batch.id)
    got = await results(API, client, TARGET, done)
    assert sorted(got) == sorted(requests)
    bad = [line for line in got.values() if not line.ok]
    assert 3 <= len(bad) <= 4 and done.failed == len(bad)
    for line in bad:
        assert line.error_code in ("INTERNAL", "INVALID_ARGUMENT"), line
        assert line.retryable is (line.error_code == "INTERNAL")
        assert line.status_code == (500 if line.retryable else 400)
    if got["job-9"].error_code == "INVALID_ARGUMENT":
        assert "bogusField" in (got["job-9"].error_message or "")


async def test_cancel_mid_way_keeps_what_finished_and_the_rest_may_run_again(make_sim) -> None:
    client, _ = make_sim(batch_validate_s=0, batch_complete_s=20, batch_cancel_s=0.5)
    requests = chats(10)
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(requests), {"mmq_pack": "p-3"})
    await wait_until(lambda: API.get(client, TARGET, batch.id), lambda b: (b.done or 0) >= 1)
    cancelling = await API.cancel(client, TARGET, batch.id)
    assert cancelling.state in ("cancelling", "ended")  # RUNNING on the wire, cancelling to the engine
    done = await ended(API, client, TARGET, batch.id)
    assert (done.state, done.raw_status) == ("ended", "BATCH_STATE_CANCELLED")
    got = await results(API, client, TARGET, done)
    ok = {job for job, line in got.items() if line.ok}
    unrun = {job for job, line in got.items() if not line.ok}
    assert ok and unrun and ok | unrun == set(requests)
    assert all(got[job].retryable and got[job].error_code == "CANCELLED" for job in unrun)
    assert (await API.cancel(client, TARGET, batch.id)).state == "ended"


async def test_expired_is_terminal_and_its_unrun_lines_may_run_again(make_sim) -> None:
    client, _ = make_sim(batch_validate_s=0, batch_complete_s=10, batch_expire_s=2)
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(chats(8)), {"mmq_pack": "p-4"})
    done = await ended(API, client, TARGET, batch.id)
    assert (done.state, done.raw_status) == ("ended", "BATCH_STATE_EXPIRED")
    got = await results(API, client, TARGET, done)
    unrun = [line for line in got.values() if not line.ok]
    assert len(got) == 8 and unrun
    assert all(line.retryable and line.error_code == "DEADLINE_EXCEEDED" for line in unrun)


async def test_found_again_by_display_name_after_losing_the_id(make_sim, monkeypatch) -> None:
    monkeypatch.setattr(gemini_api, "PAGE", 2)
    client, _ = make_sim(**FAST)
    made = [
        await API.create(
            client, TARGET, Kind.chat, MODEL, lines_for(chats(1, f"b{i}")), {"mmq_pack": f"p-{i}"}
        )
        for i in range(5)
    ]
    found = await API.find(client, TARGET, "mmq_pack", "p-0")  # the oldest: on the last page
    assert found is not None and found.id == made[0].id and found.metadata == {"mmq_pack": "p-0"}
    assert await API.find(client, TARGET, "mmq_pack", "p-nope") is None
    # the found batch has no keys in its handles: its answers are mapped by the echoed metadata.key
    got = await results(API, client, TARGET, await ended(API, client, TARGET, found.id))
    assert list(got) == ["b0-0"] and got["b0-0"].ok


async def test_answers_without_the_key_echo_are_mapped_by_position() -> None:
    operation = {
        "name": "batches/abc",
        "metadata": {
            "state": "BATCH_STATE_SUCCEEDED",
            "output": {
                "inlinedResponses": {
                    "inlinedResponses": [
                        {"response": {"candidates": []}},
                        {"error": {"code": 3, "message": "bad"}},
                    ]
                }
            },
        },
        "done": True,
    }
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=operation)))
    with_keys = ProviderBatch("batches/abc", "ended", "BATCH_STATE_SUCCEEDED", handles={"keys": ["j1", "j2"]})
    got = await results(API, client, TARGET, with_keys)
    assert got["j1"].ok and not got["j2"].ok and got["j2"].error_code == "INVALID_ARGUMENT"
    without = ProviderBatch("batches/abc", "ended", "BATCH_STATE_SUCCEEDED")
    assert await results(API, client, TARGET, without) == {}  # no way to tell whose: no outcome
    await client.aclose()


async def test_states_refusals_and_failed_batches() -> None:
    def op(state: str, **more: Any) -> dict[str, Any]:
        return {"name": "batches/x", "metadata": {"state": state, "displayName": "mmq_pack=p"}, **more}

    for state, mapped in (
        ("BATCH_STATE_PENDING", "validating"),
        ("JOB_STATE_QUEUED", "validating"),
        ("BATCH_STATE_RUNNING", "running"),
        ("JOB_STATE_CANCELLING", "cancelling"),
        ("BATCH_STATE_SUCCEEDED", "ended"),
        ("JOB_STATE_CANCELLED", "ended"),
        ("BATCH_STATE_EXPIRED", "ended"),
        ("BATCH_STATE_UNSPECIFIED", "running"),
    ):
        assert API.batch(op(state)).state == mapped, state
    failed = API.batch(op("BATCH_STATE_FAILED", error={"code": 3, "message": "Line 2 is not JSON."}))
    assert (failed.state, failed.error, failed.metadata) == (
        "failed",
        "Line 2 is not JSON.",
        {"mmq_pack": "p"},
    )

    answers = iter(
        [
            httpx.Response(
                429, json={"error": {"code": 429, "message": "q", "status": "RESOURCE_EXHAUSTED"}}
            ),
            httpx.Response(
                400, json={"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}
            ),
        ]
    )
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return next(answers)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    line = {"key": "a", "request": {"contents": []}}
    with pytest.raises(ProviderError) as busy:
        await API.create(client, TARGET, Kind.chat, MODEL, [line], {"mmq_pack": "p"})
    assert busy.value.retryable and busy.value.status == 429
    with pytest.raises(ProviderError) as bad:
        await API.get(client, TARGET, "batches/x")
    assert not bad.value.retryable and bad.value.status == 400
    assert [str(r.url) for r in sent] == [
        f"http://sim/v1beta/models/{MODEL}:batchGenerateContent",
        "http://sim/v1beta/batches/x",
    ]
    assert all(r.headers["x-goog-api-key"] == "AIza-test" for r in sent)
    with pytest.raises(ProviderError, match="not a batch name"):
        await API.get(client, TARGET, "files/x")
    await client.aclose()


def test_line_results() -> None:
    assert line_result("a", {"response": {"candidates": []}}).ok
    for code, name, retryable in (
        (1, "CANCELLED", True),
        (4, "DEADLINE_EXCEEDED", True),
        (3, "INVALID_ARGUMENT", False),
        (13, "INTERNAL", True),
        (7, "PERMISSION_DENIED", False),
    ):
        got = line_result("b", {"error": {"code": code, "message": "m"}})
        assert (got.ok, got.error_code, got.retryable) == (False, name, retryable)
