"""Real processes: the simulator and arq workers run as `python -m producer.cli ...` on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mmq.connections import connect
from mmq.contract import BatchRecord, BatchStatus
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.auth import hash_key
from producer.submit import Producer
from worker.credentials import VirtualKeys
from worker.http import make_client
from worker.runtime import Runtime
from worker.targets import default_target

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "producer.cli", *args],
        env=full_env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def run_mmq(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`mmq ARGS…` as a user runs it, to the end; stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
    )


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer: {log.read_text()[-2000:]}")


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """Base URL (…/v1) of a simulator process with a little latency, like a real provider."""
    port = free_port()
    log = tmp_path / "simulator.log"
    proc = _spawn(["simulate", "--port", str(port), "--latency-ms", "20", "--seed", "7"], {}, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


@pytest.fixture
def make_simulator(tmp_path: Path) -> Iterator:
    """Factory: make_simulator(*cli_args) -> base URL (…/v1) of a fresh simulator process."""
    procs: list[subprocess.Popen] = []

    def make(*args: str) -> str:
        port = free_port()
        log = tmp_path / f"simulator-{port}.log"
        proc = _spawn(["simulate", "--port", str(port), *args], {}, log)
        procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/health", proc, log)
        return f"http://127.0.0.1:{port}/v1"

    yield make
    for proc in procs:
        _stop(proc)


@pytest.fixture
def mmq_env(redis_url: str, simulator: str, storage_url: str) -> dict[str, str]:
    return {
        "MMQ_REDIS_URL": redis_url,
        "MMQ_STORAGE_URL": storage_url,
        "MMQ_OPENAI_BASE_URL": simulator,
        "MMQ_OPENAI_API_KEY": "sk-test-e2e-virtual",
        "MMQ_POLL_DELAY_S": "0.05",
        "MMQ_RETRY_BASE_S": "0.05",
        # the tests' image servers are on loopback, as a local deployment's image server would be inside
        # its network: the operator allows them (the simulator is a self-hosted target, fed bytes)
        "MMQ_FETCH_ALLOW_HOSTS": "127.0.0.1",
        # a /v1 batch's 24 h window would make it `auto` (the batch tier: provider batches polled every
        # 30 s); these tests are about everything else, so their batches run realtime
        # (tests/e2e/test_batch_tier_e2e.py has the tier's own)
        "MMQ_BATCH_TIER_MIN_WINDOW_S": str(30 * 86400),
    }


KEY_A, KEY_B = "mmq_test_key_tenant_a", "mmq_test_key_tenant_b"  # the `api` fixture's tenant-a, tenant-b


@pytest.fixture
def api(mmq_env: dict[str, str], worker_process, tmp_path: Path) -> Iterator[str]:
    """An `mmq api` process (keys KEY_A → tenant-a, KEY_B → tenant-b) beside a worker; its base URL."""
    port = free_port()
    env = {**mmq_env, "MMQ_API_KEYS": json.dumps({hash_key(KEY_A): "tenant-a", hash_key(KEY_B): "tenant-b"})}
    log = tmp_path / "api.log"
    proc = _spawn(["api", "--port", str(port)], env, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture
def settings(mmq_env: dict[str, str]) -> Settings:
    return Settings(
        redis_url=mmq_env["MMQ_REDIS_URL"],
        storage_url=mmq_env["MMQ_STORAGE_URL"],
        openai_base_url=mmq_env["MMQ_OPENAI_BASE_URL"],
    )


@pytest.fixture
def worker_process(mmq_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A worker that has said it is ready (on a busy machine its start takes seconds); one that stopped
    at start fails the test at once with its own words, not after a test's long wait for its jobs."""
    log = tmp_path / "worker.log"
    proc = _spawn(["worker"], mmq_env, log)
    deadline = time.monotonic() + 90
    while "mmq worker ready" not in (log.read_text() if log.exists() else ""):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"the worker did not start: {log.read_text() if log.exists() else ''}")
        time.sleep(0.05)
    yield proc
    _stop(proc)


@pytest.fixture
async def stores(settings: Settings):
    redis = connect(settings.redis_url or "")
    yield redis, Records(redis, settings.key_prefix), open_storage(settings.storage_url)
    await redis.aclose()


async def wait_batch(records: Records, batch_id: str, timeout: float = 60) -> BatchRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = await records.get_batch(batch_id)
        if batch and batch.status not in (BatchStatus.in_progress, BatchStatus.cancelling):
            return batch
        await asyncio.sleep(0.1)
    raise TimeoutError(f"batch {batch_id} did not finish: {await records.get_batch(batch_id)}")


MakeRuntime = Callable[..., tuple[Runtime, Producer]]


@pytest.fixture
async def runtime(redis_url: str, storage_url: str) -> AsyncIterator[MakeRuntime]:
    """The worker's job function wired to real Redis and real HTTP, run in this process."""
    redis = connect(redis_url)
    clients: list[httpx.AsyncClient] = []

    def make(base_url: str, env: dict[str, str] | None = None, **overrides) -> tuple[Runtime, Producer]:
        settings = Settings(
            redis_url=redis_url,
            storage_url=storage_url,
            openai_base_url=base_url,
            openai_api_key="sk-default-target",
            retry_base_s=0.05,
            **overrides,
        )
        client = make_client(timeout_s=10)
        clients.append(client)
        storage = open_storage(settings.storage_url)
        rt = Runtime(
            settings=settings,
            records=Records(redis, settings.key_prefix),
            storage=storage,
            client=client,
            target=default_target(settings),
            keys=VirtualKeys(environ=env or {}),
        )
        return rt, Producer(redis, storage, settings)

    yield make
    for c in clients:
        await c.aclose()
    await redis.aclose()
