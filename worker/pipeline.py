"""The job function arq runs: load record → prepare media → provider call (with retries) → store result
→ update record and batch counters.

It never lets an exception escape except arq's `Retry` (a deferred re-run): every other outcome is
written to the job record, so one bad job can never take down the worker or its batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from arq import Retry

from worker.config import Settings
from worker.contract import TERMINAL, Attempt, JobError, JobRecord, JobStatus
from worker.credentials import VirtualKeys
from worker.errors import NON_RETRYABLE_CODES, InvalidJob, ProviderError
from worker.prepare import prepare
from worker.providers import get_adapter
from worker.providers.base import ProviderResponse, Target
from worker.records import Records
from worker.results import store_result
from worker.retry import backoff_s
from worker.routes import Route, routes_for
from worker.storage import Storage

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


def _redact(text: str, target: Target) -> str:
    """Providers echo credentials in some errors (e.g. 401 "Incorrect API key provided: …");
    nothing secret may reach the job record."""
    key = target.api_key
    if key and len(key) >= 8:
        text = text.replace(key, "***")
    return text


async def _load_request(job: JobRecord, storage: Storage) -> dict[str, Any]:
    if job.request is not None:
        return job.request
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


async def _call_with_retries(rt: Runtime, job: JobRecord, request: dict[str, Any]) -> ProviderResponse:
    """Walks the job's routes (fallback order); on each target retries what is worth retrying, sleeping
    through short waits and deferring the job (freeing the worker slot) for long ones."""
    audio = await prepare(job.kind, request, rt.storage)
    config = job.config if job.config is not None else rt.settings.default_config
    routes = routes_for(config, request, job.metadata, rt.settings, rt.keys, rt.target)
    for n, route in enumerate(routes):
        adapter = get_adapter(route.target.provider)
        tries = 0
        while True:
            tries += 1
            started = time.perf_counter()
            try:
                async with asyncio.timeout(route.timeout_s):
                    resp = await adapter.call(rt.client, route.target, job.kind, route.request, audio)
            except (ProviderError, httpx.TransportError, TimeoutError) as exc:
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
                if len(job.attempts) >= rt.settings.max_total_attempts:
                    raise err from None
                if tries < route.max_attempts and _may_retry(err, route):
                    delay = backoff_s(
                        tries,
                        base_s=rt.settings.retry_base_s,
                        cap_s=rt.settings.retry_cap_s,
                        retry_after_s=err.retry_after_s,
                    )
                    if delay > rt.settings.retry_sleep_max_s:
                        await rt.records.save(job)
                        raise Retry(defer=delay) from None
                    await asyncio.sleep(delay)
                    continue
                if n + 1 < len(routes) and _may_fall_back(err, route):
                    break  # next target
                raise err from None
            job.attempts.append(
                Attempt(
                    target=route.target.name,
                    status=resp.status,
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
            )
            return resp
    raise InvalidJob("routing produced no targets", type="routing_error")


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


async def _finish(rt: Runtime, job: JobRecord, to: JobStatus) -> None:
    job.finished_at = time.time()
    await rt.records.transition(job, (JobStatus.running,), to)


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
    if job.status is JobStatus.queued:
        job.started_at = time.time()
        moved = await rt.records.transition(job, (JobStatus.queued,), JobStatus.running)
        if moved != "ok":
            return {"ok": True, "status": moved}  # cancelled (or taken) meanwhile
    try:
        async with asyncio.timeout(max(1.0, rt.settings.job_timeout_s - 5)):
            request = await _load_request(job, rt.storage)
            resp = await _call_with_retries(rt, job, request)
            job.result = await store_result(job, request, resp, rt.storage, rt.client)
            job.usage = resp.usage
            job.error = None
            await _finish(rt, job, JobStatus.succeeded)
    except Retry:
        raise
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
    return {"ok": job.status is JobStatus.succeeded, "status": job.status.value}
