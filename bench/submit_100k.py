"""Submitting a big JSONL file: enqueue rate and the producer's peak memory.

    python -m bench.submit_100k [--lines 100000] [--small 10000] [--images]

A JSONL file of small text-only chat requests (OpenAI Batch format) is submitted twice, each time into a
fresh Redis database of the bench's own, with no worker running (only submission is measured). With
`--images` every request also carries a small inline image (a data: URL, one of 20), which the producer
checks and stores as a blob: the media path.
- the CLI/Python path (`mmq submit FILE`: Producer.submit_batch over a streamed file), in a child process
  whose peak RSS (VmHWM) is read when it ends;
- the HTTP API (`POST /api/batches` with the file streamed as the body) against an `mmq api` process.
Each is run at `--small` lines and at `--lines`: memory that does not grow with the file shows as the same
peak for both sizes. Printed: lines/s, peak RSS and Redis bytes per queued job per run.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench._common import ROOT, clean_redis_db, free_port
from producer.auth import hash_key

_CHILD = """
import asyncio, json, sys, time
from producer.jsonl import iter_jsonl
from producer.submit import Producer
from mmq.settings import Settings
from mmq.connections import connect
from mmq.storage import open_storage

async def main(path, redis_url, store):
    settings = Settings(redis_url=redis_url, storage_url=store)
    redis = connect(redis_url)
    producer = Producer(redis, open_storage(store), settings)
    started = time.perf_counter()
    batch = await producer.submit_batch(iter_jsonl(path), tenant="bench")
    elapsed = time.perf_counter() - started
    await redis.aclose()
    hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
    print(json.dumps({"jobs": batch.counts.total, "seconds": elapsed, "peak_rss_mb": int(hwm) / 1024}))

asyncio.run(main(*sys.argv[1:]))
"""


def _small_images(n: int = 20) -> list[str]:
    """`n` distinct 32x24 PNGs as data: URLs (~200 bytes each)."""
    from PIL import Image

    urls = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (32, 24), (i * 10, 100, 200 - i * 5)).save(buf, format="PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return urls


def write_jsonl(path: Path, lines: int, *, images: bool = False) -> None:
    urls = _small_images() if images else []
    with path.open("w") as f:
        for n in range(lines):
            text = f"Write a tagline for product {n}."
            content: str | list = text
            if urls:
                image = {"type": "image_url", "image_url": {"url": urls[n % len(urls)]}}
                content = [{"type": "text", "text": text}, image]
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": content}],
                "max_tokens": 40,
            }
            f.write(
                json.dumps(
                    {"custom_id": f"p-{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}
                )
            )
            f.write("\n")


def via_producer(path: Path, redis_url: str, store: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), redis_url, store],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) / 1024


def via_api(path: Path, redis_url: str, store: str) -> dict:
    port = free_port()
    key = "bench-key"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MMQ_REDIS_URL": redis_url,
        "MMQ_STORAGE_URL": store,
        "MMQ_API_KEYS": json.dumps({hash_key(key): "bench"}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "api", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        idle_mb = _hwm_mb(proc.pid)

        def chunks():
            with path.open("rb") as f:
                while chunk := f.read(256 * 1024):
                    yield chunk

        started = time.perf_counter()
        r = httpx.post(
            f"http://127.0.0.1:{port}/api/batches",
            content=chunks(),
            headers={"authorization": f"Bearer {key}", "content-type": "application/jsonl"},
            timeout=600,
        )
        elapsed = time.perf_counter() - started
        r.raise_for_status()
        return {
            "jobs": r.json()["counts"]["total"],
            "seconds": elapsed,
            "peak_rss_mb": _hwm_mb(proc.pid),
            "idle_rss_mb": idle_mb,
        }
    finally:
        proc.terminate()
        proc.wait(10)


def _used_memory(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--images", action="store_true", help="a small data: image in every request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for lines in (args.small, args.lines):
            path = Path(tmp) / f"requests-{lines}.jsonl"
            write_jsonl(path, lines, images=args.images)
            size_mb = path.stat().st_size / 1e6
            for name, run in (("python/cli", via_producer), ("http api", via_api)):
                with clean_redis_db() as redis_url:
                    base = _used_memory(redis_url)
                    result = run(path, redis_url, f"file://{tmp}/store-{name.replace('/', '-')}-{lines}")
                    # what the queued jobs cost Redis: records, batch list, arq payloads and queue entries
                    result["redis_bytes_per_job"] = round((_used_memory(redis_url) - base) / result["jobs"])
                result |= {"path": name, "lines": lines, "file_mb": round(size_mb, 1)}
                result["lines_per_s"] = round(result["jobs"] / result["seconds"])
                result["seconds"] = round(result["seconds"], 2)
                print(json.dumps(result))


if __name__ == "__main__":
    main()
