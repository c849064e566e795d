"""Shared fixtures. Real-Redis tests use their own database (default 13) and flush only that one."""

from __future__ import annotations

import base64
import io
import os

import pytest
import redis as redis_sync
from PIL import Image

TEST_REDIS_URL = os.environ.get("MMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


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
