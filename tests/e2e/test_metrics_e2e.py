"""Prometheus metrics as an operator scrapes them: a worker's /metrics after a batch with a retry and
cache hits, and the API's /metrics (queue depth) and /ready."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from producer.submit import BatchLine, Producer
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import _spawn, _stop, free_port, wait_batch


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=5)


def _fault(base_url: str, **spec) -> None:
    httpx.post(base_url.removesuffix("/v1") + "/sim/faults", json=spec).raise_for_status()


def _calls(base_url: str) -> int:
    return httpx.get(base_url.removesuffix("/v1") + "/sim/stats").json()["by_path"]["/v1/chat/completions"]


async def test_a_workers_metrics_count_the_batch(mmq_env, simulator, settings, stores, tmp_path: Path):
    redis, records, storage = stores
    port = free_port()
    worker = _spawn(["worker"], {**mmq_env, "MMQ_METRICS_PORT": str(port)}, tmp_path / "worker.log")
    try:
        _fault(simulator, status=503, count=1)
        distinct = [chat_body(data_url(png_bytes((i, 200, 3)))) for i in range(6)]
        bodies = distinct + distinct[:2]  # two repeats in the batch: the worker answers them from the cache
        lines = [
            BatchLine(body=b, url="/v1/chat/completions", custom_id=str(i)) for i, b in enumerate(bodies)
        ]
        batch = await Producer(redis, storage, settings).submit_batch(lines, tenant="t")
        await wait_batch(records, batch.id)
        deadline = time.monotonic() + 30
        while True:
            try:
                text = _get(f"http://127.0.0.1:{port}/metrics").text
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        got = _samples(text)
        finished = "mmq_jobs_finished_total"
        assert got[(finished, (("cached", "no"), ("kind", "chat"), ("status", "succeeded")))] == 6
        assert got[(finished, (("cached", "yes"), ("kind", "chat"), ("status", "succeeded")))] == 2
        assert got[("mmq_cache_hits_total", (("level", "exact"),))] == 2
        calls = {labels: v for (name, labels), v in got.items() if name == "mmq_provider_calls_total"}
        assert sum(calls.values()) == _calls(simulator) == 7  # six answers and the 503 before one of them
        assert sum(v for labels, v in calls.items() if ("status", "503") in labels) == 1
        assert sum(v for (name, _), v in got.items() if name == "mmq_retries_total") == 1
        assert sum(v for (name, _), v in got.items() if name == "mmq_provider_latency_seconds_count") == 7
        assert got[("mmq_jobs_running", ())] == 0
    finally:
        _stop(worker)


async def test_the_api_serves_queue_depth_and_readiness(stores, settings):
    from producer.api import create_app

    redis, _, storage = stores
    app = create_app(settings, redis=redis, storage=storage)
    lines = [
        BatchLine(body=chat_body(data_url(png_bytes((i, 1, 1)))), url="/v1/chat/completions")
        for i in range(3)
    ]
    await Producer(redis, storage, settings).submit_batch(lines, tenant="t")  # no worker runs: they wait
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            ready = await client.get("/ready")
            assert ready.status_code == 200 and ready.json() == {
                "ready": True,
                "redis": "ok",
                "storage": "ok",
            }
            got = _samples((await client.get("/metrics")).text)
    assert got[("mmq_queue_depth", ())] == 3
    assert 0 <= got[("mmq_queue_oldest_age_seconds", ())] < 600
