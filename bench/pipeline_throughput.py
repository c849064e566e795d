"""mmq's whole pipeline vs raw arq no-op jobs, on the same real Redis, same worker settings.

    python -m bench.pipeline_throughput [--jobs 2000] [--max-jobs 128] [--profile out.prof]

mmq jobs are text-only chat requests sent to a zero-latency simulator in another process, so the figure
is mmq's own overhead (records, Lua status moves, adapter, HTTP, result storage) on top of arq's.
Both runs use one in-process burst worker; the time counted is from worker start to the last job done.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import tempfile
import time
from collections import Counter

from arq import Worker, func
from arq.connections import ArqRedis

from bench._common import ROOT, RoundTrips, clean_redis_db, command_delta, commandstats, simulator
from mmq.connections import MMQ_CLIENT_NAME, connect
from mmq.contract import BatchStatus
from mmq.queue import deserialize, serialize
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import LocalStorage, open_storage
from producer.submit import BatchLine, Producer
from worker.worker import build_worker


async def noop(ctx: dict, n: int) -> int:
    return n


async def raw_arq(
    url: str, jobs: int, max_jobs: int, poll: float
) -> tuple[float, float, dict[str, int], int]:
    redis = ArqRedis.from_url(url)
    redis.job_serializer, redis.job_deserializer = serialize, deserialize
    for n in range(jobs):
        await redis.enqueue_job("noop", n, _queue_name="bench:raw")
    worker = Worker(
        functions=[func(noop, name="noop")],
        redis_pool=redis,
        queue_name="bench:raw",
        burst=True,
        max_jobs=max_jobs,
        poll_delay=poll,
        handle_signals=False,
        job_serializer=serialize,
        job_deserializer=deserialize,
        queue_read_limit=max(max_jobs * 5, 500),
        keep_result=60,
    )
    stats = commandstats(url)
    with RoundTrips() as trips:
        started, cpu = time.perf_counter(), time.process_time()
        await worker.main()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    commands = command_delta(stats, commandstats(url))
    assert worker.jobs_complete == jobs, worker.jobs_complete
    await worker.close()
    return elapsed, cpu, commands, sum(trips.counts.values())


async def mmq_pipeline(
    url: str, base_url: str, jobs: int, max_jobs: int, poll: float, store: str, profile: str | None = None
) -> tuple[float, float, dict[str, int], Counter, Counter, float]:
    settings = Settings(
        redis_url=url,
        storage_url=f"file://{store}",
        openai_base_url=base_url,
        openai_api_key="bench",
        max_jobs=max_jobs,
        poll_delay_s=poll,
        queue_name="bench:mmq",
    )
    redis = connect(url)
    producer = Producer(redis, open_storage(settings.storage_url), settings)
    lines = (
        BatchLine(
            body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"item {n}"}]},
            url="/v1/chat/completions",
            custom_id=str(n),
        )
        for n in range(jobs)
    )
    batch = await producer.submit_batch(lines, tenant="bench")
    worker = build_worker(settings, burst=True, handle_signals=False)
    stats = commandstats(url)
    # CPU time, not wall: a send that wakes Redis on a busy 2-core machine waits while Redis runs
    profiler = cProfile.Profile(time.process_time) if profile else None
    with RoundTrips() as trips, StorageClock() as disk:
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        await worker.main()
        if profiler:
            profiler.disable()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    commands = command_delta(stats, commandstats(url))
    await worker.close()
    if profiler:
        profiler.dump_stats(profile)
        print(f"profile of the mmq run written to {profile} (python -m pstats {profile})")
    final = await Records(redis, settings.key_prefix).get_batch(batch.id)
    assert final and final.status is BatchStatus.completed and final.counts.succeeded == jobs, final
    await redis.aclose()
    return elapsed, cpu, commands, trips.counts, trips.waited, disk.seconds


class StorageClock:
    """The CPU time of the result files' writes (create, write, rename): the file system's kernel work,
    which on this machine's shared disk swings from ~40 µs to over 1 ms per file with other processes'
    I/O, so it is printed apart from mmq's own CPU."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> StorageClock:
        self._write = LocalStorage._write

        def timed(storage: LocalStorage, path, data: bytes) -> None:  # type: ignore[no-untyped-def]
            started = time.process_time()
            try:
                self._write(storage, path, data)
            finally:
                self.seconds += time.process_time() - started

        LocalStorage._write = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        LocalStorage._write = self._write  # type: ignore[method-assign]


def _top(commands: dict[str, int], jobs: int) -> str:
    top = sorted(commands.items(), key=lambda kv: -kv[1])[:8]
    return ", ".join(f"{name} {n / jobs:.1f}" for name, n in top)


async def main(
    jobs: int, max_jobs: int, poll: float, profile: str | None = None, store_dir: str | None = None
) -> None:
    logging.basicConfig(level=logging.WARNING)
    with (
        simulator() as base_url,
        clean_redis_db() as url,
        tempfile.TemporaryDirectory(dir=store_dir or ROOT, prefix=".bench-store-") as store,
    ):
        raw, raw_cpu, raw_cmds, raw_trips = await raw_arq(url, jobs, max_jobs, poll)
        mmq, mmq_cpu, mmq_cmds, trips, waited, disk = await mmq_pipeline(
            url, base_url, jobs, max_jobs, poll, store, profile
        )
    print(
        f"raw arq no-op jobs : {jobs / raw:7.0f} jobs/s ({raw:.2f} s for {jobs}; "
        f"worker CPU {raw_cpu / jobs * 1000:.2f} ms/job)"
    )
    print(
        f"mmq pipeline       : {jobs / mmq:7.0f} jobs/s ({mmq:.2f} s for {jobs}; "
        f"worker CPU {mmq_cpu / jobs * 1000:.2f} ms/job; chat via zero-latency simulator, results stored)"
    )
    print(
        f"  of which result files: {disk / jobs * 1000:.2f} ms/job (the disk's create+rename); "
        f"mmq's own {(mmq_cpu - disk) / jobs * 1000:.2f} ms/job"
    )
    print(f"ratio mmq / raw    : {raw / mmq:.2f}  (max_jobs={max_jobs}, poll_delay={poll}s)")
    print(
        f"Redis round trips a job waits for: mmq's own {waited[MMQ_CLIENT_NAME] / jobs:.2f} (its named "
        f"connections), all {sum(waited.values()) / jobs:.2f}, against raw arq's {raw_trips / jobs:.2f}"
    )
    print(
        "  sent on the wire (coalesced: one send carries the commands of every job in that turn of the "
        f"event loop): mmq's own {trips[MMQ_CLIENT_NAME] / jobs:.2f} per job, "
        f"all {sum(trips.values()) / jobs:.2f}"
    )
    raw_total, mmq_total = sum(raw_cmds.values()), sum(mmq_cmds.values())
    print(
        f"Redis commands per job (INFO commandstats): raw arq {raw_total / jobs:.1f}, "
        f"mmq {mmq_total / jobs:.1f} (arq's and mmq's, scripts' inner calls included)"
    )
    print(f"  mmq by command: {_top(mmq_cmds, jobs)}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--max-jobs", type=int, default=128)
    p.add_argument("--poll-delay", type=float, default=0.05)
    p.add_argument("--profile", metavar="PATH", help="write a cProfile of the mmq run here (slows it)")
    p.add_argument(
        "--store-dir", metavar="DIR", help="the result folder's parent (default: the repo; /dev/shm: no disk)"
    )
    a = p.parse_args()
    asyncio.run(main(a.jobs, a.max_jobs, a.poll_delay, a.profile, a.store_dir))
