"""The Anthropic Message Batches client against the in-process simulator: lines from the realtime
adapter's translation, create → poll → results read by the realtime adapter's parse."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mmq.errors import ProviderError
from mmq.request_models import Kind
from tests.worker.batch_tier.conftest import FAST
from tests.worker.batch_tier.helpers import chat_request, ended, parsed, png_data_url, results, wait_until
from worker.batch_tier.apis import native_for
from worker.batch_tier.apis.anthropic import AnthropicBatches, created_at, line_result
from worker.batch_tier.protocol import ProviderBatch
from worker.providers.anthropic import AnthropicAdapter
from worker.providers.base import Target

TARGET = Target(name="claude", provider="anthropic", base_url="http://sim", api_key="sk-ant-test")
ADAPTER = AnthropicAdapter()
API = AnthropicBatches()
MODEL = "claude-sonnet-4-5"


def chats(n: int, model: str = MODEL, prefix: str = "job") -> dict[str, dict[str, Any]]:
    return {f"{prefix}-{i}": chat_request(f"line {i}", model) for i in range(n)}


def lines_for(requests: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        API.line(job, Kind.chat, ADAPTER.translate(TARGET, Kind.chat, req)) for job, req in requests.items()
    ]


def inside(app: object, batch_id: str) -> Any:
    return app.state.sim.batches.batches[batch_id]  # type: ignore[attr-defined]


def test_registry_and_line_shape() -> None:
    assert isinstance(native_for("anthropic"), AnthropicBatches)
    request = chat_request("hi", MODEL)
    wire = ADAPTER.translate(TARGET, Kind.chat, request)
    assert API.line("job-1", Kind.chat, wire) == {"custom_id": "job-1", "params": wire.json}
    url, headers = API.place(TARGET)
    assert url == "http://sim/v1/messages/batches"
    assert headers == {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}
    assert API.place(Target(name="c", provider="anthropic", base_url="http://sim/v1"))[0] == url


async def test_round_trip_with_mixed_models_parses_like_a_realtime_answer(make_sim) -> None:
    client, app = make_sim(**FAST)
    requests = {**chats(2), **chats(1, model="claude-haiku-4-5", prefix="haiku")}
    requests["job-img"] = chat_request("what colour?", MODEL, image=png_data_url((30, 160, 40)))
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(requests), {"mmq_pack": "p-1"})
    assert batch.id.startswith("msgbatch_") and batch.state == "running" and batch.raw_status == "in_progress"
    assert batch.total == 4 and batch.done is None and batch.metadata == {}

    done = await ended(API, client, TARGET, batch.id)
    assert (done.state, done.raw_status) == ("ended", "ended")
    assert (done.total, done.done, done.failed) == (4, 4, 0)
    got = await results(API, client, TARGET, done)
    assert sorted(got) == sorted(requests)
    for job, line in got.items():
        assert line.ok and not line.retryable
        assert line.body["usage"]["service_tier"] == "batch"
        answer = parsed(ADAPTER, Kind.chat, requests[job], line)
        assert answer.body is not None and answer.body["object"] == "chat.completion"
        assert answer.usage is not None and answer.usage["total_tokens"] > 0
    colour = parsed(ADAPTER, Kind.chat, requests["job-img"], got["job-img"]).body["choices"][0]  # type: ignore[index]
    assert "green" in colour["message"]["content"]
    assert app.state.stats.batch_lines_billed == {"anthropic": 4}  # type: ignore[attr-defined]


async def test_partial_failures_are_classified(make_sim) -> None:
    client, _ = make_sim(**FAST, batch_fail_rate=0.3)
    requests = chats(10)
    lines = lines_for(requests)
    lines[9]["params"] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}  # no max_tokens
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines, {})
    done = await ended(API, client, TARGET, batch.id)
    got = await results(API, client, TARGET, done)
    assert sorted(got) == sorted(requests)
    bad = [line for line in got.values() if not line.ok]
    assert 3 <= len(bad) <= 4 and done.failed == len(bad)
    for line in bad:
        assert line.error_code in ("api_error", "invalid_request_error"), line
        assert line.retryable is (line.error_code == "api_error")
        assert line.status_code == (500 if line.retryable else 400) and line.error_message
    if got["job-9"].error_code == "invalid_request_error":
        assert "max_tokens" in (got["job-9"].error_message or "")


async def test_cancel_mid_way_keeps_what_finished_and_the_rest_may_run_again(make_sim) -> None:
    client, app = make_sim(batch_validate_s=0, batch_complete_s=20, batch_cancel_s=0)
    requests = chats(10)
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(requests), {})
    # Anthropic shows no progress before the end: watch the simulator's own counts
    await wait_until(lambda: _counts(app, batch.id), lambda c: c["succeeded"] >= 1)
    cancelling = await API.cancel(client, TARGET, batch.id)
    assert cancelling.state in ("cancelling", "ended")
    done = await ended(API, client, TARGET, batch.id)
    got = await results(API, client, TARGET, done)
    ok = {job for job, line in got.items() if line.ok}
    unrun = {job for job, line in got.items() if not line.ok}
    assert ok and unrun and ok | unrun == set(requests)
    assert all(got[job].retryable and got[job].error_code == "canceled" for job in unrun)
    assert (done.done, done.failed) == (len(ok), len(unrun))
    assert (await API.cancel(client, TARGET, batch.id)).state == "ended"  # an ended batch: unchanged


async def _counts(app: object, batch_id: str) -> dict[str, int]:
    return inside(app, batch_id).counts()


async def test_expired_lines_may_run_again(make_sim) -> None:
    client, _ = make_sim(batch_validate_s=0, batch_complete_s=10, batch_expire_s=2)
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(chats(8)), {})
    got = await results(API, client, TARGET, await ended(API, client, TARGET, batch.id))
    unrun = [line for line in got.values() if not line.ok]
    assert len(got) == 8 and unrun and all(line.retryable and line.error_code == "expired" for line in unrun)


async def test_find_has_nothing_to_match_and_listed_pages_newest_first(make_sim, monkeypatch) -> None:
    from worker.batch_tier.apis import anthropic as anthropic_api

    monkeypatch.setattr(anthropic_api, "PAGE", 2)
    client, _ = make_sim(**FAST)
    made = [await API.create(client, TARGET, Kind.chat, MODEL, lines_for(chats(1)), {}) for _ in range(3)]
    assert await API.find(client, TARGET, "mmq_pack", "p-1") is None  # Message Batches carry no metadata
    listed = [batch async for batch in API.listed(client, TARGET)]
    assert [b.id for b in listed] == [b.id for b in reversed(made)]
    assert all(created_at(b) is not None for b in listed)


async def test_a_batch_created_before_a_crash_is_found_by_its_size_and_time(make_sim) -> None:
    import time

    client, _ = make_sim(**FAST)
    sent = time.time()
    three = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(chats(3)), {})
    await API.create(client, TARGET, Kind.chat, MODEL, lines_for(chats(2, prefix="other")), {})
    found = await API.find_by_shape(client, TARGET, 3, sent, frozenset())
    assert found is not None and found.id == three.id  # the one batch of three lines made then
    assert await API.find_by_shape(client, TARGET, 3, sent, frozenset({three.id})) is None  # another's
    assert await API.find_by_shape(client, TARGET, 3, sent - 3600, frozenset()) is None  # made later
    assert await API.find_by_shape(client, TARGET, 4, sent, frozenset()) is None  # no such size
    # two batches of the pack's size made in the same seconds: adopting either could answer one pack's
    # jobs from another pack's batch, so neither is adopted
    await API.create(client, TARGET, Kind.chat, MODEL, lines_for(chats(3, prefix="twin")), {})
    assert await API.find_by_shape(client, TARGET, 3, sent, frozenset()) is None


async def test_refusals_and_a_foreign_results_url() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path.endswith("/batches"):
            return httpx.Response(
                529, json={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
            )
        return httpx.Response(
            400, json={"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}
        )

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    with pytest.raises(ProviderError) as busy:
        await API.create(client, TARGET, Kind.chat, MODEL, [{"custom_id": "a", "params": {}}], {})
    assert (
        busy.value.retryable and busy.value.code == "overloaded_error" and busy.value.provider == "anthropic"
    )
    with pytest.raises(ProviderError) as refused:
        await API.get(client, TARGET, "msgbatch_1")
    assert not refused.value.retryable and refused.value.status == 400
    assert all(r.headers["x-api-key"] == "sk-ant-test" for r in sent)
    count = len(sent)
    for foreign in (
        "http://evil.example/v1/messages/batches/msgbatch_1/results",
        "https://sim/v1/messages/batches/msgbatch_1/results",
        "http://sim:8080/v1/messages/batches/msgbatch_1/results",
        "http://user@sim/v1/messages/batches/msgbatch_1/results",
    ):
        ended_batch = ProviderBatch("msgbatch_1", "ended", "ended", handles={"results_url": foreign})
        with pytest.raises(ProviderError, match="not on the target's base URL"):
            await results(API, client, TARGET, ended_batch)
    assert len(sent) == count  # nothing was sent to any of them
    await client.aclose()


def test_line_results() -> None:
    ok = line_result({"custom_id": "a", "result": {"type": "succeeded", "message": {"content": []}}})
    assert ok is not None and ok.ok and ok.body == {"content": []}
    for error_type, retryable in (
        ("invalid_request_error", False),
        ("api_error", True),
        ("overloaded_error", True),
        ("permission_error", False),
    ):
        err = {"type": "error", "error": {"type": error_type, "message": "m"}, "request_id": "r"}
        got = line_result({"custom_id": "b", "result": {"type": "errored", "error": err}})
        assert got is not None and got.retryable is retryable and got.error_code == error_type
    for kind in ("canceled", "expired"):
        got = line_result({"custom_id": "c", "result": {"type": kind}})
        assert got is not None and got.retryable and got.error_code == kind
    assert line_result({"result": {"type": "succeeded"}}) is None
