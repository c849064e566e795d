"""Per-app simulator state: config, the single seeded RNG, counters, limiter, file store, HTTP client,
the native batch engine and the Cloud Storage objects."""

from __future__ import annotations

import random
from typing import Protocol

import httpx

from mmq.simulator.faults import FaultScript
from mmq.simulator.files import FileStore
from mmq.simulator.gcs_store import GcsStore
from mmq.simulator.knobs import SimulatorConfig
from mmq.simulator.ratelimit import SlidingWindowLimiter
from mmq.simulator.stats import SimStats


class Engine(Protocol):
    """What the state needs of the native batch engine (mmq/simulator/batches/engine.py BatchEngine)."""

    def clear(self) -> None: ...

    async def settle(self) -> None: ...

    async def aclose(self) -> None: ...


class SimState:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        # one RNG for every random decision, so a seed replays the same latency/error/hang sequence
        self.rng = random.Random(config.seed)
        self.stats = SimStats()
        self.files = FileStore(256)
        self.faults = FaultScript()
        self.gcs = GcsStore()  # Cloud Storage, for Vertex batch prediction's input and output
        # set by create_app: this module may not import the batches package, whose routes import the
        # realtime handlers, which import this module (the import contract forbids the cycle)
        self.batches: Engine | None = None
        self.limiter = (
            SlidingWindowLimiter(config.requests_per_window, config.window_s)
            if config.requests_per_window is not None
            else None
        )
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """Client for image_url downloads; created lazily, replaceable in tests."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=True)
        return self._http

    @http.setter
    def http(self, client: httpx.AsyncClient) -> None:
        self._http = client

    def reset(self) -> None:
        self.stats.reset()
        self.faults.clear()
        self.gcs.clear()
        if self.batches is not None:
            self.batches.clear()
        if self.limiter is not None:
            self.limiter.reset()
        self.rng.seed(self.config.seed)

    async def aclose(self) -> None:
        if self.batches is not None:
            await self.batches.aclose()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
