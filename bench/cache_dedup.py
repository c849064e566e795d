"""A catalog full of duplicates: how many provider calls the cache saves, at each level.

    python -m bench.cache_dedup [--distinct 1400] [--byte-dups 200] [--reencoded 400] [--workers 4]

2,000 vision jobs by default: 1,400 distinct product images; 200 lines that repeat an earlier line byte for
byte; 400 lines that repeat an earlier image re-encoded losslessly or with other metadata (lossless WebP,
TIFF, BMP, PNG with text chunks, uncompressed PNG, rotated pixels with an EXIF orientation that turns them
back). Worker processes share one Redis; the simulator (its own process) answers in 100 ± 30 ms and
counts calls.

Each level runs twice, with a fresh tenant (so no entry carries over):
- `spread`: every duplicate comes later in the file than its original (some originals have finished,
  others are still in flight when their duplicate arrives);
- `adjacent`: every duplicate right behind its original, so the two run at the same time (single-flight).
Then the first batch is submitted again: every line is answered at submit, nothing is enqueued.
Printed per run: provider calls (simulator) against what the level should give, batch counters, wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import random
import tempfile
import time

import httpx
from PIL import Image, PngImagePlugin

from bench._common import clean_redis_db, simulator, worker_processes
from mmq.connections import connect
from mmq.contract import BatchRecord, BatchStatus
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.submit import BatchLine, Producer

PROMPT = "Write a one-line catalog caption."


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _product(i: int) -> Image.Image:
    """A distinct small picture per i: a colour field with i written into a row of pixels."""
    img = Image.new("RGB", (48, 36), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    for bit in range(16):
        img.putpixel((bit, 0), (255, 255, 255) if i >> bit & 1 else (0, 0, 0))
    return img


def _reencoded(img: Image.Image, variant: int) -> bytes:
    """The same pixels in other bytes."""
    kind = variant % 6
    if kind == 0:
        return _encode(img, "WEBP", lossless=True)
    if kind == 1:
        return _encode(img, "TIFF")
    if kind == 2:
        return _encode(img, "BMP")
    if kind == 3:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", f"re-exported by the DAM, run {variant}")
        return _encode(img, "PNG", pnginfo=info)
    if kind == 4:
        return _encode(img, "PNG", compress_level=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to show": the stored pixels are turned the other way
    return _encode(img.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif.tobytes())


def _body(image: bytes, mime: str) -> dict:
    url = f"data:{mime};base64,{base64.b64encode(image).decode()}"
    content = [{"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": url}}]
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}


MIME = {"WEBP": "image/webp", "TIFF": "image/tiff", "BMP": "image/bmp", "PNG": "image/png"}


def build(distinct: int, byte_dups: int, reencoded: int, adjacent: bool, seed: int = 3) -> list[dict]:
    """The batch's bodies, in file order."""
    rng = random.Random(seed)
    originals = [_body(_encode(_product(i), "PNG"), "image/png") for i in range(distinct)]
    variants = []
    for n, i in enumerate(rng.sample(range(distinct), reencoded)):  # each re-encodes a different image
        data = _reencoded(_product(i), n)
        fmt = Image.open(io.BytesIO(data)).format or "PNG"
        variants.append((i, _body(data, MIME[fmt])))
    # byte-for-byte repeats of earlier lines (originals or re-encodings), each a different one
    pool = [(i, b) for i, b in enumerate(originals)] + variants
    repeats = [pool[k] for k in rng.sample(range(len(pool)), byte_dups)]
    followers: dict[int, list[dict]] = {}
    for i, body in variants + repeats:
        followers.setdefault(i, []).append(body)
    if adjacent:
        return [b for i, original in enumerate(originals) for b in [original, *followers.get(i, [])]]
    # each duplicate somewhere after its original: sort originals at i, duplicates at random later points
    keyed = [(float(i), n, body) for n, (i, body) in enumerate(enumerate(originals))]
    for i, bodies in followers.items():
        keyed += [(rng.uniform(i + 0.5, distinct), len(keyed) + k, body) for k, body in enumerate(bodies)]
    return [body for _, _, body in sorted(keyed, key=lambda t: (t[0], t[1]))]


