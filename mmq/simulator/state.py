"""Per-app simulator state: config, the single seeded RNG, counters, limiter, file store, HTTP client."""

from __future__ import annotations

import random

import httpx

from mmq.simulator.faults import FaultScript
from mmq.simulator.files import FileStore
from mmq.simulator.knobs import SimulatorConfig
from mmq.simulator.ratelimit import SlidingWindowLimiter
from mmq.simulator.stats import SimStats


class SimState:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        # one RNG for every random decision, so a seed replays the same latency/error/hang sequence
        self.rng = random.Random(config.seed)
        self.stats = SimStats()
        self.files = FileStore(256)
        self.faults = FaultScript()
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
        if self.limiter is not None:
            self.limiter.reset()
        self.rng.seed(self.config.seed)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
