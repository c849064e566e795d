"""The job function arq runs: load record → cache lookup / single-flight → prepare media → provider call
(with retries) → store result → cache entry → update record and batch counters.

It never lets an exception escape except arq's `Retry` (a deferred re-run): every other outcome is
written to the job record, so one bad job can never take down the worker or its batch.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from arq import Retry
from redis.asyncio import Redis

from mmq.cache import Cache, answer_from
from mmq.contract import TERMINAL, Attempt, JobError, JobRecord, JobStatus, Kind
from mmq.errors import NON_RETRYABLE_CODES, InvalidJob, ProviderError
from mmq.fetch import FetchedMedia, FetchPolicy
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import Storage
from worker import batch_tasks, dedup
from worker.circuit import CircuitBreaker, counts_against_target
from worker.credentials import VirtualKeys
from worker.limiter import Limiter, estimate_tokens
from worker.media_ready import MediaOptions, ready_for
from worker.prepare import prepare
from worker.providers import get_adapter
from worker.providers.base import ProviderResponse, Target
from worker.results import store_result
from worker.retry import backoff_s
from worker.routes import Route, candidate_buckets, fetches_urls_itself, has_loadbalance, routes_for

log = logging.getLogger("mmq.worker")


@dataclass
class Runtime:
    """What every job in a worker process shares (created once in the worker's on_startup)."""

    settings: Settings
    records: Records
    storage: Storage
    client: httpx.AsyncClient
    target: Target
    keys: VirtualKeys = field(default_factory=VirtualKeys)
    limiter: Limiter = field(init=False)
    breaker: CircuitBreaker = field(init=False)
    cache: Cache = field(init=False)

    def __post_init__(self) -> None:
        redis: Redis = self.records.redis
        self.limiter = Limiter(redis, self.settings.key_prefix, margin=self.settings.rate_limit_margin)
        self.breaker = CircuitBreaker(
            redis,
            self.settings.key_prefix,
            threshold=self.settings.circuit_threshold,
            open_s=self.settings.circuit_open_s,
        )
        self.cache = Cache(
            redis,
            self.settings.key_prefix,
            ttl_s=self.settings.cache_ttl_s,
            bands=self.settings.cache_phash_bands,
        )


def _redact(text: str, target: Target) -> str:
    """Providers echo credentials in some errors (e.g. 401 "Incorrect API key provided: …");
    nothing secret may reach the job record."""
    key = target.api_key
    if key and len(key) >= 8:
        text = text.replace(key, "***")
    return text


async def _load_request(job: JobRecord, storage: Storage) -> dict[str, Any]:
    if job.request is not None:
        # a copy: preparing it turns blob references into data: URLs, and the record goes back to Redis
        return copy.deepcopy(job.request)
    if job.request_key:
        return json.loads(await storage.get(job.request_key))
    raise InvalidJob("job has no request")


def _may_fall_back(err: ProviderError, route: Route) -> bool:
    if route.fallback_on is not None:
        return err.status in route.fallback_on
    return err.retryable or err.status in (408, 429) or (err.status or 0) >= 500


def _may_retry(err: ProviderError, route: Route) -> bool:
    if route.retry_on is not None:
        return err.status in route.retry_on and err.code not in NON_RETRYABLE_CODES
    return err.retryable


class _Defer(Exception):
    """Leave the worker slot: re-run the job after `seconds`, picking up at `resume`."""

    def __init__(self, seconds: float, resume: dict[str, Any] | None) -> None:
        self.seconds = seconds
        self.resume = resume


async def _plan(rt: Runtime, job: JobRecord, request: dict[str, Any]) -> list[Route]:
    config = job.config if job.config is not None else rt.settings.default_config
    unhealthy: set[str] = set()
    if has_loadbalance(config):
        assert config is not None
        buckets = sorted(set(candidate_buckets(config, request, rt.target).values()))
        unhealthy = await rt.breaker.open_targets(buckets)
    # seeded by the job id: a deferred job that re-plans lands on the same loadbalance pick
    return routes_for(
        config,
        request,
        job.metadata,
        rt.settings,
        rt.keys,
        rt.target,
        rng=random.Random(job.id),
        unhealthy=unhealthy,
        kind=job.kind,
    )


async def _admit(rt: Runtime, route: Route, tokens: int, resume: dict[str, Any]) -> str | None:
    """Wait for this target's shared rate limit (slot, tokens, concurrency, 429 cooldown); defer the
    job when the wait is long. Returns the concurrency lease to release after the call."""
    settings = rt.settings
    while True:
        admission = await rt.limiter.acquire(
            route.bucket,
            route.rate_limit,
            tokens=tokens,
            max_wait_s=settings.rate_wait_max_s,
            lease_ttl_s=route.timeout_s + settings.rate_wait_max_s,
        )
        if admission.admitted:
            if admission.wait_s <= 0:
                return admission.lease
            await asyncio.sleep(admission.wait_s)
            # a 429 elsewhere while we slept pauses this call too; otherwise the booked slot is ours
            if await rt.limiter.cooldown_left(route.bucket) <= 0:
                return admission.lease
            await rt.limiter.release(route.bucket, admission.lease)
            continue
        if admission.wait_s > settings.retry_sleep_max_s:
            raise _Defer(admission.wait_s * random.uniform(1.0, 1.1), resume)
        await asyncio.sleep(admission.wait_s * random.uniform(1.0, 1.1))


def _media_options(
    settings: Settings, job: JobRecord, prefetched: dict[str, FetchedMedia] | None = None
) -> MediaOptions:
    prep = job.media
    return MediaOptions(
        prefetched=prefetched or {},
        max_side=(prep.max_side if prep and prep.max_side else None) or settings.media_max_side,
        max_bytes=(prep.max_bytes if prep and prep.max_bytes else None) or settings.media_max_bytes,
        max_pixels=settings.image_max_pixels,
        fetch=FetchPolicy(
            max_bytes=settings.fetch_max_bytes, allow_hosts=frozenset(settings.fetch_allow_hosts)
        ),
    )


async def _media_ready(
    rt: Runtime, job: JobRecord, route: Route, adapter: Any, prefetched: dict[str, FetchedMedia]
) -> Route:
    """The route's request with media this provider accepts (fetched, converted, downscaled)."""
    opts = _media_options(rt.settings, job, prefetched)
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


def _real_attempts(job: JobRecord) -> int:
    return sum(1 for a in job.attempts if not a.skipped)


async def _call_with_retries(
    rt: Runtime, job: JobRecord, request: dict[str, Any], prefetched: dict[str, FetchedMedia]
) -> ProviderResponse:
    """Walks the job's routes (fallback order); on each target retries what is worth retrying, sleeping
    through short waits and deferring the job (freeing the worker slot) for long ones. Targets whose
    circuit is open are skipped; if every remaining one is, the job waits for the first probe."""
    audio = await prepare(job.kind, request, rt.storage, max_pixels=rt.settings.image_max_pixels)
    routes = await _plan(rt, job, request)
    first, first_tries = 0, 0
    if job.resume:
        names = [r.target.name for r in routes]
        if job.resume.get("target") in names:
            first, first_tries = names.index(job.resume["target"]), int(job.resume.get("tries", 0))
    probe_wait: float | None = None
    skipped_from: str | None = None
    for n in range(first, len(routes)):
        route = routes[n]
        permit = await rt.breaker.allow(route.bucket)
        if not permit.allowed:
            job.attempts.append(
                Attempt(target=route.target.name, latency_ms=0, error="skipped: circuit open", skipped=True)
            )
            probe_wait = permit.wait_s if probe_wait is None else min(probe_wait, permit.wait_s)
            skipped_from = skipped_from or route.target.name
            continue
        adapter = get_adapter(route.target.provider)
        if job.kind is Kind.chat:
            try:
                route = await _media_ready(rt, job, route, adapter, prefetched)
            except InvalidJob as e:
                # this provider cannot take this media (type, size, count); another target may
                if n + 1 == len(routes):
                    raise
                job.attempts.append(
                    Attempt(
                        target=route.target.name, latency_ms=0, error=f"not sendable here: {e}", skipped=True
                    )
                )
                continue
        tokens = estimate_tokens(route.request) if route.rate_limit and route.rate_limit.tpm else 1
        tries = first_tries if n == first else 0
        while True:
            tries += 1
            lease = await _admit(rt, route, tokens, {"target": route.target.name, "tries": tries - 1})
            started = time.perf_counter()
            try:
                async with asyncio.timeout(route.timeout_s):
                    resp = await adapter.call(rt.client, route.target, job.kind, route.request, audio)
            except (ProviderError, httpx.TransportError, TimeoutError) as exc:
                await rt.limiter.release(route.bucket, lease)
                err = _as_provider_error(exc, route.target)
                err.message = _redact(err.message, route.target)
                job.attempts.append(
                    Attempt(
                        target=route.target.name,
                        status=err.status,
                        latency_ms=(time.perf_counter() - started) * 1000,
                        error=str(err),  # already redacted above
                    )
                )
                await _observe_failure(rt, route, err)
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
                    if delay > rt.settings.retry_sleep_max_s:
                        raise _Defer(delay, {"target": route.target.name, "tries": tries}) from None
                    await asyncio.sleep(delay)
                    continue
                if n + 1 < len(routes) and _may_fall_back(err, route):
                    break  # next target
                raise err from None
            await rt.limiter.release(route.bucket, lease)
            # every success, even when this job saw no failure: another worker's may have landed meanwhile,
            # and only a reset keeps "consecutive" true (skipping it opened circuits at a 3% error rate)
            await rt.breaker.record(route.bucket, ok=True)
            if route.rate_limit and route.rate_limit.tpm and resp.usage:
                actual = resp.usage.get("total_tokens")
                if isinstance(actual, int):
                    await rt.limiter.correct_tokens(route.bucket, route.rate_limit, tokens, actual)
            job.attempts.append(
                Attempt(
                    target=route.target.name,
                    status=resp.status,
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
            )
            return resp
    if probe_wait is not None:
        # every target left is sick: wait for the first probe slot instead of failing the job
        raise _Defer(max(probe_wait, 1.0) * random.uniform(1.0, 1.1), {"target": skipped_from, "tries": 0})
    raise InvalidJob("routing produced no targets", type="routing_error")


async def _observe_failure(rt: Runtime, route: Route, err: ProviderError) -> None:
    """What every other worker should learn from this failure: a 429 pauses the target for all of
    them; a 5xx/timeout counts toward opening its circuit."""
    if err.status == 429 and err.code not in NON_RETRYABLE_CODES:
        await rt.limiter.cool_down(route.bucket, err.retry_after_s or 1.0)
    elif counts_against_target(err.status, err.code):
        state = await rt.breaker.record(route.bucket, ok=False)
        if state == "open":
            log.warning("circuit opened for %s after repeated failures", route.bucket)


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


async def _finish(rt: Runtime, job: JobRecord, to: JobStatus, from_: JobStatus = JobStatus.running) -> None:
    job.finished_at = time.time()
    outcome = await rt.records.transition(job, (from_,), to, provider_calls=_real_attempts(job))
    if outcome == "ended" and job.batch_id:
        await batch_tasks.batch_ended(rt, job.batch_id)


async def _fail(rt: Runtime, job: JobRecord, error: JobError) -> None:
    job.error = error
    log.info("job %s failed: %s: %s", job.id, error.type, error.message)
    await _finish(rt, job, JobStatus.failed)


async def run_job(ctx: dict[str, Any], job_id: str) -> dict[str, Any]:
    rt: Runtime = ctx["mmq"]
    job = await rt.records.get_job(job_id)
    if job is None:
        log.warning("job %s has no record; dropped", job_id)
        return {"ok": False, "error": "no record"}
    if job.status in TERMINAL:
        return {"ok": True, "status": job.status.value}  # a re-run after the job already ended
    if job.deadline is not None and time.time() >= job.deadline:
        job.error = batch_tasks.BATCH_EXPIRED  # its window closed before it could run (again)
        if job.batch_id:
            await rt.records.mark_expired(job.batch_id)  # maybe before the expire job ran: ends `expired`
        await _finish(rt, job, JobStatus.failed, from_=job.status)
        return {"ok": False, "status": job.status.value}
    if job.status is JobStatus.queued:
        job.started_at = time.time()
        moved = await rt.records.transition(job, (JobStatus.queued,), JobStatus.running)
        if moved != "ok":
            return {"ok": True, "status": moved}  # cancelled (or taken) meanwhile
    lookup = dedup.Lookup()
    try:
        async with asyncio.timeout(max(1.0, rt.settings.job_timeout_s - 5)):
            request = await _load_request(job, rt.storage)
            lookup = await dedup.look_up(rt, job, request)
            if lookup.entry is not None:
                answer_from(job, lookup.entry)
                await _finish(rt, job, JobStatus.succeeded)
                return {"ok": True, "status": job.status.value, "cached": True}
            if lookup.wait_s is not None:
                raise _Defer(lookup.wait_s, job.resume)  # an identical job is calling the provider
            resp = await _call_with_retries(rt, job, request, lookup.prefetched)
            job.result = await store_result(job, request, resp, rt.storage, rt.client)
            job.resume = None
            media = (job.usage or {}).get("media")
            job.usage = {**(resp.usage or {}), "media": media} if media else resp.usage
            job.error = None
            await dedup.remember(rt, job)
            await _finish(rt, job, JobStatus.succeeded)
            return {"ok": True, "status": job.status.value}
    except _Defer as d:
        job.resume = d.resume
        await rt.records.save(job)
        raise Retry(defer=d.seconds) from None
    except InvalidJob as e:
        await _fail(rt, job, JobError(type=e.type, message=str(e)))
    except ProviderError as e:
        await _fail(
            rt,
            job,
            JobError(
                type="provider_error",
                message=str(e),  # redacted where the attempt failed
                provider_status=e.status,
                code=e.code,
            ),
        )
    except TimeoutError:
        await _fail(rt, job, JobError(type="timeout", message=f"job exceeded {rt.settings.job_timeout_s}s"))
    except Exception as e:  # a bug must cost one job, never the worker
        log.exception("job %s crashed", job_id)
        await _fail(rt, job, JobError(type="internal", message=f"{type(e).__name__}: {e}"))
    if lookup.leader:
        await dedup.give_up_lead(rt, job)  # a waiting duplicate takes over
    return {"ok": job.status is JobStatus.succeeded, "status": job.status.value}
