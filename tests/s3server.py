"""A real S3-compatible server for tests: moto in server mode, as a subprocess on 127.0.0.1.

    server = start_s3_server()          # waits until it answers
    server.make_bucket("mmq-test")
    url = server.storage_url("mmq-test", "run1")   # s3://mmq-test/run1?endpoint_url=http://127.0.0.1:PORT
    env = server.env                    # dummy AWS creds + region, for os.environ or worker subprocesses
    ...
    server.stop()

moto keeps everything in memory and checks no signatures, so any credentials work; we still sign (with
dummy keys) so the client code path is the one real S3 sees.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: str) -> None:
        self.process = process
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.env: dict[str, str] = dict(DUMMY_ENV)
        self._client: Any = None
        atexit.register(self.stop)  # a crashed test session must not leave the server running

    def client(self) -> Any:
        """A botocore S3 client for setup the storage API does not cover (obstore cannot make buckets)."""
        if self._client is None:
            import botocore.session

            session = botocore.session.get_session()
            self._client = session.create_client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=self.env["AWS_REGION"],
                aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            )
        return self._client

    def make_bucket(self, name: str) -> None:
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def storage_url(self, bucket: str, prefix: str = "") -> str:
        path = f"/{prefix}" if prefix else ""
        return f"s3://{bucket}{path}?endpoint_url={self.endpoint}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._client is not None:
            self._client.close()
            self._client = None
        try:
            os.unlink(self.log_path)
        except FileNotFoundError:
            pass
        atexit.unregister(self.stop)

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def _answers(endpoint: str) -> bool:
    try:
        with _DIRECT.open(endpoint + "/", timeout=1) as resp:  # ListBuckets: no auth on moto
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_s3_server(timeout_s: float = 30.0, attempts: int = 3) -> S3Server:
    """Start moto on a free loopback port and wait until it serves requests.

    The port is picked by binding port 0 and releasing it, so another process can grab it in between:
    a server that dies at start is retried on a new port.
    """
    errors: list[str] = []
    for _ in range(attempts):
        port = _free_port()
        log_fd, log_path = tempfile.mkstemp(prefix="mmq-moto-", suffix=".log")
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,  # werkzeug logs each request here; read back only if the start fails
            env={**os.environ, **DUMMY_ENV},
        )
        os.close(log_fd)
        server = S3Server(process, port, log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(server.endpoint):
                return server
            time.sleep(0.1)
        with open(log_path, errors="replace") as f:
            errors.append(f"port {port}: exit={process.poll()} {f.read()[-2000:]}")
        server.stop()
    raise RuntimeError("moto S3 server did not start:\n" + "\n".join(errors))
