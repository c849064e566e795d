"""The gate every provider call passes, shared by every worker on every machine through Redis.

One target (provider + virtual key + model) is one bucket. Before a call, `admit` (mmq/lua/admit.lua)
checks in one round trip:
- its circuit breaker: closed → (N consecutive failures that say the target is sick: 5xx, timeouts,
  dropped connections) → open for `open_s` → half-open: exactly one call is let through as a probe; its
  success closes the circuit, its failure opens it again;
- its shared 429 pause: a 429 pauses the target for every worker until the provider's reset;
- its concurrency leases and its rate clocks: GCRA with reservations, so an admitted call books the next
  free slot on the request clock and the token clock and sleeps exactly until it (a limit of 100/s is one
  call every 10 ms, never more than 100 in any sliding second). A slot further away than `max_wait_s` is
  not booked: the caller defers the job (arq `Retry`) instead of sitting in a worker slot.
After a call, `settle` (mmq/lua/settle.lua) gives the lease back, corrects the token clock to the real
usage and updates the breaker and the pause, again in one round trip; a success's settle can ride in
the pipeline that finishes the job.

A call admitted to a future slot sleeps in this process (`wait_for_slot`), with no round trip when it
wakes: it goes unless a 429 this process saw meanwhile paused its target (other workers learn of a pause
at their next admit, and a call of theirs already booked may meet it once and pause too). A retry does not
queue behind every call booked before it: it takes the slot of this process's next sleeping first call
(`take_slot`), which books again at the back. A job's failed call is then retried within about a
latency, not after the whole backlog, and the batch's last jobs are not its retries.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis

from mmq import scripts
from mmq.keys import Keys
from mmq.routing import RateLimit

Outcome = Literal["ok", "sick", "429", "other"]


HOLD_BUCKET = "mmq-budget-hold"  # the pseudo-target of `Gate.hold`: never limited, paused or opened


@dataclass(frozen=True)
class Admission:
    code: int  # 1 admitted, 0 not now (nothing booked), -1 circuit open, -2 over a budget, -3 price it
    wait_s: float  # admitted: sleep this long, then call; otherwise: try again after about this long
    lease: str | None = None
    reservation: str = ""  # admitted: the call's hold on budgets ('' none), given back when it ends
    over_scope: int = 0  # over a budget: which spend hash said no (its position in `spend_keys`, from 1)
    held_micro: int = 0  # … and what calls in flight hold there

    @property
    def over_budget(self) -> bool:
        return self.code == -2

    @property
    def needs_estimate(self) -> bool:
        """A budget applies to a call admitted without its estimate (-1): price it and ask again."""
        return self.code == -3

    @property
    def admitted(self) -> bool:
        return self.code == 1

    @property
    def circuit_open(self) -> bool:
        return self.code == -1


def counts_against_target(status: int | None, code: str | None) -> bool:
    """Failures that say the target is sick (a 4xx is the request's fault; a 429 has its own pause)."""
    if status is None:
        return code in ("timeout", "connection_error")
    return status >= 500


def estimate_tokens(request: dict[str, Any]) -> int:
    """What a provider will count against tokens-per-minute before it answers: prompt text (~4 chars a
    token), images (OpenAI's 85 low / 765 typical high detail) and the completion budget it reserves."""
    chars, images = 0, 0
    for message in request.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text":
                    chars += len(part.get("text") or "")
                elif part.get("type") == "image_url":
                    detail = (part.get("image_url") or {}).get("detail")
                    images += 85 if detail == "low" else 765
                else:
                    images += 765
    for name in ("prompt", "input"):
        if isinstance(request.get(name), str):
            chars += len(request[name])
    budget = request.get("max_completion_tokens") or request.get("max_tokens") or 0
    return max(1, chars // 4 + images + int(budget))


@dataclass(order=True)
class _Sleeper:
    """A call of this process sleeping until its booked slot (`at`, on the event loop's clock)."""

    at: float
    seq: int
    woken: asyncio.Future = field(compare=False)  # True: the slot came; False: a retry took it
    timer: asyncio.TimerHandle | None = field(compare=False, default=None)


def _wake(woken: asyncio.Future, kept: bool) -> None:
    if not woken.done():
        woken.set_result(kept)


class Gate:
    def __init__(
        self,
        redis: Redis,
        prefix: str = "mmq",
        *,
        margin: float = 0.02,
        threshold: int = 5,
        open_s: float = 30.0,
        probe_ttl_s: float = 120.0,
    ) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        # spacing a little wider than the limit absorbs scheduling jitter between the slot and the wire
        self.margin = margin
        self.threshold = threshold
        self.open_s = open_s
        self.probe_ttl_s = probe_ttl_s  # a probe whose worker died frees the half-open slot after this
        self._admit = scripts.register(redis, "admit")
        self._settle = scripts.register(redis, "settle")
        # this process's view: its first calls sleeping until their slots (a heap per bucket, so a retry
        # takes the nearest), and the 429 pauses it has seen (bucket → until, on the loop's clock)
        self._sleepers: dict[str, list[_Sleeper]] = {}
        self._seq = itertools.count()
        self._paused: dict[str, float] = {}

    def _bucket_keys(self, bucket: str) -> list[str]:
        return [self.keys.circuit(bucket), *self.keys.rate_limit(bucket)]

    def _settle_keys(self, bucket: str) -> list[str]:
        return [*self._bucket_keys(bucket), *self.keys.budget_held(), self.keys.budget_waiting()]

    def _ms_per_request(self, limit: RateLimit) -> float:
        rates = [r for r in (limit.rps, (limit.rpm or 0) / 60) if r]
        return (1000 / min(rates)) * (1 + self.margin) if rates else 0.0

    def _ms_per_token(self, limit: RateLimit | None) -> float:
        return 60_000 / limit.tpm * (1 + self.margin) if limit and limit.tpm else 0.0

    async def admit(
        self,
        bucket: str,
        limit: RateLimit | None,
        *,
        tokens: int = 1,
        max_wait_s: float,
        lease_ttl_s: float,
        poll_s: float = 0.05,
        count_in: str = "",
        estimate_micro: int = 0,
        spend_keys: list[str] | None = None,
        spend_limits: list[str] | None = None,
        book_slot: bool = True,
    ) -> Admission:
        """`count_in`: the hash whose `provider_calls` counts the call once admitted (a job's batch; ''
        when this call was counted by an earlier admission). `estimate_micro`: what the call may cost,
        held against every budget of `spend_keys` that has a limit (`spend_limits`: where each one's
        limit is, see mmq/lua/admit.lua) if they all have room; -1 when not yet priced: a call no budget
        applies to goes without, otherwise `needs_estimate`. `book_slot` False: the call has a slot
        (`take_slot`) and books none on the rate clocks; every other check applies."""
        limit = limit or RateLimit()
        per_request = self._ms_per_request(limit) if book_slot else 0.0
        per_token = self._ms_per_token(limit) if book_slot else 0.0
        lease = uuid.uuid4().hex if limit.max_concurrent else None
        reservation = uuid.uuid4().hex if estimate_micro > 0 else ""
        code, wait = await self._admit(
            [*self._bucket_keys(bucket), count_in, *self._budget_keys(), *(spend_keys or ())],
            [
                int(self.probe_ttl_s * 1000),
                per_request,
                per_token,
                tokens,
                (limit.tpm or 0) / 10,  # a tenth of a minute's tokens: one big request never stalls the clock
                limit.max_concurrent or 0,
                lease or "",
                int(lease_ttl_s * 1000),
                max_wait_s * 1000,
                int(poll_s * 1000),
                estimate_micro,
                reservation,
                int(lease_ttl_s * 1000),
                *(spend_limits or ()),
            ],
        )
        code = int(code)
        if code == -3:
            return Admission(code, 0.0)
        if code == -2:
            position, held = (wait.decode() if isinstance(wait, bytes) else str(wait)).split(":")
            return Admission(code, 0.0, over_scope=int(position), held_micro=int(float(held)))
        return Admission(
            code, float(wait) / 1000, lease if code == 1 else None, reservation if code == 1 else ""
        )

    async def hold(
        self,
        *,
        estimate_micro: int,
        ttl_s: float,
        spend_keys: list[str],
        spend_limits: list[str],
    ) -> Admission:
        """Budgets only, for a call that will not be made now (a provider batch's line): the admit script
        on a bucket no limit, circuit or pause ever names, so only the budget checks and the hold apply
        (`estimate_micro` -1: asked for with `needs_estimate` when a budget applies). The hold lasts
        `ttl_s` unless the job's end or its return to realtime gives it back first."""
        return await self.admit(
            HOLD_BUCKET,
            None,
            max_wait_s=0.0,
            lease_ttl_s=ttl_s,
            estimate_micro=estimate_micro,
            spend_keys=spend_keys,
            spend_limits=spend_limits,
        )

    async def release_hold(self, reservation: str) -> None:
        """Gives back a `hold` that will not be finished (its job never joined a provider batch)."""
        await self.settle(HOLD_BUCKET, "other", reservation=reservation)

    def _budget_keys(self) -> list[str]:
        """held zset, held-what hash, waiting zset, the operator's budgets hash (admit's KEYS[6..9])."""
        return [*self.keys.budget_held(), self.keys.budget_waiting(), self.keys.budgets()]

    def _settle_args(
        self,
        outcome: Outcome,
        lease: str | None,
        limit: RateLimit | None,
        estimated: int,
        actual: int | None,
        cooldown_s: float,
        reservation: str = "",
    ) -> list[Any]:
        correction = 0.0
        if actual is not None and actual != estimated:
            correction = (actual - estimated) * self._ms_per_token(limit)
        return [
            outcome,
            lease or "",
            repr(correction) if correction else "0",
            max(1, int(cooldown_s * 1000)),
            self.threshold,
            int(self.open_s * 1000),
            reservation,
        ]

    async def settle(
        self,
        bucket: str,
        outcome: Outcome,
        *,
        lease: str | None = None,
        limit: RateLimit | None = None,
        estimated: int = 0,
        actual: int | None = None,
        cooldown_s: float = 1.0,
        reservation: str = "",
    ) -> str:
        """After a call (or to record one): returns the circuit's state, 'closed' or 'open'. A failed
        call's `reservation` is given back here (a success's goes with its job's finish)."""
        args = self._settle_args(outcome, lease, limit, estimated, actual, cooldown_s, reservation)
        if outcome == "429":  # this process's calls sleeping until their slots wait for the pause too
            until = asyncio.get_running_loop().time() + cooldown_s
            self._paused[bucket] = max(until, self._paused.get(bucket, 0.0))
        state = await self._settle(self._settle_keys(bucket), args)
        return state.decode() if isinstance(state, bytes) else str(state)

    def queue_settle(
        self,
        pipe: Any,
        bucket: str,
        outcome: Outcome,
        *,
        lease: str | None = None,
        limit: RateLimit | None = None,
        estimated: int = 0,
        actual: int | None = None,
    ) -> None:
        """`settle`, queued on a pipeline the caller executes (a success settles with the job's finish)."""
        args = self._settle_args(outcome, lease, limit, estimated, actual, 1.0)
        self._settle.queue(pipe, self._settle_keys(bucket), args)

    async def wait_for_slot(self, bucket: str, wait_s: float, *, first_call: bool = True) -> float:
        """Sleep until a slot booked `wait_s` from now. Returns 0 when the call may go, -1 when a retry of
        this process took the slot (book again), or the seconds left of a 429 pause this process saw
        meanwhile (give the admission back and wait). A `first_call`'s slot may be taken by a retry."""
        loop = asyncio.get_running_loop()
        sleeper = _Sleeper(loop.time() + wait_s, next(self._seq), loop.create_future())
        sleeper.timer = loop.call_at(sleeper.at, _wake, sleeper.woken, True)
        heap = self._sleepers.setdefault(bucket, []) if first_call else None
        if heap is not None:
            heapq.heappush(heap, sleeper)
        try:
            kept = await sleeper.woken
        finally:
            sleeper.timer.cancel()
            _wake(sleeper.woken, True)  # cancelled: no retry may take a slot no call waits for
            if heap is not None:
                while heap and heap[0].woken.done():
                    heapq.heappop(heap)
                if not heap:
                    self._sleepers.pop(bucket, None)
        if not kept:
            return -1.0
        return max(0.0, self._paused.get(bucket, 0.0) - loop.time())

    def take_slot(self, bucket: str) -> float | None:
        """For a retry: the seconds until the nearest slot a first call of this process sleeps for on
        `bucket`, now the retry's (that call books again); None when there is none to take."""
        heap = self._sleepers.get(bucket)
        while heap:
            sleeper = heapq.heappop(heap)
            if not sleeper.woken.done():
                _wake(sleeper.woken, False)
                return max(0.0, sleeper.at - asyncio.get_running_loop().time())
        return None

    async def open_targets(self, buckets: list[str]) -> set[str]:
        """Buckets whose circuit is open right now (loadbalance picks among the others)."""
        if not buckets:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for b in buckets:
                pipe.hget(self.keys.circuit(b), "open_until")
            pipe.time()
            *values, (now_s, now_us) = await pipe.execute()
        now_ms = now_s * 1000 + now_us / 1000
        return {b for b, v in zip(buckets, values, strict=True) if v and now_ms < float(v)}
