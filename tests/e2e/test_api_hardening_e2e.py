"""A real `mmq api` process under a connection flood: idle sockets cannot starve it of file descriptors,
`/health` keeps answering, and the log does not fill the disk."""

from __future__ import annotations

import logging
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from producer.serve import RepeatFilter
from tests.e2e.conftest import ROOT, _stop, free_port, wait_http

FD_LIMIT = 256


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_idle_sockets_cannot_exhaust_the_api(redis_url: str, storage_url: str, tmp_path: Path):
    port = free_port()
    log = tmp_path / "api.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MMQ_REDIS_URL": redis_url,
        "MMQ_STORAGE_URL": storage_url,
        "MMQ_API_KEYS": '{"0": "nobody"}',
        "MMQ_API_HEADER_TIMEOUT_S": "1",
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "api", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=_low_fd_limit,
    )
    idle: list[socket.socket] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/health", api, log)
        for _ in range(FD_LIMIT + 150):  # more sockets than the API has descriptors
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            idle.append(s)
        # the flood is still open (from the client's side) while /health is asked, with patience
        deadline = time.monotonic() + 30
        answered = False
        while time.monotonic() < deadline and not answered:
            try:
                answered = httpx.get(f"http://127.0.0.1:{port}/health", timeout=3).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.5)
        assert answered, log.read_text()[-2000:]
        assert api.poll() is None
    finally:
        for s in idle:
            s.close()
        _stop(api)
    lines = log.read_text(errors="replace").splitlines()
    assert len(lines) < 100, lines[-20:]
    assert not [line for line in lines if "out of system resource" in line or "Too many open" in line]


def test_a_repeated_log_line_is_summarised_not_repeated():
    logger = logging.getLogger("mmq-test-repeat")
    logger.propagate = False
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.addFilter(RepeatFilter(burst=3, interval_s=0.5))
    for _ in range(10_000):
        logger.error("socket.accept() out of system resource")
    time.sleep(0.6)
    logger.error("socket.accept() out of system resource")
    assert len(seen) == 4 and seen[-1].endswith("(9997 similar lines suppressed)")
