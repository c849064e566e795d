"""A job's attempts: plan its targets, then for each one make its media ready, pass the gate, call,
and retry or fall back, until an answer or a final error.

Why apart from the job function (worker/pipeline.py): this is the loop that holds the rules a reader
checks against the routing config (retry and fallback policy, circuits, 429 pauses, rate slots,
budgets, deferral when a wait is long), and the job function reads better as the list of its steps.
Every attempt is recorded on the job (a repeat of the same outcome counted, not appended); a call is
counted in its batch's `provider_calls` by the round trip that lets it go.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from dataclasses import replace
from typing import Any

import httpx

from mmq import metrics, tracing
from mmq.contract import Attempt, JobRecord
from mmq.errors import NON_RETRYABLE_CODES, InvalidJob, ProviderError
from mmq.fetch import FetchedMedia, FetchFailed, FetchPolicy
from mmq.pricing.audio import measure_audio
from mmq.request_models import Kind
from mmq.settings import Settings
from worker import budget
from worker.batch_tier import engine as batch_tier
from worker.batch_tier.protocol import WINDOW_S
from worker.finish import Writes
from worker.gate import Outcome, counts_against_target, estimate_tokens
from worker.media_ready import MediaOptions, ready_for
from worker.prepare import ImageFacts, prepare
from worker.providers import get_adapter
from worker.providers.base import AudioInput, ProviderResponse, Target
from worker.retry import backoff_s
from worker.routes import Route, candidate_buckets, fetches_urls_itself, has_loadbalance, routes_for
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")


def _redact(text: str, target: Target) -> str:
    """Providers echo credentials in some errors (e.g. 401 "Incorrect API key provided: …");
    nothing secret may reach the job record."""
    key = target.api_key
    if key and len(key) >= 8:
        text = text.replace(key, "***")
    return text


def _may_fall_back(err: ProviderError, route: Route) -> bool:
    if route.fallback_on is not None:
        return err.status in route.fallback_on
    return err.retryable or err.status in (408, 429) or (err.status or 0) >= 500


def _may_retry(err: ProviderError, route: Route) -> bool:
    if route.retry_on is not None:
        return err.status in route.retry_on and err.code not in NON_RETRYABLE_CODES
    return err.retryable


class Defer(Exception):
    """Leave the worker slot: re-run the job after `seconds`, picking up at `resume`."""

    def __init__(self, seconds: float, resume: dict[str, Any] | None) -> None:
        self.seconds = seconds
        self.resume = resume


async def plan_routes(rt: Runtime, job: JobRecord, request: dict[str, Any]) -> list[Route]:
    config = job.config if job.config is not None else rt.settings.default_config
    unhealthy: set[str] = set()
    rng = None  # only a loadbalance draws: most jobs never pay for seeding one
    if has_loadbalance(config):
        assert config is not None
        buckets = sorted(set(candidate_buckets(config, request, rt.target).values()))
        unhealthy = await rt.gate.open_targets(buckets)
        # seeded by the job id: a deferred job that re-plans lands on the same loadbalance pick
        rng = random.Random(job.id)
    return routes_for(
        config,
        request,
        job.metadata,
        rt.settings,
        rt.keys,
        rt.target,
        rng=rng,
        unhealthy=unhealthy,
        kind=job.kind,
    )


def _estimate(
    rt: Runtime, job: JobRecord, route: Route, tier: str = "realtime", audio: AudioInput | None = None
) -> int:
    prices = budget.book_for(rt.prices, route.prices)
    seconds = measure_audio(audio.data) if audio is not None else None
    return budget.estimate_micro(
        prices, route.target.provider, job.kind, route.request, tier=tier, audio_seconds=seconds
    )


async def _hold_for_batch(
    rt: Runtime, job: JobRecord, route: Route, audio: AudioInput | None, resume: dict[str, Any]
) -> str:
    """A job about to wait for a provider batch holds its estimate at the batch price against its
    budgets, as a realtime call holds its own at admission (the same script, so the same rules): the
    hold lasts until its line's answer is finished (the cost swapped in) or the job goes back to
    realtime (given back there, held again by its realtime admission). Raises OverBudget when a budget
    has no room: the job waits for it (or fails) exactly as a realtime call would."""
    spend = budget.scopes(rt.records, job)
    estimate = _estimate(rt, job, route, "batch", audio) if rt.budgets_seen else -1
    # until the provider batch's window and the deadline have both passed, with an hour's slack
    ttl_s = max((job.deadline or 0) - time.time(), WINDOW_S) + 3600
    while True:
        held = await rt.gate.hold(
            estimate_micro=estimate, ttl_s=ttl_s, spend_keys=spend.keys, spend_limits=spend.limits
        )
        if held.needs_estimate:
            rt.budgets_seen = True
            estimate = _estimate(rt, job, route, "batch", audio)
            continue
        if held.over_budget:
            scope = budget.scope_named(job, held.over_scope)
            raise budget.OverBudget(scope, held.held_micro, estimate, resume, spend.keys[held.over_scope - 1])
        return held.reservation


class _CircuitOpen(Exception):
    """The target's circuit is open: skip it (a probe may go after `wait_s`)."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s


