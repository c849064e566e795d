"""What a budget costs the worker: Redis round trips per attempt and worker CPU per job, with no budget,
with a batch budget (max_cost), and with a batch and a tenant's day and month budgets.

    python -m bench.budget_check [--jobs 2000] [--max-jobs 128]

Each run is bench.pipeline_throughput's mmq run (text chats to a zero-latency simulator in another
process, one in-process burst worker, results stored) on the same real Redis; the budgets are set high
enough never to stop a job, so the figures are the check itself: the reservation rides in the admit
script's round trip and the settlement in the finish's (target: no extra round trip, < 0.2 ms of CPU).
Also printed: the CPU of the Python side alone (the call's estimate and the spend scopes), per attempt,
measured in a loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time

from bench._common import ROOT, RoundTrips, clean_redis_db, simulator
from mmq.budgets import Budgets
from mmq.connections import MMQ_CLIENT_NAME, connect
from mmq.contract import BatchStatus, JobRecord
from mmq.pricing import default_book
from mmq.records import Records
from mmq.request_models import Kind
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.submit import BatchLine, Producer
from worker import budget
from worker.worker import build_worker

REQUEST = {"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "item 1"}]}


async def run(
    url: str, base_url: str, store: str, jobs: int, max_jobs: int, mode: str
) -> tuple[float, float]:
    """(mmq round trips per job, worker CPU ms per job) for one mode: none | batch | batch+tenant."""
    settings = Settings(
        redis_url=url,
        storage_url=f"file://{store}",
        openai_base_url=base_url,
        openai_api_key="bench",
        max_jobs=max_jobs,
        poll_delay_s=0.05,
        queue_name=f"bench:budget:{mode}",
    )
    redis = connect(url)
    tenant = f"bench-{mode}"
    if mode == "batch+tenant":
        budgets = Budgets(redis, settings.key_prefix)
        await budgets.set_tenant(tenant, "day", 1_000_000)
        await budgets.set_tenant(tenant, "month", 1_000_000)
    lines = (
        BatchLine(
            body={**REQUEST, "messages": [{"role": "user", "content": f"item {n}"}]},
            url="/v1/chat/completions",
        )
        for n in range(jobs)
    )
    options = {"max_cost": "1000000"} if mode != "none" else {}
    producer = Producer(redis, open_storage(settings.storage_url), settings)
    batch = await producer.submit_batch(lines, tenant=tenant, cache=False, **options)
    worker = build_worker(settings, burst=True, handle_signals=False)
    with RoundTrips() as trips:
        cpu = time.process_time()
        await worker.main()
        cpu = time.process_time() - cpu
    await worker.close()
    final = await Records(redis, settings.key_prefix).get_batch(batch.id)
    assert final and final.status is BatchStatus.completed and final.counts.succeeded == jobs, final
    if mode != "none":
        assert final.spent_micro_usd > 0 and final.reserved_micro_usd == 0, final
    await redis.aclose()
    return trips.waited[MMQ_CLIENT_NAME] / jobs, cpu / jobs * 1000  # as if each went alone


def python_side_us(n: int = 5000) -> float:
    """The budget check's own Python work per attempt: the estimate and the spend scopes."""
    book = default_book()
    job = JobRecord(id="job_x", batch_id="batch_x", tenant="acme", kind=Kind.chat, request=REQUEST)

    class _Records:  # the two key builders `scopes` uses
        def spend_keys(self, tenant: str, at: float | None = None) -> tuple[str, str]:
            return Records.spend_keys(records, tenant, at)

        def batch_key(self, batch_id: str) -> str:
            return records.batch_key(batch_id)

    records = Records(connect("redis://127.0.0.1:6379/15"), "mmq")
    started = time.process_time()
    for _ in range(n):
        budget.estimate_micro(book, "openai", Kind.chat, REQUEST)
        budget.scopes(_Records(), job)
    return (time.process_time() - started) / n * 1e6


async def main(jobs: int, max_jobs: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    results = {}
    with (
        simulator() as base_url,
        clean_redis_db() as url,
        tempfile.TemporaryDirectory(dir=ROOT, prefix=".bench-store-") as store,
    ):
        for mode in ("none", "batch", "batch+tenant"):
            results[mode] = await run(url, base_url, store, jobs, max_jobs, mode)
    base_trips, base_cpu = results["none"]
    for mode, (trips, cpu) in results.items():
        extra = (
            "" if mode == "none" else f"  (+{trips - base_trips:.2f} round trips, +{cpu - base_cpu:.3f} ms)"
        )
        print(f"{mode:13s}: mmq round trips a job waits for {trips:.2f}, worker CPU {cpu:.3f} ms/job{extra}")
    print(f"the check's Python side alone: {python_side_us():.0f} us per attempt (estimate + spend scopes)")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--max-jobs", type=int, default=128)
    a = p.parse_args()
    asyncio.run(main(a.jobs, a.max_jobs))
