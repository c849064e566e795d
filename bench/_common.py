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


class RoundTrips(contextlib.AbstractContextManager):
    """Counts Redis round trips in this process by connection name. `counts`: sends on the wire (a
    command, a script or a whole pipeline is one; the worker's coalesced sends carry every job's commands
    of one turn of the event loop, mmq/round_trips.py). `waited`: the round trips a caller waited for,
    as if each had gone alone (one per round_trips.send, one per other send). The worker names its own
    connections (mmq.connections.MMQ_CLIENT_NAME), so mmq's round trips are told apart from arq's."""

    def __init__(self) -> None:
        from collections import Counter

        self.counts: Counter[str | None] = Counter()
        self.waited: Counter[str | None] = Counter()

    def __enter__(self) -> RoundTrips:
        from redis.asyncio.connection import AbstractConnection

        from mmq import round_trips

        self._original = original = AbstractConnection.send_packed_command
        self._send, self._exchange = send, exchange = round_trips.send, round_trips._exchange
        counts, waited = self.counts, self.waited

        async def counted(conn, command, check_health=True):  # type: ignore[no-untyped-def]
            counts[conn.client_name] += 1
            waited[conn.client_name] += 1
            return await original(conn, command, check_health)

        def name_of(pool) -> str | None:  # type: ignore[no-untyped-def]
            return pool.connection_kwargs.get("client_name")

        async def asked(pool, commands):  # type: ignore[no-untyped-def]
            waited[name_of(pool)] += 1
            return await send(pool, commands)

        async def exchanged(pool, commands):  # type: ignore[no-untyped-def]
            waited[name_of(pool)] -= 1  # its send is counted by `asked`, once per caller
            return await exchange(pool, commands)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
        round_trips.send, round_trips._exchange = asked, exchanged  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        from redis.asyncio.connection import AbstractConnection

        from mmq import round_trips

        AbstractConnection.send_packed_command = self._original  # type: ignore[method-assign]
        round_trips.send, round_trips._exchange = self._send, self._exchange  # type: ignore[assignment]


def commandstats(url: str) -> dict[str, int]:
    """Calls per command on the server so far (INFO commandstats): deltas show what a run cost Redis."""
    client = redis.Redis.from_url(url)
    try:
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}
    finally:
        client.close()


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0) > 0}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far (Linux /proc; their children not included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)
    return total / tick


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
def worker_processes(
    n: int, redis_url: str, storage_url: str, sim_url: str, **extra: str
) -> Iterator[list[subprocess.Popen]]:
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
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
