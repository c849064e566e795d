"""A night's batch against a rate-limited, flaky provider: several worker processes share one limit.

    python -m bench.rate_limited_batch [--jobs 2000] [--workers 4] [--rps 100] [--margin 0.02]
                                       [--poll-delay 0.2]

The simulator (its own process) answers in 200 ± 50 ms, admits 100 requests per sliding second per API
key (429 + Retry-After beyond that) and fails 3% of calls with a 500/503. mmq's workers (separate
processes, one Redis) know the limit from MMQ_RATE_LIMIT. Printed: wall time from submit to the
batch's end (workers already running) against the ideal (jobs ÷ limit), 429s, provider calls, completion.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import tempfile
import time

import httpx
from PIL import Image

from bench._common import (
    clean_redis_db,
    command_delta,
    commandstats,
    cpu_seconds,
    simulator,
    worker_processes,
)
from mmq.connections import connect
from mmq.contract import BatchStatus
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.submit import BatchLine, Producer

LATENCY_MS = 200


def _image(i: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _line(i: int) -> BatchLine:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "user",
                "content": [
                    # distinct per line: the pictures repeat every 256 lines, and identical jobs are cached
                    {"type": "text", "text": f"Write a one-line catalog caption for item {i}."},
                    {"type": "image_url", "image_url": {"url": _image(i)}},
                ],
            }
        ],
    }
    return BatchLine(body=body, url="/v1/chat/completions", custom_id=f"item-{i}")


async def run(args: argparse.Namespace, redis_url: str, sim_url: str, store: str) -> dict:
    settings = Settings(redis_url=redis_url, storage_url=f"file://{store}")
    redis = connect(redis_url)
    records = Records(redis)
    producer = Producer(redis, open_storage(settings.storage_url), settings)
    stack = contextlib.ExitStack()
    procs = stack.enter_context(
        worker_processes(
            args.workers,
            redis_url,
            settings.storage_url,
            sim_url,
            MMQ_RATE_LIMIT=json.dumps({"rps": args.rps}),
            MMQ_RATE_LIMIT_MARGIN=str(args.margin),
            MMQ_POLL_DELAY_S=str(args.poll_delay),
        )
    )
    try:
        await asyncio.sleep(3)  # workers are already up when a night's batch arrives
        pids = [p.pid for p in procs]
        cpu_before = cpu_seconds(pids)  # their start-up (imports) is not the jobs' cost
        stats_before = commandstats(redis_url)
        started, started_wall = time.monotonic(), time.time()
        batch = await producer.submit_batch((_line(i) for i in range(args.jobs)), tenant="bench")
        submitted = time.monotonic() - started
        while True:
            rec = await records.get_batch(batch.id)
            if rec and rec.status is not BatchStatus.in_progress:
                break
            await asyncio.sleep(0.05)
        wall = time.monotonic() - started
        worker_cpu = cpu_seconds(pids) - cpu_before
        commands = command_delta(stats_before, commandstats(redis_url))
        ids = [i async for chunk in records.iter_batch_job_ids(batch.id) for i in chunk]
        jobs = [j for j in await records.get_jobs(ids) if j is not None]
        last = max(jobs, key=lambda j: j.finished_at or 0)
        print(
            "last job to finish:",
            [(a.status, round(a.at - started_wall, 2)) for a in last.attempts],
            f"done at {(last.finished_at or 0) - started_wall:.2f}s",
        )
    finally:
        stack.close()
    async with httpx.AsyncClient() as client:
        stats = (await client.get(sim_url.removesuffix("/v1") + "/sim/stats")).json()
        seen = (await client.get(sim_url.removesuffix("/v1") + "/sim/faults")).json()["arrivals"]
    await redis.aclose()
    ideal = args.jobs / args.rps
    floor = (stats["requests"] - stats["rate_limited"]) / args.rps + LATENCY_MS / 1000
    per_second = [0] * (int(seen[-1] - started_wall) + 1)
    for t in seen:
        per_second[int(t - started_wall)] += 1
    print("calls per second of the run:", per_second)
    return {
        "jobs": args.jobs,
        "workers": args.workers,
        "wall_s": round(wall, 2),
        "submit_s": round(submitted, 2),
        "ideal_s": ideal,
        "ratio": round(wall / ideal, 3),
        # the least time the provider itself allows this run: every call that counted against its limit
        # (the 5xx retries included; 429s do not count) at the limit, then one answer's latency
        "floor_s": round(floor, 2),
        "ratio_to_floor": round(wall / floor, 3),
        "first_call_s": round(seen[0] - started_wall, 2),
        "last_call_s": round(seen[-1] - started_wall, 2),
        "calls_per_s": round((len(seen) - 1) / (seen[-1] - seen[0]), 1),
        "worker_cpu_ms_per_job": round(worker_cpu / args.jobs * 1000, 2),
        "redis_cmds_per_job": round(sum(commands.values()) / args.jobs, 1),
        "top_cmds_per_job": {k: round(n / args.jobs, 1) for k, n in _top(commands)},
        "provider_calls": stats["requests"],
        "429s": stats["rate_limited"],
        "5xx": stats["errors"],
        "succeeded": rec.counts.succeeded,
        "failed": rec.counts.failed,
        "completed_pct": round(100 * rec.counts.succeeded / args.jobs, 2),
    }


def _top(commands: dict[str, int], n: int = 8) -> list[tuple[str, int]]:
    return sorted(commands.items(), key=lambda kv: -kv[1])[:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument(
        "--store-dir",
        metavar="DIR",
        help="the result folder's parent (default: the system's temp; /dev/shm: no disk)",
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rps", type=int, default=100)
    parser.add_argument("--margin", type=float, default=0.02, help="MMQ_RATE_LIMIT_MARGIN")
    parser.add_argument("--error-rate", type=float, default=0.03)
    # mmq's default: an idle arq poll costs ~0.5 ms of CPU on this VM, 20 a second at 0.05 s
    parser.add_argument("--poll-delay", type=float, default=Settings().poll_delay_s, help="MMQ_POLL_DELAY_S")
    args = parser.parse_args()
    knobs = {
        "latency_ms": str(LATENCY_MS),
        "jitter_ms": "50",
        "rpw": str(args.rps),
        "window_s": "1",
        "error_rate": str(args.error_rate),
        "seed": "11",
    }
    with (
        clean_redis_db() as redis_url,
        simulator(**knobs) as sim_url,
        tempfile.TemporaryDirectory(dir=args.store_dir) as store,
    ):
        result = asyncio.run(run(args, redis_url, sim_url, store))
    for key, value in result.items():
        print(f"{key:>15}: {value}")


if __name__ == "__main__":
    main()
