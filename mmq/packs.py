"""The batch tier's records in Redis: jobs waiting to be packed per group, packs (one provider batch
each: its intent before the create, its provider batch id after, its state), and the moves a job makes
between the realtime queue and a provider batch, each one atomic (mmq/lua: deposit, pack_open,
to_realtime) so that a crash anywhere leaves every job either in a pack, waiting to be packed, or in
arq's queue. The worker's engine (worker/batch_tier) writes them; the API and the CLI read them.

A group is one provider, target, model and kind: the unit a provider batch holds (OpenAI, Azure and
Gemini pin one model per batch; the target decides the key and the base URL).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from arq.constants import job_key_prefix
from redis.asyncio import Redis

from mmq import scripts
from mmq.keys import Keys
from mmq.queue import JOB_EXPIRES_MS, _payload_around_id, score_for

REALTIME_RESUME = {"tier": "realtime"}


def group_of(provider: str, target_name: str, model: str, kind: str) -> str:
    return f"{provider}|{target_name}|{model}|{kind}"


def group_parts(group: str) -> tuple[str, str, str, str]:
    """(provider, target name, model, kind) of a group."""
    provider, target, model, kind = group.split("|", 3)
    return provider, target, model, kind


@dataclass
class Pack:
    id: str
    group: str
    target: str  # the target's name (its key and base URL are resolved on the worker, never stored)
    provider: str
    model: str
    kind: str
    state: str  # creating | running | cancelling | ended | harvested | failed
    created_at: float
    jobs: int
    deadline: float | None = None  # the earliest of its jobs' deadlines
    provider_batch_id: str | None = None
    handles: dict[str, Any] = field(default_factory=dict)
    fell_back_at: float | None = None  # when its pending jobs were sent realtime (the deadline fallback)
    error: str | None = None
    rate: float | None = None  # its target's realtime rate (jobs/s), when its routing gives one
    next_poll_at: float | None = None  # when its poll is due (the rescue sweep re-schedules a late one)

    @classmethod
    def from_hash(cls, pack_id: str, raw: dict[Any, Any]) -> Pack:
        v = {
            (k.decode() if isinstance(k, bytes) else k): (x.decode() if isinstance(x, bytes) else x)
            for k, x in raw.items()
        }
        return cls(
            id=pack_id,
            group=v["group"],
            target=v["target"],
            provider=v["provider"],
            model=v["model"],
            kind=v["kind"],
            state=v["state"],
            created_at=float(v["created_at"]),
            jobs=int(v.get("jobs", 0)),
            deadline=float(v["deadline"]) if v.get("deadline") else None,
            provider_batch_id=v.get("provider_batch_id") or None,
            handles=json.loads(v["handles"]) if v.get("handles") else {},
            fell_back_at=float(v["fell_back_at"]) if v.get("fell_back_at") else None,
            error=v.get("error") or None,
            next_poll_at=float(v["next_poll_at"]) if v.get("next_poll_at") else None,
            rate=float(v["rate"]) if v.get("rate") else None,
        )


class Packs:
    def __init__(self, redis: Redis, prefix: str = "mmq") -> None:
        self.redis = redis
        self.prefix = prefix
        self.keys = Keys(prefix)
        self._deposit = scripts.register(redis, "deposit")
        self._pack_open = scripts.register(redis, "pack_open")
        self._to_realtime = scripts.register(redis, "to_realtime")

    def queue_deposit(
        self, pipe: Any, job_id: str, batch_id: str | None, group: str, state: dict[str, str]
    ) -> None:
        """running → provider_batch, waiting in `group` to be packed (queued on the caller's pipeline)."""
        keys = [
            self.keys.job(job_id),
            self.keys.batch(batch_id) if batch_id else "",
            self.keys.nb_open(group),
            self.keys.nb_groups(),
        ]
        args: list[Any] = [job_id, int(time.time() * 1000)]
        for name, value in state.items():
            args += [name, value]
        self._deposit.queue(pipe, keys, args)

    async def open_pack(self, group: str, most: int, fields: dict[str, str]) -> tuple[str, list[str]]:
        """Up to `most` of `group`'s waiting jobs as a new pack (state `creating`): (pack id, job ids)."""
        pack_id = "pack_" + uuid.uuid4().hex[:20]
        args: list[Any] = [pack_id, most, repr(time.time()), self.prefix]
        for name, value in {**fields, "group": group}.items():
            args += [name, value]
        keys = [
            self.keys.nb_open(group),
            self.keys.nb_pack(pack_id),
            self.keys.nb_pack_jobs(pack_id),
            self.keys.nb_packs(),
        ]
        ids = await self._pack_open(keys, args)
        return pack_id, [i.decode() if isinstance(i, bytes) else i for i in ids]

    def queue_rate(self, pipe: Any, group: str, rate: float | None) -> None:
        """The group's realtime rate (jobs/s) as its target's rate limit gives it (None: not known)."""
        if rate:
            pipe.hset(self.keys.nb_rates(), group, repr(rate))

    async def rate(self, group: str) -> float | None:
        value = await self.redis.hget(self.keys.nb_rates(), group)
        return float(value) if value else None

    async def waiting(self, group: str) -> int:
        return int(await self.redis.zcard(self.keys.nb_open(group)))

    async def get(self, pack_id: str) -> Pack | None:
        raw = await self.redis.hgetall(self.keys.nb_pack(pack_id))
        return Pack.from_hash(pack_id, raw) if raw else None

    async def update(self, pack_id: str, **fields: Any) -> None:
        values = {
            k: (json.dumps(v) if isinstance(v, dict) else ("" if v is None else str(v)))
            for k, v in fields.items()
        }
        await self.redis.hset(self.keys.nb_pack(pack_id), mapping=values)

    async def job_ids(self, pack_id: str) -> list[str]:
        ids = await self.redis.lrange(self.keys.nb_pack_jobs(pack_id), 0, -1)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    async def packs_of_group(self, group: str, state: str) -> list[Pack]:
        """Unharvested packs of `group` in `state` (a crashed gather's `creating` ones)."""
        out = []
        for pack_id in await self.redis.zrange(self.keys.nb_packs(), 0, -1):
            pid = pack_id.decode() if isinstance(pack_id, bytes) else pack_id
            pack = await self.get(pid)
            if pack is not None and pack.group == group and pack.state == state:
                out.append(pack)
        return out

    @asynccontextmanager
    async def hold(self, pack_id: str, ttl_s: float = 30.0) -> AsyncIterator[bool]:
        """Take the pack for one step (create, poll, harvest): never two workers on one pack (two creates
        would make two provider batches). Yields False when another worker holds it. The lease is
        renewed every third of `ttl_s` while the step runs (an upload or a harvest may take minutes), so
        only a dead worker's lapses, `ttl_s` after it died."""
        key, owner = self.keys.nb_pack_lock(pack_id), uuid.uuid4().hex
        if not await self.redis.set(key, owner, px=int(ttl_s * 1000), nx=True):
            yield False
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(ttl_s / 3)
                await self.redis.pexpire(key, int(ttl_s * 1000))

        renewer = asyncio.create_task(renew())
        try:
            yield True
        finally:
            renewer.cancel()
            if (await self.redis.get(key)) in (owner, owner.encode()):
                await self.redis.delete(key)

    async def locked(self, pack_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.nb_pack_lock(pack_id)))

    async def active(self) -> list[Pack]:
        """Every pack not yet harvested (for the rescue sweep)."""
        packs = []
        for raw in await self.redis.zrange(self.keys.nb_packs(), 0, -1):
            pack = await self.get(raw.decode() if isinstance(raw, bytes) else raw)
            if pack is not None:
                packs.append(pack)
        return packs

    async def open_groups(self) -> list[tuple[str, float]]:
        """Groups with jobs waiting to be packed, with when the oldest came (epoch s)."""
        out = []
        prefix = self.keys.nb_open("")
        for raw in await self.redis.smembers(self.keys.nb_groups()):
            key = raw.decode() if isinstance(raw, bytes) else raw
            oldest = await self.redis.zrange(key, 0, 0, withscores=True)
            if oldest:
                out.append((key[len(prefix) :], oldest[0][1] / 1000))
            else:
                await self.redis.srem(self.keys.nb_groups(), key)
        return out

    async def give_back(self, pack_id: str, group: str, keep: int, job_ids: list[str]) -> None:
        """A pack keeps its first `keep` jobs; `job_ids` (the rest) wait in `group` again, in one
        transaction (before its provider batch exists: nothing was sent for them)."""
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as tr:
            tr.ltrim(self.keys.nb_pack_jobs(pack_id), 0, keep - 1)
            tr.hset(self.keys.nb_pack(pack_id), "jobs", keep)
            tr.zadd(self.keys.nb_open(group), dict.fromkeys(job_ids, now_ms))
            tr.sadd(self.keys.nb_groups(), self.keys.nb_open(group))
            for job_id in job_ids:
                tr.hdel(self.keys.job(job_id), "pack")
            await tr.execute()

    async def done(self, pack_id: str) -> None:
        """A harvested pack leaves the active set (its record stays, for the batch's view)."""
        await self.redis.zrem(self.keys.nb_packs(), pack_id)

    async def to_realtime(self, queue_name: str, job_ids: list[str]) -> list[str]:
        """Jobs still in provider_batch → queued for a realtime call, arq entry included (to_realtime.lua)."""
        if not job_ids:
            return []
        now_ms = int(time.time() * 1000)
        head, tail = _payload_around_id(now_ms)
        args: list[Any] = [
            self.prefix,
            job_key_prefix,
            head,
            tail,
            JOB_EXPIRES_MS,
            score_for("high", now_ms),  # late work goes first: its deadline is nearer than anything new
            json.dumps(REALTIME_RESUME),
            *job_ids,
        ]
        moved = await self._to_realtime([queue_name], args)
        return [i.decode() if isinstance(i, bytes) else i for i in moved]

    async def batch_packs(self, batch_id: str) -> list[Pack]:
        ids = await self.redis.smembers(self.keys.batch_packs(batch_id))
        packs = [await self.get(i.decode() if isinstance(i, bytes) else i) for i in sorted(ids)]
        return [p for p in packs if p is not None]
