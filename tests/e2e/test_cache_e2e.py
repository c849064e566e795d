"""Duplicate skipping over real Redis and real HTTP: the simulator counts provider calls.

In-process job functions where the interleaving matters (single-flight); a real worker process where a
user's whole batch is the point (re-submitting a batch, levels with duplicates in flight).
"""

from __future__ import annotations

import asyncio
import http.server
import io
import threading
from collections.abc import Iterator

import httpx
import pytest
from arq import Retry
from PIL import Image, PngImagePlugin

from mmq.cache import CacheEntry
from mmq.contract import JobStatus
from producer.submit import BatchLine, Producer
from producer.views import result_body
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import wait_batch
from worker.pipeline import run_job


def stats(base_url: str) -> dict[str, int]:
    return httpx.get(base_url.removesuffix("/v1") + "/sim/stats").json()["by_path"]


def chat_calls(base_url: str) -> int:
    return stats(base_url).get("/v1/chat/completions", 0)


def fault(base_url: str, **spec) -> None:
    httpx.post(base_url.removesuffix("/v1") + "/sim/faults", json=spec).raise_for_status()


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def image_server() -> Iterator[tuple[str, bytes]]:
    """An http image host on loopback: (URL of a PNG, its bytes)."""
    png = png_bytes((10, 160, 90), (120, 80))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/catalog/sku-1.png", png
    server.shutdown()


async def test_the_same_image_by_http_url_and_by_data_url_is_one_provider_call(
    runtime, make_simulator, image_server
):
    sim = make_simulator("--latency-ms", "10")
    rt, producer = runtime(sim, fetch_allow_hosts=["127.0.0.1"])
    url, png = image_server

    by_url = await producer.submit_job("/v1/chat/completions", chat_body(url), tenant="t")
    assert by_url.cache_key is None  # the producer does not fetch: the worker keys it
    await run_job({"mmq": rt}, by_url.id)
    first = await rt.records.get_job(by_url.id)
    assert first.status is JobStatus.succeeded and not first.cached

    # the same bytes inline: answered at submit, never enqueued
    queued = await rt.records.redis.zcard(rt.settings.queue_name)
    inline = await producer.submit_job("/v1/chat/completions", chat_body(data_url(png)), tenant="t")
    assert inline.status is JobStatus.succeeded and inline.cached and inline.cached_from == by_url.id
    assert await rt.records.redis.zcard(rt.settings.queue_name) == queued

    # and the other way round, the URL second: the worker fetches, keys, and finds the entry
    again = await producer.submit_job("/v1/chat/completions", chat_body(url), tenant="t")
    await run_job({"mmq": rt}, again.id)
    assert (await rt.records.get_job(again.id)).cached
    assert chat_calls(sim) == 1
    body = await result_body(await rt.records.get_job(again.id), rt.storage)
    assert body == await result_body(first, rt.storage)


async def test_identical_jobs_in_flight_make_one_call_and_the_others_take_its_result(runtime, make_simulator):
    sim = make_simulator("--latency-ms", "300")
    rt, producer = runtime(sim)
    body = chat_body(data_url(png_bytes((200, 20, 20))))
    jobs = [await producer.submit_job("/v1/chat/completions", body, tenant="t") for _ in range(5)]
    await asyncio.gather(*(run_job({"mmq": rt}, j.id) for j in jobs))
    records = [await rt.records.get_job(j.id) for j in jobs]
    assert chat_calls(sim) == 1
    assert all(r.status is JobStatus.succeeded for r in records)
    leaders = [r for r in records if not r.cached]
    assert len(leaders) == 1
    assert {r.cached_from for r in records if r.cached} == {leaders[0].id}
    assert all(r.result == leaders[0].result for r in records)  # the same stored result, not a copy


async def test_when_the_leader_fails_a_waiting_duplicate_takes_over(runtime, make_simulator):
    sim = make_simulator("--latency-ms", "200")
    rt, producer = runtime(sim)
    fault(sim, status=400, count=1, message="scripted refusal")  # the first call only
    body = chat_body(data_url(png_bytes((20, 20, 200))))
    a, b = [await producer.submit_job("/v1/chat/completions", body, tenant="t") for _ in range(2)]
    await asyncio.gather(run_job({"mmq": rt}, a.id), run_job({"mmq": rt}, b.id))
    records = [await rt.records.get_job(j.id) for j in (a, b)]
    assert sorted(r.status.value for r in records) == ["failed", "succeeded"]
    assert not any(r.cached for r in records)  # the survivor called the provider itself
    assert chat_calls(sim) == 2


