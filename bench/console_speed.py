"""The web console's server time on a 100,000-job batch.

    python -m bench.console_speed [--jobs 100000] [--runs 15]

A batch of `--jobs` chat lines is submitted (Producer.submit_batch, into the bench's own Redis database,
scheduled a day ahead so nothing runs it; its first 200 lines carry an image each), then a slice of it
is ended the way a worker ends jobs (some succeeded, some failed with two error types). The console is
then asked, in process through its ASGI app (real Redis, a local store, no network), for:

- the batch page: counts from the batch record, the first 50 rows (target: under 1 s);
- a page of 100 rows, then its 100 thumbnails: made with Pillow the first time, read from storage after
  (target for the page and its thumbnails once they exist: under 300 ms);
- a filtered page (status=failed: examined from a cursor with a budget) and a custom_id search;
- the statistics part (jobs finished per interval, failures by type), which reads three small fields of
  every job: once cold, once from its few-seconds cache;
- the batches list.

Each figure is the median (and the slowest) of `--runs` requests, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
from PIL import Image

from bench._common import BENCH_REDIS_URL, clean_redis_db
from mmq.contract import Attempt, JobError, JobResult, JobStatus
from mmq.settings import Settings
from mmq.storage import open_storage, put_blob
from producer.api import create_app
from producer.auth import hash_key
from producer.submit import BatchLine

KEY = "mmq_bench_console_key"
IMAGES = 200
ENDED = 3000  # jobs ended by hand: 2,700 succeeded, 300 failed


def _image(n: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (n % 256, (7 * n) % 256, 255 - n % 256)).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def lines(jobs: int) -> Iterator[BatchLine]:
    for n in range(jobs):
        text = f"Write a tagline for product {n}."
        content: str | list = text
        if n < IMAGES:
            content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": _image(n)}}]
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], "max_tokens": 40}
        obj = {"custom_id": f"p-{n:06d}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        yield BatchLine.from_obj(obj, n + 1)


async def end_some(app, batch_id: str) -> None:
    """What workers do to ENDED jobs: claim, store a result (or an error), finish."""
    records, storage = app.state.records, app.state.storage
    answer = await put_blob(
        storage, b'{"choices":[{"message":{"role":"assistant","content":"ok"}}]}', "application/json"
    )
    ids = [i.decode() for i in await records.redis.lrange(records.batch_jobs_key(batch_id), 0, ENDED - 1)]
    for n, job_id in enumerate(ids):
        claim = await records.claim(job_id)
        job = claim.job
        assert job is not None, claim.outcome
        job.attempts = [Attempt(target="openai", status=200, latency_ms=300.0)]
        job.finished_at = time.time()
        if n % 10 == 3:
            kind = "timeout" if n % 20 == 3 else "provider_error"
            job.error = JobError(type=kind, message=f"{kind} from the provider")
            await records.finish(job, [JobStatus.running], JobStatus.failed, provider_calls=1)
        else:
            job.result = JobResult(body_key=answer)
            await records.finish(job, [JobStatus.running], JobStatus.succeeded, provider_calls=1)


async def timed(runs: int, call: Callable[[], Awaitable[httpx.Response]]) -> tuple[float, float]:
    """(median, max) milliseconds of `runs` calls; each must answer 200."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        r = await call()
        times.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, (r.status_code, r.text[:300])
    return statistics.median(times), max(times)


async def main(jobs: int, runs: int, redis_url: str) -> None:
    with clean_redis_db(redis_url), tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            redis_url=redis_url, storage_url=f"file://{tmp}/store", api_keys={hash_key(KEY): "bench"}
        )
        app = create_app(settings, storage=open_storage(settings.storage_url))
        async with app.router.lifespan_context(app):
            started = time.perf_counter()
            batch = await app.state.producer.submit_batch(
                lines(jobs), tenant="bench", not_before=time.time() + 86400, metadata={"source": "bench"}
            )
            print(f"submitted {batch.counts.total:,} jobs in {time.perf_counter() - started:.1f} s")
            await end_some(app, batch.id)
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as c:
                page = await c.get("/console/login")
                token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
                r = await c.post("/console/login", data={"key": KEY, "login_token": token})
                assert r.status_code == 303, r.text
                url = f"/console/batches/{batch.id}"
                rows: list[tuple[str, float, float, str]] = []

                def add(name: str, figures: tuple[float, float], target: str = "") -> None:
                    rows.append((name, *figures, target))

                add("batch page (counts + 50 rows)", await timed(runs, lambda: c.get(url)), "< 1000")
                add("page of 100 rows", await timed(runs, lambda: c.get(f"{url}?limit=100&from=0")))
                html = (await c.get(f"{url}?limit=100&from=0")).text
                thumbs = re.findall(r'<img class="thumb" src="([^"]+)"', html)
                assert len(thumbs) == 100, len(thumbs)

                async def all_thumbs() -> httpx.Response:
                    answers = await asyncio.gather(*(c.get(t) for t in thumbs))
                    assert all(a.status_code == 200 for a in answers)
                    return answers[0]

                add("its 100 thumbnails, made (Pillow)", await timed(1, all_thumbs))
                add("its 100 thumbnails, from storage", await timed(runs, all_thumbs))

                async def page_with_thumbs() -> httpx.Response:
                    r = await c.get(f"{url}?limit=100&from=0")
                    await all_thumbs()
                    return r

                add("100 rows + their thumbnails (warm)", await timed(runs, page_with_thumbs), "< 300")
                add(
                    "filtered: status=failed, 50 rows",
                    await timed(runs, lambda: c.get(f"{url}?status=failed")),
                )
                add(
                    "search: custom_id contains 'p-0999'", await timed(runs, lambda: c.get(f"{url}?q=p-0999"))
                )
                add(
                    f"statistics part, cold ({jobs:,} jobs read)",
                    await timed(1, lambda: c.get(f"{url}/part/stats")),
                )
                add("statistics part, cached", await timed(runs, lambda: c.get(f"{url}/part/stats")))
                add(
                    "summary part (polled every 2 s)", await timed(runs, lambda: c.get(f"{url}/part/summary"))
                )
                add("batches list", await timed(runs, lambda: c.get("/console/")))
        print(f"\nconsole server time, {jobs:,}-job batch, in process (real Redis, local store); ms")
        print(f"{'':42} {'median':>8} {'slowest':>8}  target")
        for name, median, worst, target in rows:
            print(f"{name:42} {median:8.1f} {worst:8.1f}  {target}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.runs, args.redis_url))
