"""The batch knobs: from the environment, at run time through /sim/batches, and the engine's own promises
(billing without polling, a line billed once, reset)."""

from __future__ import annotations

import httpx
import pytest

from mmq.simulator import SimulatorConfig
from tests.mmq.simulator.batch_helpers import chat_lines, jsonl, wait_until

ANTHROPIC = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def test_batch_knobs_from_the_environment() -> None:
    cfg = SimulatorConfig.from_env(
        {
            "MMQ_SIM_BATCH_VALIDATE_S": "0",
            "MMQ_SIM_BATCH_COMPLETE_S": "2.5",
            "MMQ_SIM_BATCH_FINALIZE_S": "0.1",
            "MMQ_SIM_BATCH_FAIL_RATE": "0.2",
            "MMQ_SIM_BATCH_EXPIRE_S": "30",
            "MMQ_SIM_BATCH_CANCEL_S": "4",
            "MMQ_SIM_BATCH_STALL": "true",
            "MMQ_SIM_BATCH_MAX_REQUESTS": "10",
            "MMQ_SIM_BATCH_MAX_BYTES": "off",
        }
    )
    assert (cfg.batch_validate_s, cfg.batch_complete_s, cfg.batch_finalize_s) == (0, 2.5, 0.1)
    assert (cfg.batch_fail_rate, cfg.batch_expire_s, cfg.batch_cancel_s) == (0.2, 30, 4)
    assert cfg.batch_stall is True and cfg.batch_max_requests == 10 and cfg.batch_max_bytes is None
    with pytest.raises(ValueError):
        SimulatorConfig.from_env({"MMQ_SIM_BATCH_FAIL_RATE": "2"})


def control(sim: httpx.AsyncClient) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://sim")


async def test_knobs_change_at_run_time_for_new_batches(make_sim) -> None:
    sim = make_sim(batch_validate_s=0, batch_complete_s=0.2)
    ctl = control(sim)
    shown = (await ctl.get("/sim/batches")).json()
    assert shown["knobs"]["batch_complete_s"] == 0.2 and shown["batches"] == []

    first = (
        await ctl.post(
            "/v1/messages/batches",
            headers=ANTHROPIC,
            json={
                "requests": [
                    {
                        "custom_id": "a",
                        "params": {
                            "model": "m",
                            "max_tokens": 10,
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    }
                ]
            },
        )
    ).json()
    changed = await ctl.post("/sim/batches", json={"batch_stall": True, "batch_cancel_s": 0})
    assert changed.status_code == 200 and changed.json()["knobs"]["batch_stall"] is True
    second = (
        await ctl.post(
            "/v1/messages/batches",
            headers=ANTHROPIC,
            json={
                "requests": [
                    {
                        "custom_id": "b",
                        "params": {
                            "model": "m",
                            "max_tokens": 10,
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    }
                ]
            },
        )
    ).json()

    async def statuses() -> dict[str, str]:
        return {b["id"]: b["status"] for b in (await ctl.get("/sim/batches")).json()["batches"]}

    seen = await wait_until(statuses, lambda s: s[first["id"]] == "completed")
    assert seen[second["id"]] == "in_progress"  # created under batch_stall: never finishes by itself
    await ctl.post(f"/v1/messages/batches/{second['id']}/cancel", headers=ANTHROPIC)
    await wait_until(statuses, lambda s: s[second["id"]] == "cancelled")

    for bad in ({"batch_fail_rate": 3}, {"latency_ms": 5}, ["batch_stall"]):
        assert (await ctl.post("/sim/batches", json=bad)).status_code == 400
    await ctl.aclose()


async def test_lines_are_billed_when_due_without_polling(make_sim) -> None:
    sim = make_sim(batch_validate_s=0, batch_complete_s=0.2)
    file = await sim.post(
        "/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", jsonl(chat_lines(4)))}
    )
    await sim.post(
        "/batches",
        json={
            "input_file_id": file.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    stats = sim.app.state.stats

    async def billed() -> dict[str, int]:
        return dict(stats.batch_lines_billed)  # read directly: only the driver task runs the lines

    assert await wait_until(billed, lambda b: b.get("openai") == 4) == {"openai": 4}
    ctl = control(sim)
    shown = (await ctl.get("/sim/stats")).json()
    assert shown["batches_created"] == {"openai": 1} and set(shown["batch_billed_ids"].values()) == {1}
    assert (await ctl.post("/sim/reset")).status_code == 200
    assert (await ctl.get("/sim/batches")).json()["batches"] == []
    assert (await ctl.get("/sim/stats")).json()["batch_lines_billed"] == {}
    await ctl.aclose()
