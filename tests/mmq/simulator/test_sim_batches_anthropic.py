"""Anthropic Message Batches on the simulator (the `anthropic` SDK is not in the venv: raw HTTP, with the
headers and shapes its batches resource uses)."""

from __future__ import annotations

import httpx
import pytest

from tests.mmq.simulator.batch_helpers import parse_jsonl, png_data_url, wait_until

HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
FAST = {"batch_validate_s": 0, "batch_complete_s": 0.3}


def client(sim: httpx.AsyncClient, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim", headers={**HEADERS, **headers}
    )


def params(text: str, model: str = "claude-sonnet-4-5", image: str | None = None) -> dict[str, object]:
    content: list[dict[str, object]] = [{"type": "text", "text": text}]
    if image:
        media, _, data = image.removeprefix("data:").partition(";base64,")
        content.insert(0, {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
    return {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": content}]}


def requests(n: int, prefix: str = "job") -> list[dict[str, object]]:
    return [{"custom_id": f"{prefix}-{i}", "params": params(f"line {i}")} for i in range(n)]


async def create(api: httpx.AsyncClient, reqs: list[dict[str, object]]) -> dict[str, object]:
    resp = await api.post("/v1/messages/batches", json={"requests": reqs})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def ended(api: httpx.AsyncClient, batch_id: object) -> dict[str, object]:
    async def get() -> dict[str, object]:
        return (await api.get(f"/v1/messages/batches/{batch_id}")).json()

    return await wait_until(get, lambda b: b["processing_status"] == "ended")


async def results(api: httpx.AsyncClient, batch: dict[str, object]) -> dict[str, dict[str, object]]:
    url = str(batch["results_url"])
    assert url.startswith("http://sim/v1/messages/batches/") and url.endswith("/results")
    resp = await api.get(url, headers={"accept": "application/binary"})
    assert resp.status_code == 200
    return {line["custom_id"]: line["result"] for line in parse_jsonl(resp.text)}


async def test_round_trip_mixed_models_and_errored_params(make_sim) -> None:
    sim = make_sim(**{**FAST, "batch_validate_s": 0.5})  # long enough for create to see it in progress
    api = client(sim)
    reqs = requests(3)
    reqs[1]["params"] = params("what colour?", "claude-haiku-4-5", image=png_data_url((30, 160, 40)))
    reqs[2]["params"] = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
    }  # no max_tokens
    batch = await create(api, reqs)
    assert batch["type"] == "message_batch" and str(batch["id"]).startswith("msgbatch_")
    assert batch["processing_status"] == "in_progress" and batch["results_url"] is None
    assert batch["request_counts"] == {
        "processing": 3,
        "succeeded": 0,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert str(batch["created_at"]).endswith("Z") and batch["expires_at"] > batch["created_at"]

    done = await ended(api, batch["id"])
    assert done["request_counts"] == {
        "processing": 0,
        "succeeded": 2,
        "errored": 1,
        "canceled": 0,
        "expired": 0,
    }
    assert done["ended_at"] is not None
    by_id = await results(api, done)
    image = by_id["job-1"]
    assert image["type"] == "succeeded" and image["message"]["model"] == "claude-haiku-4-5"
    assert image["message"]["usage"]["service_tier"] == "batch"
    realtime = (await api.post("/v1/messages", json=reqs[1]["params"])).json()
    assert image["message"]["content"] == realtime["content"]
    assert {**image["message"]["usage"], "service_tier": "standard"} == realtime["usage"]  # same tokens
    errored = by_id["job-2"]
    assert errored["type"] == "errored" and errored["error"]["type"] == "error"
    assert errored["error"]["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in errored["error"]["error"]["message"] and errored["error"]["request_id"]
    assert sim.app.state.stats.batch_lines_billed == {"anthropic": 2}
    await api.aclose()


async def test_partial_failures(make_sim) -> None:
    sim = make_sim(**FAST, batch_fail_rate=0.5)
    api = client(sim)
    done = await ended(api, (await create(api, requests(6)))["id"])
    assert done["request_counts"]["errored"] == 3 and done["request_counts"]["succeeded"] == 3
    kinds = [
        r["error"]["error"]["type"] for r in (await results(api, done)).values() if r["type"] == "errored"
    ]
    assert kinds == ["api_error"] * 3
    await api.aclose()


async def test_cancel_mid_way(make_sim) -> None:
    sim = make_sim(batch_validate_s=0, batch_complete_s=20, batch_cancel_s=3)
    api = client(sim)
    batch = await create(api, requests(10))
    engine = sim.app.state.sim.batches
    # progress is invisible on Anthropic's wire until the end: watch the simulator's own batch
    await wait_until(lambda: engine.advance(engine.batches[batch["id"]]), lambda b: b.finished >= 1)
    cancelling = (await api.post(f"/v1/messages/batches/{batch['id']}/cancel")).json()
    assert cancelling["processing_status"] == "canceling" and cancelling["cancel_initiated_at"]
    assert cancelling["request_counts"]["processing"] == 10
    done = await ended(api, batch["id"])
    counts = done["request_counts"]
    assert (
        counts["succeeded"] >= 1
        and counts["canceled"] >= 1
        and counts["succeeded"] + counts["canceled"] == 10
    )
    assert {r["type"] for r in (await results(api, done)).values()} == {"succeeded", "canceled"}
    again = await api.post(f"/v1/messages/batches/{batch['id']}/cancel")  # ended: returned as it is
    assert again.status_code == 200 and again.json()["processing_status"] == "ended"
    assert sim.app.state.stats.batch_cancels == {"anthropic": 1}
    await api.aclose()


async def test_expiry_keeps_finished_requests(make_sim) -> None:
    sim = make_sim(batch_validate_s=0, batch_complete_s=10, batch_expire_s=3)
    api = client(sim)
    batch = await create(api, requests(10))
    done = await ended(api, batch["id"])
    counts = done["request_counts"]
    assert (
        counts["expired"] >= 1 and counts["succeeded"] >= 1 and counts["succeeded"] + counts["expired"] == 10
    )
    by_id = await results(api, done)
    assert sum(r["type"] == "expired" for r in by_id.values()) == counts["expired"]
    assert sim.app.state.stats.batch_lines_billed == {"anthropic": counts["succeeded"]}
    await api.aclose()


async def test_list_results_delete(make_sim) -> None:
    sim = make_sim(**FAST)
    api = client(sim)
    made = [await create(api, requests(1, prefix=f"b{i}")) for i in range(4)]
    first = (await api.get("/v1/messages/batches", params={"limit": 2})).json()
    assert [b["id"] for b in first["data"]] == [made[3]["id"], made[2]["id"]] and first["has_more"]
    assert first["first_id"] == made[3]["id"] and first["last_id"] == made[2]["id"]
    rest = (await api.get("/v1/messages/batches", params={"limit": 2, "after_id": first["last_id"]})).json()
    assert [b["id"] for b in rest["data"]] == [made[1]["id"], made[0]["id"]] and not rest["has_more"]
    newer = (await api.get("/v1/messages/batches", params={"before_id": made[1]["id"]})).json()
    assert [b["id"] for b in newer["data"]] == [made[3]["id"], made[2]["id"]]

    done = await ended(api, made[0]["id"])
    deleted = await api.delete(f"/v1/messages/batches/{done['id']}")
    assert deleted.json() == {"id": done["id"], "type": "message_batch_deleted"}
    gone = await api.get(f"/v1/messages/batches/{done['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found_error"
    await api.aclose()


async def test_results_before_the_end_are_refused(make_sim) -> None:
    sim = make_sim(batch_validate_s=0, batch_stall=True)
    api = client(sim)
    batch = await create(api, requests(2))
    resp = await api.get(f"/v1/messages/batches/{batch['id']}/results")
    assert resp.status_code == 400 and resp.json()["type"] == "error"
    assert (await api.delete(f"/v1/messages/batches/{batch['id']}")).status_code == 400
    await api.aclose()


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"requests": []}, 400, "at least 1"),
        ({"requests": [{"custom_id": "has space", "params": {}}]}, 400, "custom_id"),
        ({"requests": [{"custom_id": "x" * 65, "params": {}}]}, 400, "custom_id"),
        (
            {"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]},
            400,
            "duplicate",
        ),
        ({"requests": [{"custom_id": "a", "params": "no"}]}, 400, "params"),
        ({"requests": [{"custom_id": f"r{i}", "params": {}} for i in range(3)]}, 400, "at most 2"),
    ],
)
async def test_create_is_validated(make_sim, body, status, needle) -> None:
    api = client(make_sim(batch_max_requests=2))
    resp = await api.post("/v1/messages/batches", json=body)
    assert resp.status_code == status and resp.json()["error"]["type"] == "invalid_request_error"
    assert needle in resp.json()["error"]["message"]
    await api.aclose()


async def test_size_limit_and_auth(make_sim) -> None:
    sim = make_sim(batch_max_bytes=500)
    api = client(sim)
    big = {"requests": [{"custom_id": "a", "params": params("x" * 600)}]}
    resp = await api.post("/v1/messages/batches", json=big)
    assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"
    no_key = client(sim, **{"x-api-key": ""})
    resp = await no_key.post("/v1/messages/batches", json={"requests": requests(1)})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    no_version = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim", headers={"x-api-key": "k"}
    )
    resp = await no_version.get("/v1/messages/batches")
    assert resp.status_code == 400 and "anthropic-version" in resp.json()["error"]["message"]
    for c in (api, no_key, no_version):
        await c.aclose()