async def _wait(records: Records, batch_id: str) -> BatchRecord:
    while True:
        rec = await records.get_batch(batch_id)
        if rec and rec.status is not BatchStatus.in_progress:
            return rec
        await asyncio.sleep(0.05)


async def _calls(client: httpx.AsyncClient, sim_url: str) -> int:
    stats = (await client.get(sim_url.removesuffix("/v1") + "/sim/stats")).json()
    return stats["by_path"].get("/v1/chat/completions", 0)


async def run(args: argparse.Namespace, redis_url: str, sim_url: str, store: str) -> list[dict]:
    settings = Settings(redis_url=redis_url, storage_url=f"file://{store}")
    redis = connect(redis_url)
    records = Records(redis)
    producer = Producer(redis, open_storage(settings.storage_url), settings)
    stack = contextlib.ExitStack()
    stack.enter_context(worker_processes(args.workers, redis_url, settings.storage_url, sim_url))
    rows = []
    lines_total = args.distinct + args.byte_dups + args.reencoded
    expected = {"exact": lines_total - args.byte_dups, "pixels": args.distinct}
    try:
        await asyncio.sleep(3)
        async with httpx.AsyncClient() as client:
            first: tuple[str, list[dict]] | None = None
            for level in ("exact", "pixels"):
                for order in ("spread", "adjacent"):
                    bodies = build(
                        args.distinct, args.byte_dups, args.reencoded, adjacent=order == "adjacent"
                    )
                    lines = [
                        BatchLine(body=b, url="/v1/chat/completions", custom_id=f"line-{n}")
                        for n, b in enumerate(bodies)
                    ]
                    tenant = f"{level}-{order}"
                    before = await _calls(client, sim_url)
                    started = time.monotonic()
                    batch = await producer.submit_batch(lines, tenant=tenant, cache={"level": level})
                    rec = await _wait(records, batch.id)
                    wall = time.monotonic() - started
                    calls = await _calls(client, sim_url) - before
                    first = first or (tenant, bodies)
                    rows.append(
                        {
                            "run": f"{level:<6} {order:<8}",
                            "lines": len(lines),
                            "provider_calls": calls,
                            "expected": expected[level],
                            "ok": calls == expected[level] == rec.counts.provider_calls,
                            "cached": rec.counts.cached,
                            "succeeded": rec.counts.succeeded,
                            "wall_s": round(wall, 2),
                        }
                    )
            assert first is not None
            tenant, bodies = first
            lines = [
                BatchLine(body=b, url="/v1/chat/completions", custom_id=f"line-{n}")
                for n, b in enumerate(bodies)
            ]
            before = await _calls(client, sim_url)
            started = time.monotonic()
            batch = await producer.submit_batch(lines, tenant=tenant, cache={"level": "exact"})
            rec = await _wait(records, batch.id)
            wall = time.monotonic() - started
            calls = await _calls(client, sim_url) - before
            rows.append(
                {
                    "run": "same batch again",
                    "lines": len(lines),
                    "provider_calls": calls,
                    "expected": 0,
                    "ok": calls == 0 == rec.counts.provider_calls,
                    "cached": rec.counts.cached,
                    "succeeded": rec.counts.succeeded,
                    "wall_s": round(wall, 2),
                }
            )
    finally:
        stack.close()
        await redis.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--distinct", type=int, default=1400)
    parser.add_argument("--byte-dups", type=int, default=200)
    parser.add_argument("--reencoded", type=int, default=400)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    knobs = {"latency_ms": "100", "jitter_ms": "30", "seed": "5"}
    with clean_redis_db() as redis_url, simulator(**knobs) as sim_url, tempfile.TemporaryDirectory() as store:
        rows = asyncio.run(run(args, redis_url, sim_url, store))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
