"""The options of a batch, one model for every entry point (Python, CLI, `/api/batches`, `/v1/batches`,
templates): the routing config, media downscaling, the cache, the priority, the window, the webhook, the
budget and the metadata. Each entry point only maps its own spelling onto it (JSON fields, query
parameters, CLI flags); the model parses every spelling the same way, once: JSON text or objects for
the config, media and cache options, `true`/`false` for the cache, epoch seconds for the window, USD
for the budget. The checks that need the operator's settings (custom hosts, webhook receivers) and the
clock are the producer's (producer/options.py), made once when the batch is submitted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmq.contract import CacheOptions, MediaPrep, OnBudget, Priority, Tier

OPTION_NAMES = (
    "config",
    "media",
    "cache",
    "priority",
    "not_before",
    "deadline",
    "webhook_url",
    "max_cost",
    "on_budget",
    "tier",
)


class BatchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = Field(default=None, description="routing config (Portkey schema)")
    media: MediaPrep | None = Field(default=None, description='downscaling: {"max_side", "max_bytes"}')
    cache: CacheOptions | None = Field(
        default=None, description='false, or {"level": "exact"|"pixels"|"perceptual", "ttl_s", "refresh"}'
    )
    priority: Priority = Field(default=Priority.normal, description="high | normal | low")
    not_before: float | None = Field(default=None, description="epoch seconds: no job starts before")
    deadline: float | None = Field(default=None, description="epoch seconds: what has not run expires")
    webhook_url: str | None = Field(default=None, description="POSTed the batch when it ends")
    max_cost: Decimal | None = Field(
        default=None, gt=0, le=10**9, description="USD: the batch's calls stop before spending more"
    )
    on_budget: OnBudget = Field(
        default=OnBudget.wait, description="wait (resumable, `budget` state) | fail (budget_exceeded)"
    )
    tier: Tier | None = Field(
        default=None,
        description="realtime | batch | auto (default: auto when the deadline is an hour away or more)",
    )
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("config", "media", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def resolved_tier(self, now: float, min_window_s: float = 3600.0) -> Tier:
        """The tier the batch runs on: `auto` (and no tier) is `auto` only when a deadline leaves at
        least `min_window_s`, else realtime; `batch` asks for the providers' batch APIs outright."""
        if self.tier is Tier.realtime or (self.tier is Tier.batch):
            return self.tier
        if self.deadline is not None and self.deadline - now >= min_window_s:
            return Tier.auto
        return Tier.realtime

    @property
    def max_cost_micro_usd(self) -> int | None:
        return None if self.max_cost is None else int(self.max_cost * 1_000_000)

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> Any:
        return CacheOptions.parse(value)

    @classmethod
    def from_query(cls, params: Mapping[str, str], reserved: Iterable[str] = ()) -> dict[str, Any]:
        """The fields of a batch given as query parameters (a streamed JSONL or CSV body): the option names
        are options, `reserved` names belong to the route, every other parameter is metadata. Returns
        the unvalidated fields (validate them with the producer's `parse_options`)."""
        skip = set(reserved)
        fields: dict[str, Any] = {"metadata": {}}
        for key, value in params.items():
            if key in skip:
                continue
            if key in OPTION_NAMES:
                fields[key] = value
            else:
                fields["metadata"][key] = value
        return fields
