"""The batch clients on the worker's production HTTP client (worker.http.make_client: httpx over the
aiohttp pool) against a simulator served on 127.0.0.1 by uvicorn: the multipart upload, JSON calls and
streamed results go through the same transport a worker process uses, and Anthropic's absolute
results_url names the loopback address the target's base URL names."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn

from mmq.request_models import Kind
from mmq.simulator import SimulatorConfig, create_app
from tests.worker.batch_tier.helpers import chat_request, ended, parsed, results
from worker.batch_tier.apis import native_for
from worker.http import make_client
from worker.providers import get_adapter
from worker.providers.base import Target


@pytest.fixture
async def loopback() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = SimulatorConfig(batch_validate_s=0, batch_complete_s=0.3, batch_finalize_s=0.05)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):  # bounded: a server that never starts fails the test, not the run
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.mark.parametrize(
    ("provider", "path", "key", "model"),
    [
        ("openai", "/v1", "sk-test", "gpt-4o-mini"),
        ("anthropic", "", "sk-ant-test", "claude-sonnet-4-5"),
        ("gemini", "", "AIza-test", "gemini-2.5-flash"),
    ],
)
async def test_round_trip_on_the_worker_client(loopback: str, provider, path, key, model) -> None:
    target = Target(name="loop", provider=provider, base_url=loopback + path, api_key=key)
    api, adapter = native_for(provider), get_adapter(provider)
    assert api is not None
    requests = {f"job-{i}": chat_request(f"line {i}", model) for i in range(3)}
    lines = [api.line(job, Kind.chat, adapter.translate(target, Kind.chat, r)) for job, r in requests.items()]  # type: ignore[attr-defined]
    client = make_client(timeout_s=60)
    try:
        batch = await api.create(client, target, Kind.chat, model, lines, {"mmq_pack": "loop-1"})
        done = await ended(api, client, target, batch.id)
        assert done.state == "ended"
        got = await results(api, client, target, done)
        assert sorted(got) == sorted(requests)
        for job, line in got.items():
            answer = parsed(adapter, Kind.chat, requests[job], line)  # type: ignore[arg-type]
            assert answer.usage is not None and answer.usage["total_tokens"] > 0
        if provider != "anthropic":
            found = await api.find(client, target, "mmq_pack", "loop-1")
            assert found is not None and found.id == batch.id
    finally:
        await client.aclose()
