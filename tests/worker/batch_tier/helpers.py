"""Plain helpers for the batch client tests: polling a provider batch, collecting results, reading a
line's body with the realtime adapter (as the engine does)."""

from __future__ import annotations

from typing import Any

import httpx

from mmq.request_models import Kind
from tests.mmq.simulator.batch_helpers import png_data_url, wait_until
from worker.batch_tier.protocol import LineResult, NativeBatchAPI, ProviderBatch
from worker.providers.base import ProviderResponse, Target
from worker.providers.protocol import WireAdapter

FINAL = ("ended", "failed")
__all__ = ["FINAL", "chat_request", "ended", "parsed", "png_data_url", "results", "wait_until"]


def chat_request(text: str, model: str, image: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if image:
        content.append({"type": "image_url", "image_url": {"url": image}})
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 100}


async def ended(
    api: NativeBatchAPI, client: httpx.AsyncClient, target: Target, batch_id: str
) -> ProviderBatch:
    return await wait_until(lambda: api.get(client, target, batch_id), lambda b: b.state in FINAL)


async def results(
    api: NativeBatchAPI, client: httpx.AsyncClient, target: Target, batch: ProviderBatch
) -> dict[str, LineResult]:
    out: dict[str, LineResult] = {}
    async for line in api.results(client, target, batch):
        assert line.custom_id not in out, f"{line.custom_id} twice"
        out[line.custom_id] = line
    return out


def parsed(adapter: WireAdapter, kind: Kind, request: dict[str, Any], line: LineResult) -> ProviderResponse:
    """A successful line's body through the realtime adapter's parse, as the engine reads it."""
    assert line.ok, line
    return adapter.parse(kind, request, httpx.Response(line.status_code or 200), line.body)
