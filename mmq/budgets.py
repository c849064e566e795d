"""Budgets in Redis, for every process: the operator's tenant budgets (per UTC day and month), a batch's
`max_cost`, what has been spent against each, and the jobs waiting for one.

Why in the core: the worker holds and settles spending (mmq/lua/admit.lua, finish.lua; worker/budget.py
decides what a refused job does), while the API and the CLI set budgets, raise them and show spending.
Raising a budget must wake the jobs waiting for it, whoever raises it: that is here, once. Amounts are
integer micro-USD in Redis (exact, atomic HINCRBY), dollars at the edges.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from mmq import scripts
from mmq.contract import JobRecord
from mmq.keys import Keys

MICRO = 1_000_000
PERIODS = ("day", "month")


def to_micro(usd: Decimal | float | str) -> int:
    """Dollars to micro-USD (a budget: rounded down, so it is never looser than asked)."""
    value = Decimal(str(usd))
    if not value.is_finite() or value < 0:
        raise ValueError(f"a budget is a positive amount of USD, not {usd!r}")
    return int(value * MICRO)


def dollars(micro: int | None) -> str | None:
    """Micro-USD as an exact decimal string of dollars ("0.000042"); None stays None."""
    if micro is None:
        return None
    return format((Decimal(micro) / MICRO).normalize(), "f") if micro else "0"


@dataclass(frozen=True)
class Spending:
    """One scope's money in micro-USD: its limit (None: no budget), spent, held by calls in flight."""

    limit: int | None
    spent: int
    reserved: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit_usd": dollars(self.limit),
            "spent_usd": dollars(self.spent),
            "reserved_usd": dollars(self.reserved),
        }


class Budgets:
    def __init__(self, redis: Redis, prefix: str = "mmq") -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.prefix = prefix
        self._park = scripts.register(redis, "park")
        self._wake = scripts.register(redis, "wake")

    def spend_keys(self, tenant: str, at: float | None = None) -> dict[str, str]:
        day, month = self.keys.tenant_spend(tenant, at if at is not None else time.time())
        return {"day": day, "month": month}

    # ------------------------------------------------------------------ the operator's tenant budgets
    async def set_tenant(self, tenant: str, period: str, usd: Decimal | float | str | None) -> None:
        """Sets (or with None removes) a tenant's budget for a UTC `period` ("day" or "month"); waiting
        jobs are woken to check again."""
        if period not in PERIODS:
            raise ValueError(f"a budget period is one of {PERIODS}, not {period!r}")
        field = f"{tenant}:{period}"
        if usd is None:
            await self.redis.hdel(self.keys.budgets(), field)
        else:
            await self.redis.hset(self.keys.budgets(), field, to_micro(usd))
        await self.wake_all()

    async def tenant(self, tenant: str, at: float | None = None) -> dict[str, Spending]:
        """A tenant's budgets and spending this UTC day and month."""
        keys = self.spend_keys(tenant, at)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.budgets(), [f"{tenant}:{p}" for p in PERIODS])
        for period in PERIODS:
            pipe.hmget(keys[period], "spent", "reserved")
        limits, *rows = await pipe.execute()
        return {
            period: Spending(int(limit) if limit is not None else None, int(row[0] or 0), int(row[1] or 0))
            for period, limit, row in zip(PERIODS, limits, rows, strict=True)
        }

    # ------------------------------------------------------------------ a batch's budget
    async def set_batch(self, batch_id: str, usd: Decimal | float | str | None) -> bool:
        """Sets, raises or (None) removes a batch's `max_cost`; waiting jobs are woken. False if there
        is no such batch."""
        key = self.keys.batch(batch_id)
        if not await self.redis.exists(key):
            return False
        if usd is None:
            await self.redis.hdel(key, "max_cost")
        else:
            await self.redis.hset(key, "max_cost", to_micro(usd))
        await self.wake_all()
        return True

    # ------------------------------------------------------------------ jobs waiting for a budget
    async def park(
        self,
        job: JobRecord,
        state: dict[str, str],
        *,
        retry_at_ms: float,
        refused_by: str,
        held_micro: int,
        payload_key: str,
        rerun_at_ms: int,
        payload_ttl_ms: int,
        queue: str = "",
        in_progress_key: str = "",
    ) -> str:
        """running → budget, listed in the waiting set until `retry_at_ms` (inf: a wake-up); its arq entry
        re-run at `rerun_at_ms` at the latest (`queue`: moved there now; '' the caller re-queues it).
        Returns 'ok', 'due' or the status that kept it from waiting (mmq/lua/park.lua)."""
        keys = [
            self.keys.job(job.id),
            self.keys.batch(job.batch_id) if job.batch_id else "",
            self.keys.budget_waiting(),
            payload_key,
            refused_by,
            queue,
            in_progress_key,
        ]
        at = "+inf" if math.isinf(retry_at_ms) else str(int(retry_at_ms))
        args: list[Any] = [job.id, at, payload_ttl_ms, held_micro, rerun_at_ms]
        for name, value in state.items():
            args += [name, value]
        outcome = await self._park(keys, args)
        return outcome.decode() if isinstance(outcome, bytes) else str(outcome)

    async def wake_due(self, queue_name: str, limit: int = 500) -> int:
        """Moves waiting jobs whose time has come to the head of arq's queue (each worker sweeps)."""
        now_ms = int(time.time() * 1000)
        return int(await self._wake([self.keys.budget_waiting(), queue_name], [now_ms, limit, self.prefix]))

    async def wake_all(self) -> None:
        """Every waiting job checks its budgets again (a budget was raised or removed): all due now."""
        waiting = self.keys.budget_waiting()
        await self.redis.zunionstore(waiting, {waiting: 0})

    async def waiting(self) -> int:
        return int(await self.redis.zcard(self.keys.budget_waiting()))
