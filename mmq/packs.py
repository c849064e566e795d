"""The batch tier's records in Redis: jobs waiting to be packed per group, packs (one provider batch
each: its intent before the create, its provider batch id after, its state), and the moves a job makes
between the realtime queue and a provider batch, each one atomic (mmq/lua: deposit, pack_open,
pack_release, to_realtime) so that a crash anywhere leaves every job either in a pack, waiting to be
packed, or in arq's queue. The worker's engine (worker/batch_tier) writes them; the API, the CLI and the
console read them.

A group is one provider, target, model and kind: the unit a provider batch holds (OpenAI, Azure and
Gemini pin one model per batch; the target decides the key and the base URL).

The enqueued-token ledger: OpenAI, Azure and Gemini cap the input tokens enqueued in a key's running
batches per model, and refuse a batch past it (`token_limit_exceeded`). A ledger (provider, virtual key,
model: the target's rate-limit bucket) counts the estimated input tokens of mmq's packs not ended yet: a
pack adds its jobs' tokens when it is opened and gives them back when it ends, whatever the end
(pack_open.lua, pack_release.lua), so packing can stop at the limit and never send what the provider
would refuse.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from arq.constants import job_key_prefix
from redis.asyncio import Redis

from mmq import scripts
from mmq.keys import Keys
from mmq.queue import JOB_EXPIRES_MS, _payload_around_id, score_for

REALTIME_RESUME = {"tier": "realtime"}
LEARNED_TTL_S = 3600  # a limit learned from a refusal holds this long (a provider's quota tier can rise)


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
    tokens: int = 0  # its jobs' estimated input tokens (what the provider's enqueued-token quota counts)
    ledger: str | None = None  # the enqueued-token ledger it counts in (provider:virtual key:model)
    held: bool = False  # its tokens are in the ledger (from its opening until it ends)
    fallback_due: float | None = None  # when its pending jobs go realtime if it has not ended by then
    harvest: dict[str, int] = field(default_factory=dict)  # answered, failed, realtime, paid_twice
    # when its create was sent, for a provider whose batches carry no tag (Anthropic): a recovery looks
    # for a batch of its size made around then instead of creating a second
    create_sent_at: float | None = None

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
            tokens=int(v.get("tokens") or 0),
            ledger=v.get("ledger") or None,
            held=v.get("held") == "1",
            fallback_due=float(v["fallback_due"]) if v.get("fallback_due") else None,
            harvest={k[len("harvest_") :]: int(x) for k, x in v.items() if k.startswith("harvest_")},
            create_sent_at=float(v["create_sent_at"]) if v.get("create_sent_at") else None,
        )


class Packs:
    """The batch tier's records on one Redis: the engine's writes (deposit, open, release, to realtime)
    and the reads the engine, the API, the CLI and the console share."""

    def __init__(self, redis: Redis, prefix: str = "mmq") -> None:
        self.redis = redis
        self.prefix = prefix
        self.keys = Keys(prefix)
        self._deposit = scripts.register(redis, "deposit")
        self._pack_open = scripts.register(redis, "pack_open")
        self._pack_release = scripts.register(redis, "pack_release")
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

    async def open_pack(
        self, group: str, most: int, fields: dict[str, str], ledger: str = "", limit: int | None = None
    ) -> tuple[str, list[str], bool]:
        """Up to `most` of `group`'s waiting jobs as a new pack (state `creating`), within `limit` enqueued
        tokens in `ledger` (None: no limit of the operator's; a learned one still applies): (pack id, job
        ids, whether jobs were left waiting for room under the limit)."""
        pack_id = "pack_" + uuid.uuid4().hex[:20]
        ledger = ledger or _ledger_of_group(group)
        args: list[Any] = [pack_id, most, repr(time.time()), self.prefix, ledger, int(limit or 0)]
        for name, value in {**fields, "group": group}.items():
            args += [name, value]
        keys = [
            self.keys.nb_open(group),
            self.keys.nb_pack(pack_id),
            self.keys.nb_pack_jobs(pack_id),
            self.keys.nb_packs(),
            self.keys.nb_enqueued(),
            self.keys.nb_learned(ledger),
        ]
        ids, limited = await self._pack_open(keys, args)
        return pack_id, [i.decode() if isinstance(i, bytes) else i for i in ids], bool(limited)

    def queue_rate(self, pipe: Any, group: str, rate: float | None) -> None:
        """The group's realtime rate (jobs/s) as its target's rate limit gives it (None: not known)."""
        if rate:
            pipe.hset(self.keys.nb_rates(), group, repr(rate))

    async def rate(self, group: str) -> float | None:
        value = await self.redis.hget(self.keys.nb_rates(), group)
        return float(value) if value else None

    def queue_quota(self, pipe: Any, group: str, ledger: str, limit: int | None) -> None:
        """The group's enqueued-token ledger and its target's `batch_queue_tokens` (None: not set)."""
        pipe.hset(self.keys.nb_quotas(), group, json.dumps({"ledger": ledger, "limit": limit}))

    async def quota(self, group: str) -> tuple[str, int | None]:
        """(ledger, the target's limit or None) of a group; a group deposited before the ledger existed
        counts in a ledger of its own provider, target and model."""
        raw = await self.redis.hget(self.keys.nb_quotas(), group)
        try:
            value = json.loads(raw) if raw else {}
            return str(value.get("ledger") or _ledger_of_group(group)), _positive(value.get("limit"))
        except (ValueError, AttributeError):
            return _ledger_of_group(group), None

    async def enqueued(self, ledger: str) -> int:
        """The tokens of the ledger's packs not ended yet."""
        return int(await self.redis.hget(self.keys.nb_enqueued(), ledger) or 0)

    async def ledgers(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.nb_enqueued())
        return {_s(k): int(v) for k, v in raw.items()}

    async def learned(self, ledger: str) -> int | None:
        value = await self.redis.get(self.keys.nb_learned(ledger))
        return int(value) if value else None

    async def groups_of(self, ledger: str) -> list[str]:
        """The groups that count in `ledger` and have jobs waiting (to be packed when room is made)."""
        raw = await self.redis.hgetall(self.keys.nb_quotas())
        groups = []
        for group, value in raw.items():
            try:
                theirs = json.loads(value).get("ledger")
            except (ValueError, AttributeError):
                continue
            if theirs == ledger and await self.waiting(_s(group)):
                groups.append(_s(group))
        return groups

    async def waiting_ids(self, group: str) -> list[str]:
        return [_s(i) for i in await self.redis.zrange(self.keys.nb_open(group), 0, -1)]

    async def deadlines(self, job_ids: list[str], chunk: int = 1000) -> list[float | None]:
        """Each job's deadline (None: it has none), read in pipelined chunks."""
        out: list[float | None] = []
        for start in range(0, len(job_ids), chunk):
            pipe = self.redis.pipeline(transaction=False)
            for job_id in job_ids[start : start + chunk]:
                pipe.hget(self.keys.job(job_id), "deadline")
            out += [float(v) if v else None for v in await pipe.execute()]
        return out

    async def plan_wait(self, group: str, at: float) -> None:
        """The group's jobs wait for room until its gather at `at` (the rescue sweep leaves it alone)."""
        await self.redis.hset(self.keys.nb_waits(), group, int(at * 1000))

    async def waits(self) -> dict[str, float]:
        raw = await self.redis.hgetall(self.keys.nb_waits())
        return {_s(k): int(v) / 1000 for k, v in raw.items()}

    async def waiting(self, group: str) -> int:
        return int(await self.redis.zcard(self.keys.nb_open(group)))

    async def get(self, pack_id: str) -> Pack | None:
        raw = await self.redis.hgetall(self.keys.nb_pack(pack_id))
        return Pack.from_hash(pack_id, raw) if raw else None

    async def get_many(self, pack_ids: Iterable[Any]) -> list[Pack]:
        """The packs that still exist of `pack_ids`, in that order, read in one round trip (a night's
        image batches can make hundreds of packs, and every worker's rescue sweep reads them all)."""
        ids = [_s(i) for i in pack_ids]
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for pack_id in ids:
            pipe.hgetall(self.keys.nb_pack(pack_id))
        return [Pack.from_hash(i, raw) for i, raw in zip(ids, await pipe.execute(), strict=True) if raw]

    async def update(self, pack_id: str, **fields: Any) -> None:
        await self.redis.hset(self.keys.nb_pack(pack_id), mapping=_text_fields(fields))

    async def job_ids(self, pack_id: str) -> list[str]:
        ids = await self.redis.lrange(self.keys.nb_pack_jobs(pack_id), 0, -1)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    async def packs_of_group(self, group: str, state: str) -> list[Pack]:
        """Unharvested packs of `group` in `state` (a crashed gather's `creating` ones)."""
        packs = await self.get_many(await self.redis.zrange(self.keys.nb_packs(), 0, -1))
        return [p for p in packs if p.group == group and p.state == state]

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
        return await self.get_many(await self.redis.zrange(self.keys.nb_packs(), 0, -1))

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

    async def give_back(self, pack_id: str, group: str, keep: int, job_ids: list[str] | None = None) -> int:
        """A pack keeps its first `keep` jobs; the rest (`job_ids`, when the caller has them) wait in
        `group` again, with their tokens out of the ledger (before its provider batch exists: nothing was
        sent for them). Returns how many went back."""
        return await self.release(pack_id, group, keep=keep)

    async def done(self, pack_id: str, **fields: Any) -> None:
        """A pack that ended (harvested, failed) leaves the active set and gives its enqueued tokens back
        (its record stays, for the batch's view); `fields` are set on it in the same step."""
        await self.release(pack_id, None, end=True, fields=fields)

    async def refused(self, pack_id: str, group: str, learned: int, **fields: Any) -> int:
        """A pack its provider refused for the quota ends, its jobs wait in `group` again and its ledger
        keeps `learned` as its limit for a while (LEARNED_TTL_S). Returns how many jobs wait again."""
        return await self.release(pack_id, group, keep=0, end=True, learned=learned, fields=fields)

    async def release(
        self,
        pack_id: str,
        group: str | None,
        *,
        keep: int = -1,
        end: bool = False,
        learned: int | None = None,
        fields: dict[str, Any] | None = None,
    ) -> int:
        """pack_release.lua: jobs from position `keep` on wait again (-1: none), `end` gives every token
        back and leaves the active set, `learned` lowers the ledger's limit, `fields` are set on the pack."""
        ledger = _s(await self.redis.hget(self.keys.nb_pack(pack_id), "ledger") or "")
        keys = [
            self.keys.nb_pack(pack_id),
            self.keys.nb_pack_jobs(pack_id),
            self.keys.nb_open(group or ""),
            self.keys.nb_groups(),
            self.keys.nb_packs(),
            self.keys.nb_enqueued(),
            self.keys.nb_learned(ledger),
        ]
        args: list[Any] = [
            pack_id,
            self.prefix,
            int(time.time() * 1000),
            keep if group else -1,
            "1" if end else "0",
            "" if learned is None else max(1, int(learned)),
            LEARNED_TTL_S,
        ]
        for name, value in _text_fields(fields or {}).items():
            args += [name, value]
        return int(await self._pack_release(keys, args))

    async def to_realtime(self, queue_name: str, job_ids: list[str], group: str | None = None) -> list[str]:
        """Jobs still in provider_batch → queued for a realtime call, arq entry included, their budget
        holds given back (to_realtime.lua); with `group`, jobs still waiting to be packed in it leave its
        open zset too."""
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
        open_zset = self.keys.nb_open(group) if group is not None else ""
        keys = [queue_name, open_zset, *self.keys.budget_held(), self.keys.budget_waiting()]
        moved = await self._to_realtime(keys, args)
        return [i.decode() if isinstance(i, bytes) else i for i in moved]

    async def batch_packs(self, batch_id: str) -> list[Pack]:
        return await self.get_many(sorted(await self.redis.smembers(self.keys.batch_packs(batch_id))))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _text_fields(fields: dict[str, Any]) -> dict[str, str]:
    return {
        k: (json.dumps(v) if isinstance(v, dict) else ("" if v is None else str(v)))
        for k, v in fields.items()
    }


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _ledger_of_group(group: str) -> str:
    provider, target, model, _kind = group_parts(group)
    return f"{provider}:{target}:{model}"
