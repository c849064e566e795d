"""What every job in a worker process shares: settings, records, storage, the HTTP client, the default
target, virtual keys, the gate, the cache, the price book and the budgets (created once, in the worker's
on_startup)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from mmq.budgets import Budgets
from mmq.cache import Cache
from mmq.packs import Packs
from mmq.pricing.book import PriceBook, default_book
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import Storage
from worker.credentials import VirtualKeys
from worker.gate import Gate
from worker.providers.base import Target


@dataclass
class Runtime:
    """What every job in a worker process shares (created once in the worker's on_startup)."""

    settings: Settings
    records: Records
    storage: Storage
    client: httpx.AsyncClient
    target: Target
    keys: VirtualKeys = field(default_factory=VirtualKeys)
    prices: PriceBook = field(default_factory=default_book)  # the operator's MMQ_PRICES_FILE, if any
    gate: Gate = field(init=False)
    cache: Cache = field(init=False)
    budgets: Budgets = field(init=False)
    packs: Packs = field(init=False)  # the batch tier's records
    native_targets: dict[str, Target] = field(default_factory=dict)  # the batch tier's targets, by name
    native_prices: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # …and their own prices
    budgets_seen: bool = False  # a budget has applied to a call here: price every call before admitting it

    def __post_init__(self) -> None:
        redis: Redis = self.records.redis
        self.gate = Gate(
            redis,
            self.settings.key_prefix,
            margin=self.settings.rate_limit_margin,
            threshold=self.settings.circuit_threshold,
            open_s=self.settings.circuit_open_s,
        )
        self.budgets = Budgets(redis, self.settings.key_prefix)
        self.packs = Packs(redis, self.settings.key_prefix)
        self.cache = Cache(
            redis,
            self.settings.key_prefix,
            ttl_s=self.settings.cache_ttl_s,
            bands=self.settings.cache_phash_bands,
        )
