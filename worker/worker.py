"""arq worker wiring: `arq worker.worker.WorkerSettings` or `mmq worker` run the same thing."""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio
from arq import Worker, func
from arq.connections import ArqRedis, RedisSettings
from prometheus_client import start_http_server

from mmq import metrics
from mmq.connections import MMQ_CLIENT_NAME, PackedConnection, connect
from mmq.pricing.book import PriceBookError, book_from_env
from mmq.queue import (
    BATCH_TASK_TIMEOUT_S,
    EXPIRE_FUNCTION,
    JOB_FUNCTION,
    NOTIFY_FUNCTION,
    RELEASE_FUNCTION,
    WEBHOOK_TIMEOUT_S,
    deserialize,
    serialize,
)
from mmq.records import Records
from mmq.settings import Settings, get_settings
from mmq.shared_store import StoreMismatch, check_shared_store
from mmq.storage import open_storage
from worker.arq_worker import OneTripWorker
from worker.batch_tasks import WEBHOOK_TRIES, expire_batch, notify_batch, release_batch
from worker.batch_tier.engine import GATHER_FUNCTION, POLL_FUNCTION, gather_pack, poll_pack
from worker.credentials import VirtualKeys
from worker.http import make_client
from worker.pipeline import run_job
from worker.runtime import Runtime
from worker.targets import default_target

log = logging.getLogger("mmq.worker")


def _job_functions(settings: Settings) -> list[Any]:
    # arq counts every start (deferrals included) against max_tries; our own attempt counter in the
    # job record decides when a job gives up, so arq's is only a runaway guard.
    return [
        func(run_job, name=JOB_FUNCTION, max_tries=1000, timeout=settings.job_timeout_s),
        func(release_batch, name=RELEASE_FUNCTION, max_tries=20, timeout=BATCH_TASK_TIMEOUT_S),
        func(expire_batch, name=EXPIRE_FUNCTION, max_tries=20, timeout=BATCH_TASK_TIMEOUT_S),
        func(notify_batch, name=NOTIFY_FUNCTION, max_tries=WEBHOOK_TRIES + 1, timeout=WEBHOOK_TIMEOUT_S),
        # the batch tier: a gather packs and creates; a poll runs again (arq Retry) until its harvest
        func(gather_pack, name=GATHER_FUNCTION, max_tries=50, timeout=BATCH_TASK_TIMEOUT_S),
        func(poll_pack, name=POLL_FUNCTION, max_tries=1_000_000, timeout=BATCH_TASK_TIMEOUT_S),
    ]


async def pack_with_hiredis(pool: ArqRedis) -> None:
    """arq made its pool with redis-py's Python command packer; its polls, starts and finishes are a third
    of a job's Redis traffic, so its connections pack in C too (nothing else uses the pool yet)."""
    connections = pool.connection_pool
    if connections.connection_class is redis.asyncio.Connection:
        await connections.disconnect()
        connections.connection_class = PackedConnection
        connections.reset()


def serve_metrics(port: int) -> None:
    """Prometheus metrics on http://0.0.0.0:`port`/metrics, from a thread of prometheus_client's."""
    try:
        start_http_server(port, registry=metrics.REGISTRY)
    except OSError as e:  # two workers on one host need a port each
        problem = f"MMQ_METRICS_PORT={port}: cannot serve metrics there ({e}); give each worker its own"
        raise SystemExit(problem) from None
    log.info("metrics on :%d/metrics", port)


def make_startup(settings: Settings):
    async def on_startup(ctx: dict[str, Any]) -> None:
        await pack_with_hiredis(ctx["redis"])
        if settings.metrics_port:
            serve_metrics(settings.metrics_port)
        # mmq's own connections, apart from arq's pool and named in CLIENT LIST: arq's polling never queues
        # behind a job's writes, and a benchmark can count mmq's own round trips (bench/_common.py)
        own = connect(settings.redis_url, client_name=MMQ_CLIENT_NAME) if settings.redis_url else ctx["redis"]
        storage = open_storage(settings.storage_url)
        try:
            await check_shared_store(own, storage, settings.key_prefix)
        except StoreMismatch as e:
            raise SystemExit(f"mmq worker: {e}") from None
        try:
            prices = book_from_env()
        except PriceBookError as e:  # a worker that cannot price jobs would hold no budget: it stops
            raise SystemExit(f"mmq worker: {e}") from None
        ctx["mmq"] = Runtime(
            settings=settings,
            prices=prices,
            records=Records(own, settings.key_prefix),
            storage=storage,
            client=make_client(
                timeout_s=settings.request_timeout_s, max_connections=settings.http_max_connections
            ),
            target=default_target(settings),
            keys=VirtualKeys(settings.secrets_file),
        )
        log.info(
            "mmq worker ready: queue=%s storage=%s target=%s",
            settings.queue_name,
            settings.storage_url,
            ctx["mmq"].target.base_url,
        )

    return on_startup


async def on_shutdown(ctx: dict[str, Any]) -> None:
    runtime: Runtime | None = ctx.get("mmq")
    if runtime is not None:
        await runtime.client.aclose()
        if runtime.records.redis is not ctx.get("redis"):
            await runtime.records.redis.aclose()


def worker_kwargs(settings: Settings) -> dict[str, Any]:
    return dict(
        functions=_job_functions(settings),
        on_startup=make_startup(settings),
        on_shutdown=on_shutdown,
        queue_name=settings.queue_name,
        max_jobs=settings.max_jobs,
        job_timeout=settings.job_timeout_s,
        poll_delay=settings.poll_delay_s,
        keep_result=settings.keep_result_s,
        health_check_interval=settings.health_check_interval_s,
        job_serializer=serialize,
        job_deserializer=deserialize,
        # max_jobs*5 ids per poll is arq's default; with fast jobs a bigger read keeps slots full
        queue_read_limit=max(settings.max_jobs * 5, 500),
        job_completion_wait=settings.shutdown_grace_s,  # a signal stops the polls, then waits this long
    )


def build_worker(
    settings: Settings | None = None,
    *,
    redis_pool: ArqRedis | None = None,
    burst: bool = False,
    handle_signals: bool = True,
) -> Worker:
    settings = settings or get_settings()
    redis_settings = RedisSettings.from_dsn(settings.redis_url) if settings.redis_url else None
    return OneTripWorker(
        **worker_kwargs(settings),
        redis_settings=redis_settings,
        redis_pool=redis_pool,
        burst=burst,
        handle_signals=handle_signals,
    )
