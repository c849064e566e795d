"""The batch tier on a compressed clock: a provider batch window of seconds instead of hours.

    python -m bench.batch_tier [--jobs 10000] [--deadline-s 120] [--workers 2]

Two runs of `--jobs` chat jobs with a deadline `--deadline-s` from submit, through worker processes and
the simulator's OpenAI Batch API: one whose provider batch ends on time (a few seconds), one whose
provider batch stalls (never ends until cancelled), so mmq must cancel it and run the jobs realtime
before the deadline. Printed per run: what the jobs cost against the same usage all realtime, jobs paid
twice (lines billed in a provider batch whose job also ran realtime), when the batch finished against
the deadline, and how many jobs fell back to realtime.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from decimal import Decimal

import httpx

from bench._common import ROOT, clean_redis_db, simulator, worker_processes
from mmq.connections import connect
from mmq.contract import BatchStatus
from mmq.packs import Packs
from mmq.pricing import cost_of
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.submit import BatchLine, Producer


async def one_run(jobs: int, deadline_s: float, workers: int, stall: bool) -> dict[str, object]:
    sim_env = {"batch_stall": "1"} if stall else {"batch_complete_s": "5", "batch_validate_s": "0.5"}
    # the realtime rate the fallback plans with: what these workers sustain against the simulator
    tier = {
        "MMQ_BATCH_TIER_MIN_WINDOW_S": "30",
        "MMQ_BATCH_TIER_GATHER_S": "2",
        "MMQ_BATCH_TIER_POLL_MIN_S": "1",
        "MMQ_BATCH_TIER_POLL_MAX_S": "3",
        "MMQ_BATCH_TIER_MARGIN_S": "10",
        "MMQ_BATCH_TIER_REALTIME_RATE": str(150 * workers),
        "MMQ_MAX_JOBS": "64",
    }
    with (
        simulator(**sim_env) as base,
        clean_redis_db() as url,
        tempfile.TemporaryDirectory(dir=ROOT, prefix=".bench-store-") as store,
    ):
        storage_url = f"file://{store}"
        redis = connect(url)
        settings = Settings(redis_url=url, storage_url=storage_url)
        records, packs = Records(redis, settings.key_prefix), Packs(redis, settings.key_prefix)
        producer = Producer(redis, open_storage(storage_url), settings)
        lines = (
            BatchLine(
                body={
                    "model": "gpt-4o-mini",
                    "max_tokens": 60,
                    "messages": [{"role": "user", "content": f"photo {n}"}],
                },
                url="/v1/chat/completions",
            )
            for n in range(jobs)
        )
        with worker_processes(workers, url, storage_url, base, **tier):
            started = time.time()
            deadline = started + deadline_s
            batch = await producer.submit_batch(
                lines, tenant="bench", cache=False, deadline=deadline, tier="batch"
            )
            while True:
                done = await records.get_batch(batch.id)
                if done and done.status is not BatchStatus.in_progress:
                    break
                if time.time() > deadline + 300:
                    raise TimeoutError(f"the batch did not end: {done}")
                await asyncio.sleep(0.5)
        ids = [i async for chunk in records.iter_batch_job_ids(batch.id) for i in chunk]
        spent = realtime = Decimal(0)
        for start in range(0, len(ids), 500):
            for job in await records.get_jobs(ids[start : start + 500]):
                if job is None or job.cost is None:
                    continue
                spent += Decimal(job.cost.usd)
                realtime += cost_of("openai", "gpt-4o-mini", "chat", job.usage).amount
        async with httpx.AsyncClient(timeout=30) as client:
            stats = (await client.get(base.removesuffix("/v1") + "/sim/stats")).json()
        billed_in_batch = stats["batch_lines_billed"].get("openai", 0)
        called_realtime = stats["by_path"].get("/v1/chat/completions", 0)
        fell_back = sum(int(p.jobs) for p in await packs.batch_packs(batch.id) if p.fell_back_at)
        await redis.aclose()
    return {
        "status": done.status.value,
        "succeeded": done.counts.succeeded,
        "spent": spent,
        "all_realtime": realtime,
        "paid_twice": billed_in_batch + called_realtime - done.counts.succeeded,
        "paid_twice_counted": done.counts.paid_twice,
        "finished_vs_deadline": (done.finished_at or time.time()) - deadline,
        "took": (done.finished_at or time.time()) - started,
        "fell_back": fell_back,
        "billed_in_batch": billed_in_batch,
        "called_realtime": called_realtime,
    }


async def main(jobs: int, deadline_s: float, workers: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    for stall in (False, True):
        r = await one_run(jobs, deadline_s, workers, stall)
        name = "provider batch stalls" if stall else "provider batch on time"
        saving = 1 - r["spent"] / r["all_realtime"] if r["all_realtime"] else 0
        print(
            f"{name:24s}: {r['succeeded']}/{jobs} {r['status']} in {r['took']:.1f} s, "
            f"{-r['finished_vs_deadline']:.1f} s before the deadline (D = {deadline_s:.0f} s); "
            f"cost ${r['spent']:.4f} vs ${r['all_realtime']:.4f} all realtime ({saving:.0%} saved); "
            f"paid twice {r['paid_twice']} (counted {r['paid_twice_counted']}); "
            f"fell back to realtime {r['fell_back']} (lines billed in batch {r['billed_in_batch']}, "
            f"realtime calls {r['called_realtime']})"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--deadline-s", type=float, default=120.0)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    asyncio.run(main(a.jobs, a.deadline_s, a.workers))
