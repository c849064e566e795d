from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from mmq.simulator import SimulatorConfig, create_app

MakeSim = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    """Factory: make_sim(**knobs) -> client on a fresh simulator app (app reachable as client.app)."""
    clients: list[httpx.AsyncClient] = []

    def make(**knobs: object) -> httpx.AsyncClient:
        app = create_app(SimulatorConfig(**knobs))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://sim/v1",
            headers={"Authorization": "Bearer sk-test"},
        )
        client.app = app  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
        await client.app.state.sim.aclose()  # type: ignore[attr-defined]  # stops the batch driver task


@pytest.fixture
async def sim(make_sim: MakeSim) -> httpx.AsyncClient:
    return make_sim()
