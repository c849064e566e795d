"""The batch APIs through a real HTTP server on 127.0.0.1 (uvicorn), as a worker process reaches them:
the engine's driver task runs in the server's loop, and absolute URLs (Anthropic's results_url, Gemini's
upload URL) name the address the simulator was reached on."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from openai import AsyncOpenAI

from mmq.simulator import SimulatorConfig, create_app
from tests.mmq.simulator.batch_helpers import chat_lines, jsonl, parse_jsonl, wait_until


@pytest.fixture
async def loopback() -> AsyncIterator[str]:
    """Base URL of a simulator served by uvicorn on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = SimulatorConfig(batch_validate_s=0.1, batch_complete_s=0.5, batch_finalize_s=0.1)
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


async def test_openai_and_anthropic_over_http(loopback: str) -> None:
    client = AsyncOpenAI(base_url=loopback + "/v1", api_key="sk-test", _strict_response_validation=True)
    file = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(chat_lines(3)))), purpose="batch")
    batch = await client.batches.create(
        input_file_id=file.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"mmq_batch": "loop"},
    )
    done = await wait_until(lambda: client.batches.retrieve(batch.id), lambda b: b.status == "completed")
    out = parse_jsonl((await client.files.content(done.output_file_id)).text)  # type: ignore[arg-type]
    assert len(out) == 3
    await client.close()

    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=loopback, headers=headers) as api:
        created = await api.post(
            "/v1/messages/batches",
            json={
                "requests": [
                    {
                        "custom_id": "a",
                        "params": {
                            "model": "m",
                            "max_tokens": 20,
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    }
                ]
            },
        )

        async def get() -> dict[str, object]:
            return (await api.get(f"/v1/messages/batches/{created.json()['id']}")).json()

        ended = await wait_until(get, lambda b: b["processing_status"] == "ended")
        assert str(ended["results_url"]).startswith(loopback + "/v1/messages/batches/")
        (line,) = parse_jsonl((await api.get(str(ended["results_url"]))).text)
        assert line["result"]["type"] == "succeeded"
        stats = (await api.get("/sim/stats")).json()
        assert stats["batch_lines_billed"] == {"openai": 3, "anthropic": 1}
