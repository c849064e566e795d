"""A crashed worker's jobs run again within seconds, and every call that reached the provider is counted.

Real worker processes on a real Redis against the simulator: the first worker is killed (SIGKILL) while
its calls are in flight; a second one picks the jobs up once their leases lapse (MMQ_JOB_LEASE_S), not
after arq's in-progress timeout (the longest function timeout + 10 s = 610 s). The abandoned calls
were paid for: the batch's `provider_calls` counts them, as the provider did."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from producer.submit import BatchLine, Producer
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import _spawn, _stop, free_port, wait_batch, wait_http


def _chat_calls(base_url: str) -> int:
    stats = httpx.get(base_url.removesuffix("/v1") + "/sim/stats").json()
    return stats["by_path"].get("/v1/chat/completions", 0)


async def test_a_killed_workers_jobs_run_again_within_seconds_and_its_calls_are_counted(
    mmq_env, settings, stores, tmp_path: Path
):
    redis, records, storage = stores
    port = free_port()
    sim_log = tmp_path / "slow-simulator.log"
    sim = _spawn(["simulate", "--port", str(port), "--latency-ms", "1500"], {}, sim_log)
    slow = f"http://127.0.0.1:{port}/v1"
    env = {**mmq_env, "MMQ_OPENAI_BASE_URL": slow, "MMQ_JOB_LEASE_S": "3"}
    first = second = None
    try:
        wait_http(f"http://127.0.0.1:{port}/health", sim, sim_log)
        producer = Producer(redis, storage, settings)
        n = 6
        lines = (
            BatchLine(
                body=chat_body(data_url(png_bytes((i, 50, 90)))), url="/v1/chat/completions", custom_id=str(i)
            )
            for i in range(n)
        )
        batch = await producer.submit_batch(lines, tenant="t")
        first = _spawn(["worker"], env, tmp_path / "worker-1.log")
        deadline = time.monotonic() + 60
        # all its calls on the wire, unanswered for 1.5 s (a call is counted as it is let go: one a
        # crash stopped between that count and the send would be counted without being sent)
        while _chat_calls(slow) < n:
            assert time.monotonic() < deadline, (tmp_path / "worker-1.log").read_text()[-2000:]
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        abandoned = _chat_calls(slow)
        killed_at = time.monotonic()
        second = _spawn(["worker"], env, tmp_path / "worker-2.log")
        # old code: the in-progress keys kept the jobs for 610 s
        done = await wait_batch(records, batch.id, timeout=120)
        recovered_in = time.monotonic() - killed_at
        assert done.counts.succeeded == n, done
        calls = _chat_calls(slow)
        assert calls > n and abandoned == n  # some were paid for twice
        assert done.counts.provider_calls == calls  # and every one of them is counted
        assert recovered_in < 90, recovered_in
    finally:
        for proc in (first, second, sim):
            if proc is not None and proc.poll() is None:
                _stop(proc)
