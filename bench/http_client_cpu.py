"""Client CPU per provider call at high concurrency: httpx's own pool vs the aiohttp transport mmq uses.

    python bench/http_client_cpu.py [--calls 2048] [--concurrency 256]

The simulator runs in another process with 50 ms latency, so `concurrency` requests really are in flight
at once; CPU time is this process's own (user + system), divided by the number of calls.
Target: ≤ 1.5 ms per call at 256 concurrent with the transport mmq ships.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from bench._common import simulator
from mmq.request_models import Kind
from worker.http import make_client
from worker.providers.base import Target
from worker.providers.openai import OpenAIAdapter

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Caption: a red mug on white."}]}


async def measure(
    client: httpx.AsyncClient, base_url: str, calls: int, concurrency: int
) -> tuple[float, float]:
    adapter, target = (
        OpenAIAdapter(),
        Target(name="sim", provider="openai", base_url=base_url, api_key="bench"),
    )
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await adapter.call(client, target, Kind.chat, BODY)

    await asyncio.gather(*(one() for _ in range(min(concurrency, calls))))  # warm the pool
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return (time.process_time() - cpu) / calls * 1000, calls / (time.perf_counter() - wall)


async def main(calls: int, concurrency: int, latency_ms: float) -> None:
    with simulator(latency_ms=str(latency_ms)) as base_url:
        limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
        for name, transport in [
            ("httpx default (httpcore pool)", httpx.AsyncHTTPTransport(limits=limits)),
            ("aiohttp transport (mmq)", None),
        ]:
            async with make_client(transport=transport) as client:
                cpu_ms, rate = await measure(client, base_url, calls, concurrency)
            print(
                f"{name:32s} concurrency={concurrency:4d} calls={calls}: "
                f"{cpu_ms:6.2f} ms client CPU per call, {rate:7.0f} calls/s"
            )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=2048)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--latency-ms", type=float, default=50)
    a = p.parse_args()
    asyncio.run(main(a.calls, a.concurrency, a.latency_ms))
