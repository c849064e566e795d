"""Shared fixtures. Real-Redis tests run in a Redis database of their own run: each test session takes a
free database (1-13) with a lock key in database 0, so two runs at once (two checkouts, CI beside a
developer) never flush each other's data; they flush only their own database, and free it at the end.
MMQ_TEST_REDIS_URL names one database instead."""

from __future__ import annotations

import base64
import io
import os
import uuid

import pytest
import redis as redis_sync
from PIL import Image

REDIS_SERVER = "redis://127.0.0.1:6379"
TEST_DATABASES = range(13, 0, -1)  # 14 and 15 are the benchmarks' (bench/_common.py), 0 holds the locks
LOCK_TTL_S = 6 * 3600  # a run killed before its end frees its database after this
# "s3": every test that takes `storage_url` (the whole e2e suite) runs against a real S3-compatible server
# (moto on loopback, started once per session) instead of a local folder.
TEST_STORAGE = os.environ.get("MMQ_TEST_STORAGE", "file")
S3_BUCKET = "mmq-test"


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def chat_body(image_url: str, prompt: str = "Describe this product.") -> dict:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            }
        ],
    }


@pytest.fixture(scope="session")
def s3_server():
    from tests.s3server import start_s3_server

    server = start_s3_server()
    server.make_bucket(S3_BUCKET)
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)  # dummy credentials, for this process and the workers it spawns
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture
def storage_url(tmp_path, request) -> str:
    """Where this test's mmq processes keep blobs and results: a fresh local folder, or (with
    MMQ_TEST_STORAGE=s3) a fresh prefix in the local S3 server's bucket."""
    if TEST_STORAGE == "s3":
        server = request.getfixturevalue("s3_server")
        return server.storage_url(S3_BUCKET, f"t-{uuid.uuid4().hex[:12]}")
    return f"file://{tmp_path / 'store'}"


@pytest.fixture(scope="session")
def test_redis_url() -> str:
    """This run's Redis database (see the module docstring)."""
    if os.environ.get("MMQ_TEST_REDIS_URL"):
        yield os.environ["MMQ_TEST_REDIS_URL"]
        return
    locks = redis_sync.Redis.from_url(f"{REDIS_SERVER}/0")
    try:
        locks.ping()
    except redis_sync.ConnectionError as e:  # CI starts Redis; a missing server is a failure, not a skip
        pytest.fail(f"real Redis is required at {REDIS_SERVER}: {e}")
    run = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    taken = (n for n in TEST_DATABASES if locks.set(f"mmq-tests:db:{n}", run, nx=True, ex=LOCK_TTL_S))
    db = next(taken, None)
    if db is None:
        pytest.fail(f"every test database (1-13) is taken by other runs: mmq-tests:db:* in {REDIS_SERVER}/0")
    try:
        yield f"{REDIS_SERVER}/{db}"
    finally:
        if locks.get(f"mmq-tests:db:{db}") == run.encode():
            locks.delete(f"mmq-tests:db:{db}")
        locks.close()


@pytest.fixture
def redis_url(test_redis_url: str) -> str:
    """A real Redis database of this run's own, empty before and after the test."""
    client = redis_sync.Redis.from_url(test_redis_url)
    try:
        client.ping()
    except redis_sync.ConnectionError as e:  # CI starts Redis; a missing server is a failure, not a skip
        pytest.fail(f"real Redis is required at {test_redis_url}: {e}")
    client.flushdb()
    yield test_redis_url
    client.flushdb()
    client.close()
