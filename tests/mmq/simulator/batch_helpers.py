"""Helpers for the native batch tests: waiting on a state with a generous timeout, building inputs.

Batch tests wait on states, never on sleeps sized to the knobs: the timeline is decided by the clock
when the batch is created, so a slow machine only makes a wait longer, never changes the outcome.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from PIL import Image

T = TypeVar("T")
TIMEOUT_S = 60.0


async def wait_until(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float = TIMEOUT_S
) -> T:
    """Call `probe` until `done(result)`; the last result. Fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still not done after {timeout_s}s: {result!r}")
        await asyncio.sleep(0.05)


def png_data_url(rgb: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def chat_body(text: str, model: str = "gpt-4o-mini", image: str | None = None) -> dict[str, object]:
    content: list[dict[str, object]] = [{"type": "text", "text": text}]
    if image:
        content.append({"type": "image_url", "image_url": {"url": image, "detail": "low"}})
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def jsonl(lines: list[dict[str, object]]) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n"


def chat_lines(n: int, model: str = "gpt-4o-mini", prefix: str = "job") -> list[dict[str, object]]:
    return [
        {
            "custom_id": f"{prefix}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": chat_body(f"line {i}", model),
        }
        for i in range(n)
    ]


def parse_jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
