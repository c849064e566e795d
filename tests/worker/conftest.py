"""Fixtures for the in-process pipeline tests."""

from __future__ import annotations

import httpx
import pytest

from mmq.connections import embedded_redis
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.submit import Producer
from worker.http import make_client
from worker.providers.base import Target
from worker.runtime import Runtime


@pytest.fixture
async def make_runtime(tmp_path):
    redis = embedded_redis()
    clients: list[httpx.AsyncClient] = []

    def make(transport: httpx.AsyncBaseTransport, **overrides) -> tuple[Runtime, Producer]:
        settings = Settings(
            redis_url=None, storage_url=f"file://{tmp_path / 'store'}", retry_base_s=0.01, **overrides
        )
        storage = open_storage(settings.storage_url)
        client = make_client(transport=transport)
        clients.append(client)
        rt = Runtime(
            settings=settings,
            records=Records(redis),
            storage=storage,
            client=client,
            target=Target(name="sim", provider="openai", base_url="http://sim/v1", api_key="k1"),
        )
        return rt, Producer(redis, storage, settings)

    yield make
    for c in clients:
        await c.aclose()
    await redis.aclose()
