"""A night's batch through crashes: workers killed mid-call and Redis restarted, and what it cost.

    python -m bench.chaos_batch [--jobs 2000] [--workers 4] [--kills 3] [--lease 10]

A private redis-server (AOF on, on its own port: the machine's shared Redis is never restarted), the
simulator (200 ± 50 ms, 100 calls/s) and `--workers` worker processes. While the batch runs, `--kills`
workers are killed with SIGKILL one after another (each replaced by a fresh one, as a supervisor would),
then Redis is shut down and started again on the same files. Printed: jobs lost (not succeeded),
calls the provider received against the batch's `provider_calls` (calls paid twice are counted), and
the longest stall: the longest time in which no job finished.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from redis.exceptions import ConnectionError as RedisConnectionError

from bench._common import ROOT, free_port, simulator
from mmq.connections import connect
from mmq.contract import BatchStatus
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.submit import BatchLine, Producer


def _redis_server(port: int, folder: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", folder, "--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_redis(port: int) -> None:
    while (
        subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG"
    ):
        time.sleep(0.05)


def _shutdown(port: int) -> None:
    subprocess.run(["redis-cli", "-p", str(port), "shutdown"], capture_output=True)


def _worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _line(i: int) -> BatchLine:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Caption item {i}."}]}
    return BatchLine(body=body, url="/v1/chat/completions", custom_id=f"item-{i}")


async def _batch(records: Records, batch_id: str):
    while True:
        try:
            return await records.get_batch(batch_id)
        except RedisConnectionError:
            await asyncio.sleep(0.1)


async def run(args: argparse.Namespace, sim_url: str, store: str, folder: str) -> dict:
    port = free_port()
    server = _redis_server(port, folder)
    _wait_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    settings = Settings(redis_url=url, storage_url=f"file://{store}")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MMQ_REDIS_URL": url,
        "MMQ_STORAGE_URL": settings.storage_url,
        "MMQ_OPENAI_BASE_URL": sim_url,
        "MMQ_OPENAI_API_KEY": "sk-bench",
        "MMQ_JOB_LEASE_S": str(args.lease),
        "MMQ_RATE_LIMIT": json.dumps({"rps": args.rps}),
    }
    redis = connect(url)
    records = Records(redis)
    workers = [_worker(env) for _ in range(args.workers)]
    events: list[tuple[float, str]] = []
    try:
        await asyncio.sleep(3)
        started, started_wall = time.monotonic(), time.time()
        batch = await Producer(redis, open_storage(settings.storage_url), settings).submit_batch(
            (_line(i) for i in range(args.jobs)), tenant="bench"
        )
        chaos_at = [4 + 3 * k for k in range(args.kills)]
        for at in chaos_at:
            await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
            victim = workers.pop(0)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            workers.append(_worker(env))
            events.append((round(time.monotonic() - started, 1), "worker killed and replaced"))
        await asyncio.sleep(3)
        _shutdown(port)
        server.wait()
        events.append((round(time.monotonic() - started, 1), "Redis shut down"))
        await asyncio.sleep(3)
        server = _redis_server(port, folder)
        _wait_redis(port)
        events.append((round(time.monotonic() - started, 1), "Redis up again"))
        while (rec := await _batch(records, batch.id)).status is BatchStatus.in_progress:
            if time.monotonic() - started > args.timeout:
                break
            await asyncio.sleep(0.2)
        wall = time.monotonic() - started
        ids = [i async for chunk in records.iter_batch_job_ids(batch.id) for i in chunk]
        jobs = [j for j in await records.get_jobs(ids) if j is not None]
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(10)
        await redis.aclose()
        server.terminate()
        server.wait(10)
    async with httpx.AsyncClient() as client:
        stats = (await client.get(sim_url.removesuffix("/v1") + "/sim/stats")).json()
    finished = sorted([started_wall] + [j.finished_at for j in jobs if j.finished_at])
    stall = max(b - a for a, b in itertools.pairwise(finished))
    return {
        "jobs": args.jobs,
        "events (s)": events,
        "wall_s": round(wall, 1),
        "status": rec.status.value,
        "succeeded": rec.counts.succeeded,
        "jobs_lost": args.jobs - rec.counts.succeeded,
        "provider_received": stats["requests"],
        "provider_calls_counted": rec.counts.provider_calls,
        "paid_twice": stats["requests"] - args.jobs - stats["errors"] - stats["rate_limited"],
        "answered_from_own_entry": sum(1 for j in jobs if j.cached_from == j.id),
        "longest_stall_s": round(stall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--lease", type=float, default=10.0, help="MMQ_JOB_LEASE_S")
    parser.add_argument("--rps", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    knobs = {"latency_ms": "200", "jitter_ms": "50", "rpw": str(args.rps), "window_s": "1", "seed": "5"}
    with (
        simulator(**knobs) as sim_url,
        tempfile.TemporaryDirectory() as store,
        tempfile.TemporaryDirectory() as folder,
    ):
        result = asyncio.run(run(args, sim_url, store, str(Path(folder))))
    for key, value in result.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
