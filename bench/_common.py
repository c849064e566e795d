"""Shared bench plumbing: a simulator process on loopback and a Redis database of the bench's own."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
BENCH_REDIS_URL = os.environ.get("MMQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def simulator(**env: str) -> Iterator[str]:
    """Runs `mmq simulate` in its own process; yields its base URL (…/v1)."""
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **{f"MMQ_SIM_{k.upper()}": v for k, v in env.items()}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "simulate", "--port", str(port)],
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def clean_redis_db(url: str = BENCH_REDIS_URL) -> Iterator[str]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@contextlib.contextmanager
def worker_processes(n: int, redis_url: str, storage_url: str, sim_url: str, **extra: str) -> Iterator[None]:
    """`n` mmq worker processes against the simulator (MMQ_* settings in `extra`); stopped on exit."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MMQ_REDIS_URL": redis_url,
        "MMQ_STORAGE_URL": storage_url,
        "MMQ_OPENAI_BASE_URL": sim_url,
        "MMQ_OPENAI_API_KEY": "sk-bench",
        "MMQ_POLL_DELAY_S": "0.05",
        **extra,
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "producer.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
