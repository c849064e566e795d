"""Fixtures for the provider adapter tests: simulator clients, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.worker.providers._sim import Sim


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Sim]]:
    """Builds clients on fresh simulator apps; keyword arguments are SimulatorConfig knobs."""
    clients: list[Sim] = []

    def make(**knobs: Any) -> Sim:
        client = Sim.start(**knobs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def sim(make_sim: Callable[..., Sim]) -> Sim:
    return make_sim()