async def _admit(
    rt: Runtime,
    job: JobRecord,
    route: Route,
    tokens: int,
    resume: dict[str, Any],
    audio: AudioInput | None = None,
    *,
    retry: bool = False,
) -> tuple[str | None, str]:
    """Wait for this target's gate (circuit, 429 pause, concurrency, rate slot) and the job's budgets;
    defer the job when the wait is long. Returns the concurrency lease and the budget reservation to
    give back after the call. The call is counted in its batch's `provider_calls` by the round trip that
    admits it, before it is sent: a call a crash abandons is still counted. A `retry` takes the slot of
    this process's next sleeping first call, if any (worker/gate.py), instead of queueing at the back."""
    settings = rt.settings
    count_in = rt.records.batch_key(job.batch_id) if job.batch_id else ""
    spend = budget.scopes(rt.records, job)
    # pricing a call costs ~40 µs of CPU and most calls meet no budget: the admit script says when one
    # applies; from then on this process prices every call up front (no second round trip)
    estimate_micro = _estimate(rt, job, route, audio=audio) if rt.budgets_seen else -1
    loop = asyncio.get_running_loop()
    taken = rt.gate.take_slot(route.bucket) if retry and route.rate_limit else None
    slot_at = None if taken is None else loop.time() + taken
    while True:
        admission = await rt.gate.admit(
            route.bucket,
            route.rate_limit,
            tokens=tokens,
            max_wait_s=settings.rate_wait_max_s,
            lease_ttl_s=route.timeout_s + settings.rate_wait_max_s,
            count_in=count_in,
            estimate_micro=estimate_micro,
            spend_keys=spend.keys,
            spend_limits=spend.limits,
            book_slot=slot_at is None,
        )
        if admission.circuit_open:
            raise _CircuitOpen(admission.wait_s)
        if admission.needs_estimate:
            rt.budgets_seen = True
            estimate_micro = _estimate(rt, job, route, audio=audio)
            continue
        if admission.over_budget:
            scope = budget.scope_named(job, admission.over_scope)
            key = spend.keys[admission.over_scope - 1]
            raise budget.OverBudget(scope, admission.held_micro, estimate_micro, resume, key)
        if admission.admitted:
            count_in = ""  # counted: if it books again below, it is still one call
            wait_s = admission.wait_s if slot_at is None else slot_at - loop.time()
            metrics.RATE_WAIT.observe(max(0.0, wait_s))
            if wait_s <= 0:
                return admission.lease, admission.reservation
            left = await rt.gate.wait_for_slot(route.bucket, wait_s, first_call=not retry)
            if left == 0:
                return admission.lease, admission.reservation
            # a retry took the slot (-1), or a 429 this process saw paused the target: book again
            if admission.lease or admission.reservation:
                await rt.gate.settle(
                    route.bucket, "other", lease=admission.lease, reservation=admission.reservation
                )
            slot_at = None
            if left > 0:
                await asyncio.sleep(left)
            continue
        # not admitted (a 429 pause, a full pool): a slot taken for it stays its own, even if it passes
        if admission.wait_s > settings.retry_sleep_max_s:
            raise Defer(admission.wait_s * random.uniform(1.0, 1.1), resume)
        await asyncio.sleep(admission.wait_s * random.uniform(1.0, 1.1))


def _media_options(
    settings: Settings,
    job: JobRecord,
    prefetched: dict[str, FetchedMedia] | None = None,
    known: dict[str, ImageFacts] | None = None,
) -> MediaOptions:
    prep = job.media
    return MediaOptions(
        prefetched=prefetched or {},
        known=known or {},
        max_side=(prep.max_side if prep and prep.max_side else None) or settings.media_max_side,
        max_bytes=(prep.max_bytes if prep and prep.max_bytes else None) or settings.media_max_bytes,
        max_pixels=settings.image_max_pixels,
        fetch=FetchPolicy(
            max_bytes=settings.fetch_max_bytes, allow_hosts=frozenset(settings.fetch_allow_hosts)
        ),
    )


async def _media_ready(
    rt: Runtime,
    job: JobRecord,
    route: Route,
    adapter: Any,
    prefetched: dict[str, FetchedMedia],
    known: dict[str, ImageFacts],
) -> Route:
    """The route's request with media this provider accepts (fetched, converted, downscaled)."""
    opts = _media_options(rt.settings, job, prefetched, known)
    request, report = await ready_for(
        route.request,
        adapter.media,
        route.target.provider,
        rt.client,
        opts,
        provider_fetches=fetches_urls_itself(route.target),
    )
    if report.as_usage():
        job.usage = {**(job.usage or {}), "media": report.as_usage()}
    return replace(route, request=request)


