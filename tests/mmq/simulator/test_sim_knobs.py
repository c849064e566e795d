from __future__ import annotations

import asyncio
import time

import httpx

from mmq.simulator import SimulatorConfig
from mmq.simulator.ratelimit import SlidingWindowLimiter, openai_duration

CHAT = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}


async def chat(sim: httpx.AsyncClient, key: str = "sk-test") -> httpx.Response:
    return await sim.post("/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})


async def test_sliding_window_rate_limit(make_sim) -> None:
    sim = make_sim(requests_per_window=3, window_s=1)
    ok = [await chat(sim) for _ in range(3)]
    assert [r.status_code for r in ok] == [200, 200, 200]
    assert ok[0].headers["x-ratelimit-limit-requests"] == "3"
    assert [r.headers["x-ratelimit-remaining-requests"] for r in ok] == ["2", "1", "0"]
    limited = await chat(sim)
    assert limited.status_code == 429
    error = limited.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
    assert error["message"].startswith("Rate limit reached for requests")
    assert limited.headers["retry-after"] == "1"
    wait_ms = int(limited.headers["retry-after-ms"])
    assert 0 < wait_ms <= 1000
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.headers["x-ratelimit-reset-requests"].endswith("ms")
    assert limited.headers["x-mmq-simulator"] == "1"
    # another key has its own window
    assert (await chat(sim, "sk-other")).status_code == 200
    await asyncio.sleep(wait_ms / 1000 + 0.02)
    assert (await chat(sim)).status_code == 200
    assert sim.app.state.stats.rate_limited == 1


async def test_missing_api_key_is_401(sim: httpx.AsyncClient) -> None:
    resp = await sim.post("/chat/completions", json=CHAT, headers={"Authorization": ""})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"


async def test_error_rate_injects_retryable_5xx(make_sim) -> None:
    sim = make_sim(error_rate=1)
    statuses = {(await chat(sim)).status_code for _ in range(8)}
    assert statuses <= {500, 503} and statuses
    resp = await chat(sim)
    assert resp.json()["error"]["type"] == "server_error"
    assert "mmq simulator injected" in resp.json()["error"]["message"]
    assert sim.app.state.stats.errors == 9


async def test_seeded_knobs_replay_identically(make_sim) -> None:
    async def run(seed: int) -> list[int]:
        sim = make_sim(error_rate=0.5, seed=seed)
        return [(await chat(sim)).status_code for _ in range(20)]

    first = await run(7)
    assert first == await run(7)
    assert 200 in first and any(code >= 500 for code in first)


async def test_latency_and_hang_delay_answers(make_sim) -> None:
    slow = make_sim(latency_ms=120, jitter_ms=10)
    started = time.perf_counter()
    assert (await chat(slow)).status_code == 200
    assert time.perf_counter() - started >= 0.105

    hung = make_sim(hang_rate=1, hang_s=0.1)
    started = time.perf_counter()
    assert (await chat(hung)).status_code == 200
    assert time.perf_counter() - started >= 0.095
    assert hung.app.state.stats.hangs == 1


async def test_health_stats_and_reset(make_sim) -> None:
    sim = make_sim(requests_per_window=1, window_s=60)
    health = await sim.get("http://sim/health")
    assert health.json() == {"ok": True, "simulator": True}
    assert health.headers["x-mmq-simulator"] == "1"
    await chat(sim)
    assert (await chat(sim)).status_code == 429
    stats = (await sim.get("http://sim/sim/stats")).json()
    assert stats == {
        "requests": 2,
        "by_path": {"/v1/chat/completions": 2},
        "rate_limited": 1,
        "errors": 0,
        "hangs": 0,
        "batches_created": {},
        "batch_cancels": {},
        "batch_lines_billed": {},
        "batch_billed_ids": {},
        "batch_quota_refusals": {},
    }
    assert (await sim.post("http://sim/sim/reset")).status_code == 200
    assert sim.app.state.stats.requests == 0
    assert (await chat(sim)).status_code == 200


def test_config_from_env() -> None:
    env = {
        "MMQ_SIM_LATENCY_MS": "25",
        "MMQ_SIM_JITTER_MS": "5",
        "MMQ_SIM_RPW": "100",
        "MMQ_SIM_WINDOW_S": "10",
        "MMQ_SIM_ERROR_RATE": "0.1",
        "MMQ_SIM_HANG_RATE": "0.01",
        "MMQ_SIM_HANG_S": "30",
        "MMQ_SIM_SEED": "42",
    }
    cfg = SimulatorConfig.from_env(env)
    assert cfg == SimulatorConfig(
        latency_ms=25, jitter_ms=5, requests_per_window=100, window_s=10, error_rate=0.1, hang_rate=0.01,
        hang_s=30, seed=42,
    )  # fmt: skip
    assert SimulatorConfig.from_env({"MMQ_SIM_RPW": "0"}).requests_per_window is None
    assert SimulatorConfig.from_env({}) == SimulatorConfig()


def test_limiter_and_duration_format() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(2, 10, clock=lambda: now[0])
    assert limiter.check("k").admitted
    now[0] = 4
    assert limiter.check("k").admitted
    now[0] = 6
    verdict = limiter.check("k")
    assert not verdict.admitted and verdict.headers["retry-after"] == "4"
    now[0] = 10.5  # the first request left the window, the second is still in it
    assert limiter.check("k").admitted
    assert not limiter.check("k").admitted
    assert [openai_duration(s) for s in (0.25, 1, 1.5, 360, 3723)] == [
        "250ms",
        "1s",
        "1.5s",
        "6m0s",
        "1h2m3s",
    ]