async def test_a_duplicate_of_a_slow_leader_leaves_its_slot_and_takes_the_result_later(
    runtime, make_simulator
):
    sim = make_simulator("--latency-ms", "10")
    rt, producer = runtime(sim, cache_wait_s=0.2)
    body = chat_body(data_url(png_bytes((90, 90, 20))))
    leader, waiter = [await producer.submit_job("/v1/chat/completions", body, tenant="t") for _ in range(2)]
    assert leader.cache_key == waiter.cache_key
    await rt.cache.lookup_or_lead(leader.cache_key, leader.id, 60)  # the leader is mid-call elsewhere
    with pytest.raises(Retry):
        await run_job({"mmq": rt}, waiter.id)
    assert chat_calls(sim) == 0
    await run_job({"mmq": rt}, leader.id)
    await run_job({"mmq": rt}, waiter.id)  # the deferred re-run
    rec = await rt.records.get_job(waiter.id)
    assert rec.cached and rec.cached_from == leader.id
    assert chat_calls(sim) == 1


async def test_bypass_refresh_ttl_and_tenants(runtime, make_simulator):
    sim = make_simulator("--latency-ms", "5")
    rt, producer = runtime(sim)
    body = chat_body(data_url(png_bytes((1, 2, 3))))

    async def run(**kw) -> object:
        job = await producer.submit_job("/v1/chat/completions", body, **{"tenant": "t", **kw})
        if job.status is JobStatus.queued:
            await run_job({"mmq": rt}, job.id)
        return await rt.records.get_job(job.id)

    first = await run()
    assert not first.cached and chat_calls(sim) == 1
    assert (await run()).cached and chat_calls(sim) == 1
    bypass = await run(cache=False)
    assert not bypass.cached and chat_calls(sim) == 2
    refreshed = await run(cache={"refresh": True})
    assert not refreshed.cached and chat_calls(sim) == 3
    assert (await run()).cached_from == refreshed.id  # the refresh replaced the entry
    assert not (await run(tenant="other")).cached and chat_calls(sim) == 4

    short = chat_body(data_url(png_bytes((4, 5, 6))))
    made = await producer.submit_job("/v1/chat/completions", short, tenant="t", cache={"ttl_s": 1})
    await run_job({"mmq": rt}, made.id)
    assert 0 < await rt.records.redis.ttl(rt.cache.entry_key(made.cache_key)) <= 1
    await asyncio.sleep(1.1)
    later = await producer.submit_job("/v1/chat/completions", short, tenant="t")
    assert not later.cached


async def test_perceptual_level_takes_a_near_duplicate_that_pixels_level_does_not(runtime, make_simulator):
    sim = make_simulator("--latency-ms", "5")
    rt, producer = runtime(sim)
    img = Image.new("RGB", (64, 48), (180, 40, 40))
    touched = img.copy()
    touched.putpixel((10, 10), (0, 0, 0))  # a speck of dust
    original, dusty = data_url(encode(img, "PNG")), data_url(encode(touched, "PNG"))

    for level, expected_calls in (("pixels", 2), ("perceptual", 1)):
        before = chat_calls(sim)
        for url in (original, dusty):
            job = await producer.submit_job(
                "/v1/chat/completions", chat_body(url), tenant=f"t-{level}", cache={"level": level}
            )
            if job.status is JobStatus.queued:
                await run_job({"mmq": rt}, job.id)
        assert chat_calls(sim) - before == expected_calls, level


def catalog_lines() -> tuple[list[BatchLine], int, int]:
    """10 distinct product images, 4 lines repeating earlier lines byte for byte, 6 repeating earlier
    images re-encoded losslessly or with other metadata; interleaved so duplicates run at the same time.
    Returns (lines, distinct byte contents, distinct pixel contents)."""
    images = [Image.new("RGB", (48 + i, 40), (25 * i, 255 - 20 * i, 90)) for i in range(10)]
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "re-exported")
    variants = [
        encode(images[0], "WEBP", lossless=True),
        encode(images[1], "PNG", pnginfo=info),
        encode(images[2], "TIFF"),
        encode(images[3], "BMP"),
        encode(images[4], "PNG", compress_level=0),
        encode(images[5], "WEBP", lossless=True),
    ]
    bodies = [chat_body(data_url(encode(img, "PNG"))) for img in images]
    bodies = [
        b for pair in zip(bodies[:6], [chat_body(data_url(v)) for v in variants], strict=True) for b in pair
    ]
    bodies += [chat_body(data_url(encode(img, "PNG"))) for img in images[6:]]
    bodies += [bodies[0], bodies[2], bodies[12], bodies[13]]  # byte-for-byte repeats
    lines = [
        BatchLine(body=b, url="/v1/chat/completions", custom_id=f"line-{n}") for n, b in enumerate(bodies)
    ]
    return lines, len(bodies) - 4, 10


