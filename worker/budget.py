"""Money on the worker: what a call may cost before it goes (the estimate a budget holds), what it did
cost after (the job's `cost`, from the usage its provider reported), and what a job does when a budget
says no (wait in `budget` state, or fail with `budget_exceeded`).

The holding itself is done by the gate's admit script in the round trip that already admits the call
(mmq/lua/admit.lua with budget.lua), and the spending is added by the job's finish (finish.lua): a
budget costs no round trip of its own. Reservations are the estimate's high end (the prompt by the
rules, images of unknown size at their maximum, the whole output bound), so with every call holding its
estimate, spending passes a budget only by what the calls in flight under-estimated.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arq.constants import in_progress_key_prefix, job_key_prefix

from mmq.budgets import dollars
from mmq.contract import JobCost, JobError, JobRecord, OnBudget
from mmq.pricing.book import PriceBook
from mmq.pricing.cost import cost_of
from mmq.pricing.quotes import estimate_job
from mmq.pricing.rules import MediaFacts
from mmq.queue import JOB_EXPIRES_MS
from mmq.record_layout import state_fields
from mmq.request_models import Kind

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")

# the url an estimate needs for each kind (the quote is priced from OpenAI Batch lines)
_URL = {
    Kind.chat: "/v1/chat/completions",
    Kind.image: "/v1/images/generations",
    Kind.speech: "/v1/audio/speech",
    Kind.transcription: "/v1/audio/transcriptions",
    Kind.translation: "/v1/audio/translations",
}
# a job waiting "until spending settles" or for a raise is re-run by arq after this at the latest (a
# lost wake-up only delays it); its arq payload lives as long, plus a day
PARK_MAX_S = 30 * 24 * 3600
MICRO = 1_000_000


_OVERRIDDEN: dict[tuple[int, str], PriceBook] = {}  # (the book's id, the target's prices JSON) → merged


def book_for(book: PriceBook, prices: dict[str, Any] | None) -> PriceBook:
    """The worker's book, with a routing target's own `prices` over it (merged once per process)."""
    if not prices:
        return book
    key = (id(book), json.dumps(prices, sort_keys=True, default=str))
    merged = _OVERRIDDEN.get(key)
    if merged is None:
        if len(_OVERRIDDEN) > 256:  # configs come and go: keep the memo bounded
            _OVERRIDDEN.clear()
        merged = _OVERRIDDEN[key] = book.with_overrides(prices, label="target")
    return merged


def model_of(request: dict[str, Any]) -> str:
    model = request.get("model")
    return model if isinstance(model, str) else ""


def estimate_micro(
    book: PriceBook,
    provider: str,
    kind: Kind,
    request: dict[str, Any],
    *,
    tier: str = "realtime",
    audio_seconds: float | None = None,
) -> int:
    """The high end of what this call may cost, in micro-USD (0 when it cannot be priced: an unpriced
    call holds nothing and is not stopped by a budget; its job's cost says "no price"). `tier`
    "batch": at the provider's batch price (its realtime one where the book has none)."""
    url = _URL.get(kind)
    if url is None:
        return 0
    realtime_only = tier == "realtime"
    media = MediaFacts(audio_seconds=audio_seconds)
    estimate = estimate_job(url, request, media, provider=provider, book=book, high_only=realtime_only)
    if not estimate.priced:
        return 0
    high = estimate.high if realtime_only or estimate.batch_high is None else estimate.batch_high
    return max(1, math.ceil(high * MICRO))


def job_cost(
    book: PriceBook,
    provider: str,
    kind: Kind,
    request: dict[str, Any],
    usage: dict[str, Any] | None,
    audio_seconds: float | None = None,
    tier: str = "realtime",
) -> JobCost:
    """A provider's answer priced: its reported usage by the book (rules where it reports none)."""
    media = MediaFacts(audio_seconds=audio_seconds)
    cost = cost_of(provider, model_of(request), kind.value, usage, request, media=media, tier=tier, book=book)
    saved = 0
    if tier != "realtime" and cost.priced:
        realtime = cost_of(provider, model_of(request), kind.value, usage, request, media=media, book=book)
        saved = max(0, realtime.micro_usd - cost.micro_usd)
    return JobCost(
        usd=str(cost.amount),
        micro_usd=cost.micro_usd,
        saved_micro_usd=saved,
        tier=tier,
        priced_as=cost.priced_as,
        missing=cost.missing,
        estimated=cost.estimated,
    )


@dataclass(frozen=True)
class SpendScopes:
    """The spend hashes a job's calls count against, and where each one's limit is read: '' for a
    batch (its own `max_cost`), a field of the operator's budgets hash for a tenant's day and month."""

    keys: list[str]
    limits: list[str]


def scopes(records: Any, job: JobRecord, now: float | None = None) -> SpendScopes:
    day, month = records.spend_keys(job.tenant, now)
    keys, limits = [day, month], [f"{job.tenant}:day", f"{job.tenant}:month"]
    if job.batch_id:
        keys.insert(0, records.batch_key(job.batch_id))
        limits.insert(0, "")
    return SpendScopes(keys, limits)


class OverBudget(Exception):
    """A budget would be exceeded by this call: nothing was booked."""

    def __init__(
        self,
        scope: str,
        held_micro: int,
        estimate_micro: int = 0,
        resume: dict[str, Any] | None = None,
        key: str = "",
    ) -> None:
        super().__init__(scope)
        self.scope = scope  # "batch", "day" or "month"
        self.key = key  # its spend hash
        self.held_micro = held_micro  # what calls in flight hold against it
        self.estimate_micro = estimate_micro  # what this call may cost
        self.resume = resume  # where the job picks up when it runs again


def scope_named(job: JobRecord, position: int) -> str:
    """The name of the spend hash at `position` (from 1) of `scopes(job)`."""
    names = ["batch", "day", "month"] if job.batch_id else ["day", "month"]
    return names[position - 1] if 0 < position <= len(names) else "budget"


def retry_at_ms(over: OverBudget, now: float | None = None) -> float:
    """When a job refused by `over` should try again: when spending settles (a call in flight gives its
    estimate back and wakes one waiter) or the budget is raised (+inf: only then); a tenant's day or
    month budget with nothing in flight, at the next UTC day or month."""
    if over.held_micro > 0 or over.scope not in ("day", "month"):
        return math.inf
    t = time.gmtime(now if now is not None else time.time())
    if over.scope == "day":
        start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400
    else:
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        start = calendar.timegm((year, month, 1, 0, 0, 0))
    return start * 1000.0


def park_delay_s(at_ms: float, now: float | None = None) -> float:
    """How long arq keeps a waiting job before re-running it anyway."""
    if math.isinf(at_ms):
        return PARK_MAX_S
    return max(1.0, min(PARK_MAX_S, at_ms / 1000 - (now if now is not None else time.time())))


def payload_ttl_ms(delay_s: float) -> int:
    return int(delay_s * 1000) + JOB_EXPIRES_MS


async def _policy(rt: Runtime, job: JobRecord) -> OnBudget:
    if not job.batch_id:
        return OnBudget.wait
    value = await rt.records.redis.hget(rt.records.batch_key(job.batch_id), "on_budget")
    return OnBudget(value.decode() if isinstance(value, bytes) else value or OnBudget.wait)


async def waits(rt: Runtime, job: JobRecord, over: OverBudget, queue: str = "") -> bool:
    """A refused job waits for its budget (status `budget`: True; with `queue`, arq's entry was moved in
    the same call, else the caller re-queues it for `PARK_MAX_S` at most) or, when its batch chose
    `on_budget: fail`, False: the caller fails it."""
    if await _policy(rt, job) is OnBudget.fail:
        return False
    job.resume = over.resume
    at_ms = retry_at_ms(over)
    delay = park_delay_s(at_ms)
    state = {name: value for name, value in state_fields(job).items() if name in ("attempts", "resume")}
    outcome = await rt.budgets.park(
        job,
        state,
        retry_at_ms=at_ms,
        refused_by=over.key,
        held_micro=over.held_micro,
        payload_key=job_key_prefix + job.id,
        rerun_at_ms=int((time.time() + delay) * 1000),
        payload_ttl_ms=payload_ttl_ms(delay),
        queue=queue,
        in_progress_key=in_progress_key_prefix + job.id if queue else "",
    )
    log.info("job %s waits for its %s budget (%s)", job.id, over.scope, outcome, extra={"job_id": job.id})
    return True


async def exceeded(rt: Runtime, job: JobRecord, over: OverBudget) -> JobError:
    """The job's error when its batch chose to fail rather than wait."""
    spending = ""
    if over.scope == "batch" and job.batch_id:
        limit, spent = await rt.records.redis.hmget(rt.records.batch_key(job.batch_id), "max_cost", "spent")
        spending = f" (max_cost {usd(int(limit or 0))}, spent {usd(int(spent or 0))},"
        spending += f" held by calls in flight {usd(over.held_micro)})"
    call = f"this call (up to {usd(over.estimate_micro)})"
    return JobError(type="budget_exceeded", message=f"{call} would exceed the {over.scope} budget{spending}")


def usd(micro: int) -> str:
    """Micro-USD for people, as every other view writes it (mmq.budgets.dollars)."""
    return f"${dollars(micro)}"
