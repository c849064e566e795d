"""A worker carries on through a Redis restart: nothing is lost, nothing answers itself from its own cache
entry, and the batch completes. A private redis-server with AOF on (the shared one is never restarted)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
from redis.exceptions import ConnectionError as RedisConnectionError

from mmq.connections import connect
from mmq.contract import BatchStatus
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.submit import BatchLine, Producer
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import _spawn, _stop, free_port


def _redis_server(port: int, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_redis(port: int) -> None:
    deadline = time.monotonic() + 20
    while (
        subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG"
    ):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)


def _shutdown(port: int) -> None:
    subprocess.run(["redis-cli", "-p", str(port), "shutdown"], capture_output=True)


def _chat_calls(base_url: str) -> int:
    return httpx.get(base_url.removesuffix("/v1") + "/sim/stats").json()["by_path"]["/v1/chat/completions"]


async def _batch(records: Records, batch_id: str):
    while True:
        try:
            return await records.get_batch(batch_id)
        except RedisConnectionError:
            await asyncio.sleep(0.1)


async def test_a_worker_carries_on_through_a_redis_restart(simulator, storage_url, tmp_path: Path):
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    server = _redis_server(port, folder)
    worker = None
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_redis(port)
        settings = Settings(redis_url=url, storage_url=storage_url, openai_base_url=simulator)
        redis = connect(url)
        records = Records(redis, settings.key_prefix)
        producer = Producer(redis, open_storage(storage_url), settings)
        n = 40
        lines = (
            BatchLine(
                body=chat_body(data_url(png_bytes((i, 3, 200)))), url="/v1/chat/completions", custom_id=str(i)
            )
            for i in range(n)
        )
        batch = await producer.submit_batch(lines, tenant="t")
        env = {
            "MMQ_REDIS_URL": url,
            "MMQ_STORAGE_URL": storage_url,
            "MMQ_OPENAI_BASE_URL": simulator,
            "MMQ_OPENAI_API_KEY": "sk-test",
            "MMQ_JOB_LEASE_S": "3",
            "MMQ_MAX_JOBS": "4",
            "MMQ_POLL_DELAY_S": "0.05",
        }
        log = tmp_path / "worker.log"
        worker = _spawn(["worker"], env, log)
        deadline = time.monotonic() + 60
        while (await _batch(records, batch.id)).counts.succeeded < 5:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            await asyncio.sleep(0.05)
        _shutdown(port)
        server.wait(20)
        await asyncio.sleep(2)  # Redis is away; the worker keeps trying
        assert worker.poll() is None, log.read_text()[-2000:]
        server = _redis_server(port, folder)
        _wait_redis(port)
        deadline = time.monotonic() + 120
        while (done := await _batch(records, batch.id)).status is BatchStatus.in_progress:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.1)
        assert worker.poll() is None, log.read_text()[-2000:]
        assert done.counts.succeeded == n, done
        ids = [i async for chunk in records.iter_batch_job_ids(batch.id) for i in chunk]
        jobs = await records.get_jobs(ids)
        assert all(j.cached_from != j.id for j in jobs), [j.id for j in jobs if j.cached_from == j.id]
        calls = _chat_calls(simulator)
        # every call counted, those a restart abandoned too; over only by a call whose count reached Redis
        # as it went down but which was then not sent (at most one per job in flight: MMQ_MAX_JOBS=4)
        assert calls <= done.counts.provider_calls <= calls + 4
        await redis.aclose()
    finally:
        if worker is not None:
            _stop(worker)
        server.terminate()
        server.wait(10)