async def test_levels_with_duplicates_in_flight_and_a_resubmitted_batch_through_a_real_worker(
    stores, settings, mmq_env, worker_process
):
    redis, records, storage = stores
    producer = Producer(redis, storage, settings)
    sim = mmq_env["MMQ_OPENAI_BASE_URL"]
    lines, distinct_bytes, distinct_pixels = catalog_lines()

    exact = await producer.submit_batch(lines, tenant="exact")
    done = await wait_batch(records, exact.id)
    assert done.counts.succeeded == len(lines)
    assert done.counts.provider_calls == chat_calls(sim) == distinct_bytes == len(lines) - 4
    assert done.counts.cached == 4

    before = chat_calls(sim)
    pixels = await producer.submit_batch(lines, tenant="pixels", cache={"level": "pixels"})
    done = await wait_batch(records, pixels.id)
    assert done.counts.provider_calls == chat_calls(sim) - before == distinct_pixels
    assert done.counts.cached == len(lines) - distinct_pixels

    # the same batch again: every line answered at submit, nothing reaches a worker or a provider
    before = chat_calls(sim)
    again = await producer.submit_batch(lines, tenant="exact")
    assert again.status.value == "completed" and again.counts.cached == len(lines)
    assert again.counts.provider_calls == 0 and chat_calls(sim) == before
    first_ids = [i async for chunk in records.iter_batch_job_ids(exact.id) for i in chunk]
    again_ids = [i async for chunk in records.iter_batch_job_ids(again.id) for i in chunk]
    for a_id, b_id in zip(first_ids, again_ids, strict=True):
        a, b = await records.get_job(a_id), await records.get_job(b_id)
        assert await result_body(a, storage) == await result_body(b, storage)


async def test_other_kinds_are_cached_and_their_files_are_shared_not_copied(
    stores, settings, mmq_env, worker_process
):
    redis, records, storage = stores
    producer = Producer(redis, storage, settings)
    lines = [
        BatchLine(
            body={"prompt": "a red chair", "size": "256x256"}, url="/v1/images/generations", custom_id="img"
        ),
        BatchLine(
            body={"model": "tts-1", "input": "hello", "voice": "nova", "response_format": "wav"},
            url="/v1/audio/speech",
            custom_id="say",
        ),
    ]
    first = await wait_batch(records, (await producer.submit_batch(lines, tenant="t")).id)
    second = await producer.submit_batch(lines, tenant="t")
    assert (
        first.counts.provider_calls == 2 and second.counts.cached == 2 and second.counts.provider_calls == 0
    )
    ids = [[i async for c in records.iter_batch_job_ids(b.id) for i in c] for b in (first, second)]
    for a_id, b_id in zip(*ids, strict=True):
        a, b = await records.get_job(a_id), await records.get_job(b_id)
        assert [f.key for f in a.result.files] == [f.key for f in b.result.files]  # one stored copy
        body = await result_body(b, storage)
        url = (body.get("data") or [body])[0]["url"]
        assert url == f"/api/jobs/{b.id}/files/0"  # the hit's own file URL, served from the shared blob


async def test_cache_entries_expire_in_redis_and_hold_no_request_content(runtime, make_simulator):
    sim = make_simulator("--latency-ms", "5")
    rt, producer = runtime(sim, cache_ttl_s=3600)
    job = await producer.submit_job(
        "/v1/chat/completions", chat_body(data_url(png_bytes((7, 7, 7)))), tenant="t"
    )
    await run_job({"mmq": rt}, job.id)
    raw = await rt.records.redis.get(rt.cache.entry_key(job.cache_key))
    entry = CacheEntry.model_validate_json(raw)
    assert (
        entry.job_id == job.id
        and 3500 < await rt.records.redis.ttl(rt.cache.entry_key(job.cache_key)) <= 3600
    )
    assert b"Describe" not in raw and b"base64" not in raw  # a pointer to the result, not the request
    assert not await rt.records.redis.exists(rt.cache.lock_key(job.cache_key))  # released with the entry


async def test_a_finished_job_record_keeps_media_references_not_media(runtime, make_simulator):
    """Claim check: the media stage turns blob references into bytes for the call, on a copy; the record
    written back to Redis still holds only the reference."""
    sim = make_simulator("--latency-ms", "5")
    rt, producer = runtime(sim)
    job = await producer.submit_job(
        "/v1/chat/completions", chat_body(data_url(png_bytes((9, 9, 9)))), tenant="t"
    )
    await run_job({"mmq": rt}, job.id)
    record = await rt.records.redis.hgetall(rt.records.job_key(job.id))
    raw = b"\n".join(v for kv in record.items() for v in kv)  # the spec and every state field
    assert b"succeeded" in raw and b"mmq-blob://" in raw and b"base64" not in raw