async def _media_ready_with_retries(
    rt: Runtime,
    job: JobRecord,
    route: Route,
    adapter: Any,
    prefetched: dict[str, FetchedMedia],
    known: dict[str, ImageFacts],
) -> Route:
    """`_media_ready`, with a transient fetch failure (5xx, 408/425/429, timeouts, connection errors)
    retried on the route's policy: its tries and the job's backoff, short waits only (the fetch is the
    worker's own, no provider slot is held). The last failure is raised for the caller's fallback."""
    tries = 0
    while True:
        tries += 1
        try:
            return await _media_ready(rt, job, route, adapter, prefetched, known)
        except FetchFailed as e:
            if not e.retryable or tries >= route.max_attempts:
                raise
            delay = backoff_s(
                tries,
                base_s=rt.settings.retry_base_s,
                cap_s=rt.settings.retry_cap_s,
                retry_after_s=e.retry_after_s,
            )
            await asyncio.sleep(min(delay, rt.settings.retry_sleep_max_s))


def _record(job: JobRecord, attempt: Attempt) -> None:
    """Append `attempt`, or count it on the last entry when it repeats that one's outcome."""
    last = job.attempts[-1] if job.attempts else None
    if last is not None and last.same_as(attempt):
        last.repeats += 1
        last.at, last.latency_ms = attempt.at, max(last.latency_ms, attempt.latency_ms)
    else:
        job.attempts.append(attempt)


def _real_attempts(job: JobRecord) -> int:
    return sum(a.repeats for a in job.attempts if not a.skipped)


