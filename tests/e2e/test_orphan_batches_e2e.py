"""No orphan batches (issue 13 item 4): a submission killed or interrupted midway leaves a batch that ends.

Real processes: `mmq submit` SIGKILLed or Ctrl-C'd mid-file, an `mmq api` SIGKILLed while /v1 reads an
input file; a worker (MMQ_SUBMIT_STALL_S=2) seals what a dead submission left, and the batch completes
with the lines that were submitted (a /v1 batch fails, as OpenAI's would), saying why. Before, each such
batch stayed unsealed and `in_progress` (/v1: `validating`) for ever.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from mmq.contract import BatchStatus
from producer.auth import hash_key
from tests.e2e.conftest import KEY_A, ROOT, _spawn, _stop, free_port, run_mmq, wait_batch, wait_http

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

LINES = 100_000  # ~4 s of submitting: the kill lands midway


def big_file(path: Path, n: int = LINES) -> Path:
    with path.open("w") as f:
        for i in range(n):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Say {i}."}]}
            f.write(
                json.dumps(
                    {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
                )
            )
            f.write("\n")
    return path


@pytest.fixture
def reaping_worker(mmq_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """A worker that seals a batch whose submission showed no progress for 2 s; its env."""
    env = {**mmq_env, "MMQ_SUBMIT_STALL_S": "2"}
    log = tmp_path / "reaping-worker.log"
    proc = _spawn(["worker"], env, log)
    time.sleep(0.3)
    if proc.poll() is not None:
        raise RuntimeError(log.read_text())
    yield env
    _stop(proc)


def start_submit(path: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """`mmq submit FILE` running; the batch id it printed first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "submit", path.name, "--tenant", "ops"],
        cwd=path.parent,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready, f"no batch id printed: {log.read_text()}"
    batch_id = proc.stdout.readline().decode().strip()
    assert batch_id.startswith("batch_"), log.read_text()
    return proc, batch_id


def once_lines_arrive(redis_url: str, batch_id: str) -> int:
    """Waits until the batch holds some jobs (the submit is midway); returns how many."""
    r = redis_sync.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            total = int(r.hget(f"mmq:batch:{batch_id}", "total") or 0)
            if total > 0:
                return total
            time.sleep(0.005)
    finally:
        r.close()
    raise TimeoutError("no line reached the batch")


async def test_a_killed_submit_leaves_a_batch_that_completes_with_what_was_sent(
    reaping_worker, stores, tmp_path
):
    redis, records, _ = stores
    env = reaping_worker
    proc, batch_id = start_submit(big_file(tmp_path / "in.jsonl"), env, tmp_path / "submit.log")
    once_lines_arrive(env["MMQ_REDIS_URL"], batch_id)
    proc.kill()  # SIGKILL: nothing of the CLI's own runs
    proc.wait(10)
    batch = await records.get_batch(batch_id)
    assert not batch.sealed and batch.counts.total < LINES
    batch = await wait_batch(records, batch_id, timeout=120)
    assert batch.status is BatchStatus.completed and batch.sealed
    assert batch.interrupted == "submission_interrupted"
    c = batch.counts
    assert (
        0 < c.total < LINES
        and c.succeeded == c.total
        and c.total == await redis.llen(f"mmq:batch:{batch_id}:jobs")
    )
    shown = run_mmq("status", batch_id, env=env, cwd=tmp_path)
    assert "submission_interrupted" in shown.stdout and "status    completed" in shown.stdout


async def test_ctrl_c_seals_the_batch_at_once_with_the_lines_sent(mmq_env, worker_process, stores, tmp_path):
    """Was: the first Ctrl-C was ignored (a second left the batch unsealed for ever)."""
    _, records, _ = stores
    log = tmp_path / "submit.log"
    proc, batch_id = start_submit(big_file(tmp_path / "in.jsonl"), mmq_env, log)
    once_lines_arrive(mmq_env["MMQ_REDIS_URL"], batch_id)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 130, log.read_text()
    assert f"interrupted: batch {batch_id} keeps the" in log.read_text()
    batch = await records.get_batch(batch_id)  # sealed by the CLI itself, no stall to wait for
    assert batch.sealed and batch.interrupted == "submission_interrupted" and batch.counts.total < LINES
    batch = await wait_batch(records, batch_id, timeout=120)
    assert batch.status is BatchStatus.completed and batch.counts.succeeded == batch.counts.total > 0


AUTH = {"authorization": f"Bearer {KEY_A}"}


def start_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = _spawn(
        ["api", "--port", str(port)], {**env, "MMQ_API_KEYS": json.dumps({hash_key(KEY_A): "a"})}, log
    )
    wait_http(f"http://127.0.0.1:{port}/health", proc, log)
    return proc, f"http://127.0.0.1:{port}"


def v1_create(base: str, data: bytes) -> dict:
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as c:
        f = c.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", data)}).json()
        create = {"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        return c.post("/v1/batches", json=create).json()


def v1_after_validating(base: str, batch_id: str, timeout: float = 60) -> dict:
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as c:
        deadline = time.monotonic() + timeout
        while (batch := c.get(f"/v1/batches/{batch_id}").json())["status"] == "validating":
            assert time.monotonic() < deadline, batch
            time.sleep(0.2)
        return batch


async def test_an_api_killed_while_v1_reads_the_file_leaves_a_batch_that_fails(
    reaping_worker, stores, tmp_path
):
    """Was: `validating` for ever (37,750 of 40,000 lines never submitted), a later cancel `cancelling`."""
    _, records, _ = stores
    env = reaping_worker
    data = big_file(tmp_path / "in.jsonl").read_bytes()
    first, base = start_api(env, tmp_path / "api-1.log")
    try:
        made = v1_create(base, data)
        first.kill()  # while it reads the file
        first.wait(10)
    finally:
        _stop(first)
    assert made["status"] == "validating"
    assert not (await records.get_batch(made["id"])).sealed
    second, base = start_api(env, tmp_path / "api-2.log")
    try:
        batch = v1_after_validating(base, made["id"])
    finally:
        _stop(second)
    assert batch["status"] == "failed" and batch["failed_at"]
    assert [e["code"] for e in batch["errors"]["data"]] == ["submission_interrupted"]
    assert batch["request_counts"]["total"] < LINES
    record = await wait_batch(records, made["id"], timeout=60)  # what was queued is cancelled
    assert record.status is BatchStatus.cancelled and record.counts.queued == 0
