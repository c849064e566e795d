"""A worker stopped with SIGTERM lets its in-flight provider calls finish: nothing is paid twice.

Twenty 3-second calls in flight at a real worker process; SIGTERM; the worker takes no new job, waits for
the calls (MMQ_SHUTDOWN_GRACE_S) and exits. arq's own handler cancelled them, and they ran (and were
paid for) again after the restart."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from producer.submit import BatchLine, Producer
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import _spawn, _stop, free_port, wait_batch, wait_http


def _calls(base_url: str) -> int:
    return httpx.get(base_url.removesuffix("/v1") + "/sim/stats").json()["requests"]


async def test_sigterm_lets_in_flight_calls_finish_and_none_runs_again(
    mmq_env, settings, stores, tmp_path: Path
):
    redis, records, storage = stores
    port = free_port()
    sim_log = tmp_path / "slow-simulator.log"
    sim = _spawn(["simulate", "--port", str(port), "--latency-ms", "3000"], {}, sim_log)
    slow = f"http://127.0.0.1:{port}/v1"
    env = {**mmq_env, "MMQ_OPENAI_BASE_URL": slow, "MMQ_SHUTDOWN_GRACE_S": "60", "MMQ_MAX_JOBS": "32"}
    worker = None
    try:
        wait_http(f"http://127.0.0.1:{port}/health", sim, sim_log)
        n = 20
        lines = (
            BatchLine(
                body=chat_body(data_url(png_bytes((i, 9, 77)))), url="/v1/chat/completions", custom_id=str(i)
            )
            for i in range(n)
        )
        batch = await Producer(redis, storage, settings).submit_batch(lines, tenant="t")
        log = tmp_path / "worker.log"
        worker = _spawn(["worker"], env, log)
        deadline = time.monotonic() + 60
        while _calls(slow) < n:  # all twenty on the wire
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 90
        while worker.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            await asyncio.sleep(0.1)
        assert worker.returncode == 0, log.read_text()[-2000:]
        done = await wait_batch(records, batch.id, timeout=10)  # finished before the worker exited
        assert done.counts.succeeded == n
        assert _calls(slow) == n  # none ran again
        assert done.counts.provider_calls == n
    finally:
        for proc in (worker, sim):
            if proc is not None and proc.poll() is None:
                _stop(proc)