async def call_with_retries(
    rt: Runtime,
    job: JobRecord,
    request: dict[str, Any],
    prefetched: dict[str, FetchedMedia],
    writes: Writes,
) -> ProviderResponse:
    """Walks the job's routes (fallback order); on each target retries what is worth retrying, sleeping
    through short waits and deferring the job (freeing the worker slot) for long ones. Targets whose
    circuit is open are skipped; if every remaining one is, the job waits for the first probe. The
    success's settle and its budget reservation go in `writes`: they ride with the job's finish, in one
    round trip; its cost is set on the job."""
    facts: dict[str, ImageFacts] = {}
    audio = await prepare(job.kind, request, rt.storage, max_pixels=rt.settings.image_max_pixels, facts=facts)
    routes = await plan_routes(rt, job, request)
    first, first_tries = 0, 0
    if job.resume:
        names = [r.target.name for r in routes]
        if job.resume.get("target") in names:
            first, first_tries = names.index(job.resume["target"]), int(job.resume.get("tries", 0))
    probe_wait: float | None = None
    skipped_from: str | None = None
    for n in range(first, len(routes)):
        route = routes[n]
        adapter = get_adapter(route.target.provider)
        if job.kind is Kind.chat:
            try:
                route = await _media_ready_with_retries(rt, job, route, adapter, prefetched, facts)
            except FetchFailed as e:
                # the media would not come for this target; the next may take the URL itself
                _record(
                    job,
                    Attempt(
                        target=route.target.name, status=e.status, latency_ms=0, error=str(e), skipped=True
                    ),
                )
                if n + 1 == len(routes):
                    raise
                continue
            except InvalidJob as e:
                # this provider cannot take this media (type, size, count); another target may
                if n + 1 == len(routes):
                    raise
                _record(
                    job,
                    Attempt(
                        target=route.target.name, latency_ms=0, error=f"not sendable here: {e}", skipped=True
                    ),
                )
                continue
        if n == first and not first_tries and (native := batch_tier.eligible(rt, job, route)) is not None:
            # the tier decides how the target is called; a budget holds the line's batch price first
            hold = await _hold_for_batch(rt, job, route, audio, {"target": route.target.name, "tries": 0})
            raise batch_tier.Deposit(route, native, facts, audio, hold)
        tokens = estimate_tokens(route.request) if route.rate_limit and route.rate_limit.tpm else 1
        tries = first_tries if n == first else 0
        while True:
            tries += 1
            try:
                resume = {"target": route.target.name, "tries": tries - 1}
                lease, reservation = await _admit(rt, job, route, tokens, resume, audio, retry=tries > 1)
            except _CircuitOpen as c:
                _record(
                    job,
                    Attempt(
                        target=route.target.name, latency_ms=0, error="skipped: circuit open", skipped=True
                    ),
                )
                probe_wait = c.wait_s if probe_wait is None else min(probe_wait, c.wait_s)
                skipped_from = skipped_from or route.target.name
                break  # next target
            started = time.perf_counter()
            try:
                with tracing.call_span(route.target, job.kind, route.request) as call:
                    async with asyncio.timeout(route.timeout_s):
                        resp = await adapter.call(rt.client, route.target, job.kind, route.request, audio)
                    call.answered(resp)
            except (ProviderError, httpx.TransportError, TimeoutError) as exc:
                err = _as_provider_error(exc, route.target)
                err.message = _redact(err.message, route.target)
                _count_call(route, str(err.status or err.code or "error"), started)
                if err.status == 429:
                    metrics.RATE_LIMITED.labels(route.target.name).inc()
                _record(
                    job,
                    Attempt(
                        target=route.target.name,
                        status=err.status,
                        latency_ms=(time.perf_counter() - started) * 1000,
                        error=str(err),  # already redacted above
                    ),
                )
                await _observe_failure(rt, route, err, lease, reservation)
                if _real_attempts(job) >= rt.settings.max_total_attempts:
                    raise err from None
                if tries < route.max_attempts and _may_retry(err, route):
                    delay = backoff_s(
                        tries,
                        base_s=rt.settings.retry_base_s,
                        cap_s=rt.settings.retry_cap_s,
                        retry_after_s=err.retry_after_s,
                    )
                    if route.rate_limit and (err.status == 429 or (tries == 1 and err.retry_after_s is None)):
                        # the shared limiter paces this target (a 429 has paused it for every worker, and
                        # a sick target opens its circuit): no random backoff on top
                        delay = err.retry_after_s or 0.0
                    metrics.RETRIES.labels(route.target.name).inc()
                    if delay > rt.settings.retry_sleep_max_s:
                        raise Defer(delay, {"target": route.target.name, "tries": tries}) from None
                    await asyncio.sleep(delay)
                    continue
                if n + 1 < len(routes) and _may_fall_back(err, route):
                    break  # next target
                raise err from None
            _count_call(route, str(resp.status), started)
            # every success settles, even when this job saw no failure: another worker's may have landed
            # meanwhile, and only a reset keeps "consecutive" true (skipping it opened circuits at 3% errors)
            actual = (
                (resp.usage or {}).get("total_tokens") if route.rate_limit and route.rate_limit.tpm else None
            )
            prices = budget.book_for(rt.prices, route.prices)
            # a text/srt/vtt transcript reports no duration: priced by the seconds measured from its audio
            seconds = measure_audio(audio.data) if audio is not None and not resp.usage else None
            job.cost = budget.job_cost(
                prices, route.target.provider, job.kind, route.request, resp.usage, audio_seconds=seconds
            )
            writes.reservation = reservation  # given back by the finish, after the cost is added
            writes.before.append(
                functools.partial(
                    rt.gate.queue_settle,
                    bucket=route.bucket,
                    outcome="ok",
                    lease=lease,
                    limit=route.rate_limit,
                    estimated=tokens,
                    actual=actual if isinstance(actual, int) else None,
                )
            )
            _record(
                job,
                Attempt(
                    target=route.target.name,
                    status=resp.status,
                    latency_ms=(time.perf_counter() - started) * 1000,
                ),
            )
            return resp
    if probe_wait is not None:
        # every target left is sick: wait for the first probe slot instead of failing the job
        raise Defer(max(probe_wait, 1.0) * random.uniform(1.0, 1.1), {"target": skipped_from, "tries": 0})
    raise InvalidJob("routing produced no targets", type="routing_error")


async def _observe_failure(
    rt: Runtime, route: Route, err: ProviderError, lease: str | None, reservation: str
) -> None:
    """What every other worker should learn from this failure, with the lease and the budget reservation
    given back: a 429 pauses the target for all of them; a 5xx/timeout counts toward opening its
    circuit."""
    if err.status == 429 and err.code not in NON_RETRYABLE_CODES:
        outcome: Outcome = "429"
    elif counts_against_target(err.status, err.code):
        outcome = "sick"
    else:
        outcome = "other"
    state = await rt.gate.settle(
        route.bucket, outcome, lease=lease, cooldown_s=err.retry_after_s or 1.0, reservation=reservation
    )
    if outcome == "sick" and state == "open":
        metrics.CIRCUIT_OPENED.labels(route.target.name).inc()
        log.warning("circuit open for %s after repeated failures", route.bucket)


def _count_call(route: Route, status: str, started: float) -> None:
    metrics.PROVIDER_CALLS.labels(route.target.name, status).inc()
    metrics.PROVIDER_LATENCY.labels(route.target.name).observe(time.perf_counter() - started)


def _as_provider_error(exc: Exception, target: Target) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    timeout = isinstance(exc, TimeoutError | httpx.TimeoutException)
    return ProviderError(
        f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
        retryable=True,
        provider=target.provider,
        code="timeout" if timeout else "connection_error",
    )
