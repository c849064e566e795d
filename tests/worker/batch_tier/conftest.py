"""Fixtures for the provider batch clients (worker/batch_tier/apis/): a fresh in-process simulator per
test, reached the way the worker reaches a provider (the worker's own client, worker.http.make_client, on the
app's ASGI transport: no base URL, no credential of its own, every URL and key comes from the Target)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from mmq.simulator import SimulatorConfig, create_app
from worker.http import make_client

# a batch whose lines finish within a second or so: tests wait on states, never on sleeps
FAST = {"batch_validate_s": 0, "batch_complete_s": 0.3, "batch_finalize_s": 0.05}
MakeSim = Callable[..., tuple[httpx.AsyncClient, object]]


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    """make_sim(**knobs) -> (a worker-like client on a fresh simulator app, the app)."""
    made: list[tuple[httpx.AsyncClient, object]] = []

    def make(**knobs: object) -> tuple[httpx.AsyncClient, object]:
        app = create_app(SimulatorConfig(**knobs))
        client = make_client(transport=httpx.ASGITransport(app=app), timeout_s=60)
        made.append((client, app))
        return client, app

    yield make
    for client, app in made:
        await client.aclose()
        await app.state.sim.aclose()  # type: ignore[attr-defined]  # stops the batch driver task
