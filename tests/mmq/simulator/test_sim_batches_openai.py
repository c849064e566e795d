"""OpenAI Files + Batches on the simulator, driven by the official `openai` SDK (strict response
validation: every field the SDK's models declare must come back in the right type)."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError
from openai.types import Batch

from tests.mmq.simulator.batch_helpers import (
    chat_body,
    chat_lines,
    jsonl,
    parse_jsonl,
    png_data_url,
    wait_until,
)

TERMINAL = {"completed", "failed", "expired", "cancelled"}
FAST = {"batch_validate_s": 0, "batch_complete_s": 0.3, "batch_finalize_s": 0.05}
# validating lasts long enough for the create call to see it, even on a busy machine
SEEN_VALIDATING = {**FAST, "batch_validate_s": 0.5}
MakeOpenAI = Callable[..., tuple[AsyncOpenAI, httpx.AsyncClient]]


@pytest.fixture
async def make_openai(make_sim) -> AsyncIterator[MakeOpenAI]:
    """make_openai(**knobs) -> (an AsyncOpenAI client on a fresh simulator, the raw simulator client)."""
    clients: list[AsyncOpenAI] = []

    def make(**knobs: object) -> tuple[AsyncOpenAI, httpx.AsyncClient]:
        sim = make_sim(**knobs)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://sim")
        client = AsyncOpenAI(
            base_url="http://sim/v1", api_key="sk-test", http_client=http, _strict_response_validation=True
        )
        clients.append(client)
        return client, sim

    yield make
    for client in clients:
        await client.close()


async def submit(client: AsyncOpenAI, lines: list[dict[str, object]], **create: object) -> Batch:
    file = await client.files.create(
        file=("in.jsonl", io.BytesIO(jsonl(lines)), "application/jsonl"), purpose="batch"
    )
    endpoint = str(lines[0]["url"]) if lines else "/v1/chat/completions"
    return await client.batches.create(
        input_file_id=file.id,
        endpoint=endpoint,
        completion_window="24h",
        **create,  # type: ignore[arg-type]
    )


async def until(client: AsyncOpenAI, batch_id: str, done: Callable[[Batch], bool]) -> Batch:
    return await wait_until(lambda: client.batches.retrieve(batch_id), done)


async def lines_of(client: AsyncOpenAI, file_id: str | None) -> list[dict[str, object]]:
    if file_id is None:
        return []
    return parse_jsonl((await client.files.content(file_id)).text)


async def test_round_trip_answers_each_line_like_the_realtime_endpoint(make_openai) -> None:
    client, sim = make_openai(**SEEN_VALIDATING)
    image = png_data_url((20, 40, 200))
    lines = chat_lines(4)
    lines[1]["body"] = chat_body("what colour?", image=image)
    batch = await submit(client, lines, metadata={"mmq_batch": "b-1"})
    assert batch.status == "validating" and batch.object == "batch"
    assert batch.request_counts is not None and batch.request_counts.total == 0
    done = await until(client, batch.id, lambda b: b.status in TERMINAL)

    assert done.status == "completed" and done.metadata == {"mmq_batch": "b-1"}
    assert done.model == "gpt-4o-mini" and done.error_file_id is None
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 4, 0)
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    out = await lines_of(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in out) == [f"job-{i}" for i in range(4)]
    by_id = {line["custom_id"]: line for line in out}
    image_line = by_id["job-1"]
    assert image_line["error"] is None and image_line["response"]["status_code"] == 200
    assert str(image_line["id"]).startswith("batch_req_")

    # the same body sent realtime is answered and billed identically (image tokens included)
    realtime = (await sim.post("/chat/completions", json=lines[1]["body"])).json()
    answer = image_line["response"]["body"]
    assert answer["usage"] == realtime["usage"]
    assert answer["choices"][0]["message"]["content"] == realtime["choices"][0]["message"]["content"]
    assert "mostly blue" in answer["choices"][0]["message"]["content"]
    usage = done.usage
    assert usage is not None
    assert usage.input_tokens == sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in out)

    stats = sim.app.state.stats
    assert stats.batches_created == {"openai": 1}
    assert stats.batch_lines_billed == {"openai": 4}
    assert set(stats.batch_billed_ids.values()) == {1}


async def test_image_generation_lines_carry_png_results(make_openai) -> None:
    client, _ = make_openai(**FAST)
    lines = [
        {
            "custom_id": "art-1",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"model": "gpt-image-1", "prompt": "a teapot", "size": "64x64"},
        },
    ]
    batch = await submit(client, lines)
    done = await until(client, batch.id, lambda b: b.status in TERMINAL)
    (line,) = await lines_of(client, done.output_file_id)
    png = base64.b64decode(line["response"]["body"]["data"][0]["b64_json"])
    assert png.startswith(b"\x89PNG")


async def test_partial_failures_go_to_the_error_file(make_openai) -> None:
    client, sim = make_openai(**FAST, batch_fail_rate=0.3)
    lines = chat_lines(10)
    lines[9]["body"] = {"model": "gpt-4o-mini", "messages": []}  # refused by the realtime handler: a 400
    batch = await submit(client, lines)
    done = await until(client, batch.id, lambda b: b.status in TERMINAL)
    assert done.status == "completed"
    ok, bad = await lines_of(client, done.output_file_id), await lines_of(client, done.error_file_id)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (len(ok), len(bad))
    assert len(ok) + len(bad) == 10 and 3 <= len(bad) <= 4  # three injected, plus job-9 unless it was one
    statuses = {line["response"]["status_code"] for line in bad}
    assert statuses <= {400, 500} and 500 in statuses
    if "job-9" not in {line["custom_id"] for line in bad if line["response"]["status_code"] == 500}:
        refused = next(line for line in bad if line["custom_id"] == "job-9")
        assert refused["response"]["body"]["error"]["code"] == "empty_array"
    assert sim.app.state.stats.batch_lines_billed == {"openai": len(ok)}


async def test_cancel_mid_way_keeps_what_finished(make_openai) -> None:
    client, sim = make_openai(batch_validate_s=0, batch_complete_s=20, batch_cancel_s=0)
    batch = await submit(client, chat_lines(10))
    running = await until(
        client, batch.id, lambda b: b.request_counts is not None and b.request_counts.completed >= 1
    )
    assert running.status == "in_progress"
    cancelled = await client.batches.cancel(batch.id)
    assert cancelled.cancelling_at is not None
    done = await until(client, batch.id, lambda b: b.status in TERMINAL)
    assert done.status == "cancelled" and done.cancelled_at is not None
    ok, bad = await lines_of(client, done.output_file_id), await lines_of(client, done.error_file_id)
    assert ok and bad and len(ok) + len(bad) == 10
    assert {line["error"]["code"] for line in bad} == {"batch_cancelled"}
    assert all(line["response"] is None for line in bad)
    stats = sim.app.state.stats
    assert stats.batch_cancels == {"openai": 1}
    assert stats.batch_lines_billed == {"openai": len(ok)}


async def test_cancel_is_slow_and_due_lines_still_finish(make_openai) -> None:
    client, sim = make_openai(batch_validate_s=0, batch_complete_s=20, batch_cancel_s=5)
    batch = await submit(client, chat_lines(10))
    await until(client, batch.id, lambda b: b.request_counts is not None and b.request_counts.completed >= 1)
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert (await client.batches.cancel(batch.id)).status == "cancelling"  # again: a no-op
    inside = sim.app.state.sim.batches.batches[batch.id]
    due_at_cancel = sum(inside.due(rank) <= inside.cancel_at for rank in range(10))
    done = await until(client, batch.id, lambda b: b.status in TERMINAL)
    assert done.status == "cancelled" and done.request_counts is not None
    assert done.request_counts.completed > due_at_cancel  # lines due while cancelling still finished
    assert done.request_counts.completed < 10


async def test_cancelling_an_ended_batch_is_refused(make_openai) -> None:
    client, _ = make_openai(**FAST)
    batch = await submit(client, chat_lines(1))
    await until(client, batch.id, lambda b: b.status in TERMINAL)
    with pytest.raises(BadRequestError, match="Cannot cancel a batch with status 'completed'"):
        await client.batches.cancel(batch.id)


async def test_expiry_returns_finished_lines_and_expires_the_rest(make_openai) -> None:
    client, sim = make_openai(batch_validate_s=0, batch_complete_s=10, batch_expire_s=3)
    batch = await submit(client, chat_lines(10))
    done = await until(client, batch.id, lambda b: b.status in TERMINAL)
    assert done.status == "expired" and done.expired_at is not None
    assert done.expires_at == done.created_at + 3
    ok, bad = await lines_of(client, done.output_file_id), await lines_of(client, done.error_file_id)
    assert ok and bad and len(ok) + len(bad) == 10
    assert {line["error"]["code"] for line in bad} == {"batch_expired"}
    assert sim.app.state.stats.batch_lines_billed == {"openai": len(ok)}  # finished lines are billed


async def test_a_stalled_batch_runs_until_cancelled(make_openai) -> None:
    client, sim = make_openai(batch_validate_s=0, batch_stall=True, batch_cancel_s=0)
    batch = await submit(client, chat_lines(3))
    running = await until(client, batch.id, lambda b: b.status == "in_progress")
    assert running.request_counts is not None and running.request_counts.completed == 0
    await client.batches.cancel(batch.id)
    done = await until(client, batch.id, lambda b: b.status in TERMINAL)
    assert done.status == "cancelled" and done.output_file_id is None
    assert len(await lines_of(client, done.error_file_id)) == 3
    assert sim.app.state.stats.batch_lines_billed == {}


async def test_batches_are_found_again_by_metadata(make_openai) -> None:
    client, _ = make_openai(**FAST)
    made = [
        await submit(client, chat_lines(1, prefix=f"b{i}"), metadata={"mmq_batch": f"b-{i}"})
        for i in range(5)
    ]
    page = await client.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more and page.data[0].id == made[-1].id  # newest first
    seen = [b async for b in client.batches.list(limit=2)]  # the SDK pages with after=<last id>
    assert [b.id for b in seen] == [b.id for b in reversed(made)]
    found = [b for b in seen if b.metadata and b.metadata.get("mmq_batch") == "b-3"]
    assert [b.id for b in found] == [made[3].id]


@pytest.mark.parametrize(
    ("lines", "knobs", "code", "line_no"),
    [
        ([*chat_lines(1), *chat_lines(1, model="gpt-4o", prefix="other")], {}, "model_mismatch", 2),
        ([*chat_lines(2), chat_lines(1)[0]], {}, "duplicate_custom_id", 3),
        ([*chat_lines(1), {**chat_lines(1, prefix="e")[0], "url": "/v1/embeddings"}], {}, "url_mismatch", 2),
        (chat_lines(3), {"batch_max_requests": 2}, "too_many_tasks", None),
        (chat_lines(3), {"batch_max_bytes": 100}, "file_too_large", None),
    ],
)
async def test_a_bad_input_file_fails_the_batch(make_openai, lines, knobs, code, line_no) -> None:
    client, sim = make_openai(**SEEN_VALIDATING, **knobs)
    batch = await submit(client, lines)
    assert batch.status == "validating"
    done = await until(client, batch.id, lambda b: b.status in TERMINAL)
    assert done.status == "failed" and done.failed_at is not None and done.errors is not None
    error = done.errors.data[0]  # type: ignore[index]
    assert (error.code, error.line) == (code, line_no)
    assert done.output_file_id is None and sim.app.state.stats.batch_lines_billed == {}


async def test_invalid_json_and_empty_files_fail(make_openai) -> None:
    client, _ = make_openai(**FAST)
    for data, code in ((b'{"custom_id": "a"\n', "invalid_json_line"), (b"\n\n", "empty_file")):
        file = await client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        batch = await client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = await until(client, batch.id, lambda b: b.status in TERMINAL)
        assert done.errors is not None and done.errors.data[0].code == code  # type: ignore[index]


async def test_create_call_is_checked(make_openai) -> None:
    client, sim = make_openai(**FAST)
    file = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(chat_lines(1)))), purpose="batch")
    base = {"input_file_id": file.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    for bad, param in (
        ({"completion_window": "48h"}, "completion_window"),
        ({"endpoint": "/v1/audio/speech"}, "endpoint"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ):
        resp = await sim.post("/batches", json={**base, **bad})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == param
    with pytest.raises(NotFoundError):
        await client.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    resp = await sim.post("/batches", json=base, headers={"Authorization": ""})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"


async def test_files_api(make_openai) -> None:
    client, sim = make_openai(**FAST)
    data = jsonl(chat_lines(2))
    file = await client.files.create(
        file=("in.jsonl", io.BytesIO(data), "application/jsonl"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert (file.bytes, file.filename, file.purpose) == (len(data), "in.jsonl", "batch")
    assert file.expires_at == file.created_at + 3600
    assert (await client.files.retrieve(file.id)).id == file.id
    assert (await client.files.content(file.id)).content == data
    assert [f.id async for f in client.files.list(purpose="batch")] == [file.id]
    assert (await client.files.delete(file.id)).deleted
    with pytest.raises(NotFoundError):
        await client.files.retrieve(file.id)
    resp = await sim.post("/files", data={"purpose": "fine-tune"}, files={"file": ("x.jsonl", b"{}")})
    assert resp.status_code == 400
