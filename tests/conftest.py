"""Shared fixtures. Real-Redis tests use their own database (default 13) and flush only that one."""

from __future__ import annotations

import base64
import io
import os
import uuid

import pytest
import redis as redis_sync
from PIL import Image

TEST_REDIS_URL = os.environ.get("MMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
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


@pytest.fixture
def redis_url() -> str:
    """A real Redis database of our own, empty before and after the test."""
    client = redis_sync.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis_sync.ConnectionError as e:  # CI starts Redis; a missing server is a failure, not a skip
        pytest.fail(f"real Redis is required at {TEST_REDIS_URL}: {e}")
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()
