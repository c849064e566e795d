"""The HTTP API: submit jobs and batches, poll status, download results.

Every route but /health, /ready and /metrics needs `Authorization: Bearer <key>`; the key's tenant sees
only its own jobs, batches and files (anything else is a 404, so ids of other tenants cannot even be
probed). /metrics holds no tenant's data: the queue's depth and age.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis

from mmq import metrics
from mmq.batch_options import BatchOptions
from mmq.budgets import Budgets
from mmq.connections import connect
from mmq.contract import BatchRecord, JobRecord
from mmq.packs import Packs
from mmq.records import Records
from mmq.settings import Settings, get_settings
from mmq.shared_store import check_shared_store
from mmq.storage import BlobNotFound, Storage, open_storage
from producer.auth import KeyTable, Tenant
from producer.console import mount as mount_console
from producer.guard import RequestGuard
from producer.jsonl import aiter_jsonl_chunks
from producer.openai_api import mount as mount_openai_api
from producer.options import LineError, format_validation_error, parse_options
from producer.quoting import QuoteUnavailable, quote_request
from producer.submit import BatchLine, Producer
from producer.templates.routes import router as templates_router
from producer.views import batch_view, iter_output, job_view, provider_batches_view, result_body


class JobSubmission(BaseModel):
    url: str = Field(description="the OpenAI path of the kind, e.g. /v1/chat/completions")
    body: dict[str, Any]
    custom_id: str | None = None
    config: dict[str, Any] | None = Field(default=None, description="routing config (Portkey schema)")
    metadata: dict[str, Any] = Field(default_factory=dict)
    media: dict[str, Any] | None = Field(default=None, description='downscaling: {"max_side", "max_bytes"}')
    cache: dict[str, Any] | bool | None = Field(
        default=None, description='false, or {"level": "exact"|"pixels"|"perceptual", "ttl_s", "refresh"}'
    )


class BatchChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_cost: Decimal | None = Field(gt=0, le=10**9, description="the batch's budget in USD; null: none")


class BatchSubmission(BaseModel):
    """A JSON batch: its lines, and beside them the batch's options (mmq.batch_options.BatchOptions),
    parsed by the same `parse_options` as every other entry point's, with the same messages."""

    model_config = ConfigDict(extra="allow")
    requests: list[dict[str, Any]] = Field(description="lines in the OpenAI Batch input shape")


def create_app(
    settings: Settings | None = None, *, redis: Redis | None = None, storage: Storage | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_redis = redis is None
        r = redis if redis is not None else connect(settings.redis_url or "redis://127.0.0.1:6379/0")
        s = storage or open_storage(settings.storage_url)
        if settings.redis_url:  # the embedded mode's one process has only its own store
            await check_shared_store(r, s, settings.key_prefix)  # StoreMismatch: the API does not start
        app.state.redis, app.state.storage = r, s
        app.state.keys.bind(r, settings.key_prefix)  # keys made by `mmq keys create` count from now on
        app.state.records = Records(r, settings.key_prefix)
        app.state.producer = Producer(r, s, settings)
        yield
        if own_redis:
            await r.aclose()

    app = FastAPI(title="mmq", version="0.1.0", lifespan=lifespan)
    # one key table for /api, /v1 and the console: MMQ_API_KEYS, MMQ_API_KEYS_FILE and Redis (producer.auth)
    app.state.keys = KeyTable(settings)
    app.state.tenant_keys = app.state.keys.configured  # MMQ_API_KEYS ({sha256: tenant}), mutable
    # outermost: no body is read before its key is known, and none past its limit (producer.guard)
    app.add_middleware(RequestGuard, settings=settings, tenant_of=lambda key: app.state.keys.tenant_of(key))

    async def own_job(request: Request, job_id: str, who: str) -> JobRecord:
        job = await request.app.state.records.get_job(job_id)
        if job is None or job.tenant != who:
            raise HTTPException(404, f"no job {job_id}")
        return job

    async def own_batch(request: Request, batch_id: str, who: str) -> BatchRecord:
        batch = await request.app.state.records.get_batch(batch_id)
        if batch is None or batch.tenant != who:
            raise HTTPException(404, f"no batch {batch_id}")
        return batch

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        await request.app.state.redis.ping()
        return {"ok": True}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        """200 when Redis and the store answer, else 503 naming what does not (a load balancer's check)."""
        checks: dict[str, str] = {}
        try:
            await request.app.state.redis.ping()
            checks["redis"] = "ok"
        except Exception as e:
            checks["redis"] = f"{type(e).__name__}: {e}"
        try:
            await request.app.state.storage.exists("mmq-ready-check")
            checks["storage"] = "ok"
        except Exception as e:
            checks["storage"] = f"{type(e).__name__}: {e}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        """Prometheus text format: the queue's depth and age (workers serve their own on MMQ_METRICS_PORT)."""
        await metrics.read_queue(request.app.state.redis, settings.queue_name)
        return Response(generate_latest(metrics.API_REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/jobs", status_code=201)
    async def submit_job(body: JobSubmission, request: Request, who: Tenant) -> dict[str, Any]:
        try:
            job = await request.app.state.producer.submit_job(
                body.url,
                body.body,
                tenant=who,
                custom_id=body.custom_id,
                config=body.config,
                metadata=body.metadata,
                media=body.media,
                cache=body.cache,
            )
        except LineError as e:
            raise HTTPException(422, str(e)) from None
        return job_view(job)

    @app.post("/api/batches", status_code=201)
    async def submit_batch(request: Request, who: Tenant, dry_run: bool = False) -> dict[str, Any]:
        """JSON `{"requests": [...], "metadata": {...}}`, or a JSONL body (streamed, any size).
        `?dry_run=true`: 200 with the batch's quote (producer.quoting); nothing is written or queued."""
        producer: Producer = request.app.state.producer
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        lines: Iterable[BatchLine] | AsyncIterable[BatchLine]
        try:
            if content_type == "application/json":
                try:
                    sub = BatchSubmission.model_validate_json(await request.body())
                except ValidationError as e:
                    raise HTTPException(422, format_validation_error(e)) from None
                lines = (BatchLine.from_obj(obj, n) for n, obj in enumerate(sub.requests, start=1))
                options = parse_options(sub.model_extra)
            else:
                # a JSONL body: the options are query parameters (JSON text for config, media and cache),
                # every other parameter (but dry_run) is metadata
                lines = aiter_jsonl_chunks(request.stream(), producer.settings.max_line_bytes)
                options = parse_options(BatchOptions.from_query(request.query_params, reserved=("dry_run",)))
            if dry_run:
                return JSONResponse(await quote_request(lines, options, producer.settings))
            batch = await producer.submit_batch(lines, tenant=who, options=options)
        except LineError as e:  # a bad routing config refuses the whole batch, before any job exists
            raise HTTPException(422, str(e)) from None
        except QuoteUnavailable as e:  # the operator's price file does not load
            raise HTTPException(500, str(e)) from None
        return batch_view(batch)

    @app.get("/api/batches")
    async def list_batches(request: Request, who: Tenant, limit: int = 20) -> dict[str, Any]:
        records: Records = request.app.state.records
        ids = await records.list_batches(who, limit=max(1, min(limit, 100)))
        batches = [b for b in [await records.get_batch(i) for i in ids] if b is not None]
        return {"object": "list", "data": [batch_view(b) for b in batches]}

    @app.get("/api/batches/{batch_id}")
    async def get_batch(batch_id: str, request: Request, who: Tenant) -> dict[str, Any]:
        view = batch_view(await own_batch(request, batch_id, who))
        packs = await Packs(request.app.state.redis, settings.key_prefix).batch_packs(batch_id)
        return {**view, "provider_batches": provider_batches_view(packs)}

    @app.post("/api/batches/{batch_id}/cancel")
    async def cancel_batch(batch_id: str, request: Request, who: Tenant) -> dict[str, Any]:
        """Queued jobs are cancelled, running ones finish; what finished stays downloadable."""
        await own_batch(request, batch_id, who)
        await request.app.state.producer.cancel_batch(batch_id)
        return batch_view(await own_batch(request, batch_id, who))

    @app.patch("/api/batches/{batch_id}")
    async def change_batch(batch_id: str, body: BatchChange, request: Request, who: Tenant) -> dict[str, Any]:
        """Raise, lower or remove (null) the batch's budget; its jobs waiting for it check it again."""
        await own_batch(request, batch_id, who)
        budgets = Budgets(request.app.state.redis, settings.key_prefix)
        await budgets.set_batch(batch_id, body.max_cost)
        return batch_view(await own_batch(request, batch_id, who))

    @app.get("/api/spend")
    async def spend(request: Request, who: Tenant) -> dict[str, Any]:
        """The tenant's spending and budgets this UTC day and month (the operator sets the budgets)."""
        periods = await Budgets(request.app.state.redis, settings.key_prefix).tenant(who)
        return {"object": "mmq.spend", "tenant": who, **{p: s.to_dict() for p, s in periods.items()}}

    @app.post("/api/batches/{batch_id}/retry-failed")
    async def retry_failed(batch_id: str, request: Request, who: Tenant) -> dict[str, Any]:
        """Runs the batch's failed jobs again (invalid requests excepted)."""
        await own_batch(request, batch_id, who)
        requeued = await request.app.state.producer.retry_failed(batch_id)
        return {**batch_view(await own_batch(request, batch_id, who)), "requeued": requeued}

    @app.get("/api/batches/{batch_id}/jobs")
    async def batch_jobs(
        batch_id: str, request: Request, who: Tenant, offset: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        await own_batch(request, batch_id, who)
        records: Records = request.app.state.records
        limit = max(1, min(limit, 1000))
        ids = await records.redis.lrange(records.batch_jobs_key(batch_id), offset, offset + limit - 1)
        jobs = await records.get_jobs([i.decode() if isinstance(i, bytes) else i for i in ids])
        return {"object": "list", "data": [job_view(j) for j in jobs if j is not None], "offset": offset}

    @app.get("/api/batches/{batch_id}/output.jsonl")
    async def batch_output(batch_id: str, request: Request, who: Tenant) -> StreamingResponse:
        await own_batch(request, batch_id, who)
        return StreamingResponse(
            iter_output(request.app.state.records, request.app.state.storage, batch_id),
            media_type="application/jsonl",
            headers={"content-disposition": f'attachment; filename="{batch_id}-output.jsonl"'},
        )

    @app.get("/api/jobs/{job_id}")
    async def get_job(job_id: str, request: Request, who: Tenant) -> dict[str, Any]:
        return job_view(await own_job(request, job_id, who))

    @app.get("/api/jobs/{job_id}/result")
    async def get_result(job_id: str, request: Request, who: Tenant) -> JSONResponse:
        job = await own_job(request, job_id, who)
        if not job.result:
            raise HTTPException(404, f"job {job_id} has no result (status {job.status.value})")
        return JSONResponse(await result_body(job, request.app.state.storage))

    @app.get("/api/jobs/{job_id}/files/{n}")
    async def get_file(job_id: str, n: int, request: Request, who: Tenant) -> Response:
        job = await own_job(request, job_id, who)
        if not job.result or not 0 <= n < len(job.result.files):
            raise HTTPException(404, f"job {job_id} has no file {n}")
        f = job.result.files[n]
        try:
            data = await request.app.state.storage.get(f.key)
        except BlobNotFound:
            raise HTTPException(404, "file is gone from storage") from None
        return Response(data, media_type=f.content_type)

    mount_openai_api(app)  # /v1/files and /v1/batches for the stock openai SDK
    app.include_router(templates_router)  # /api/templates: prompt templates (producer/templates/routes.py)
    mount_console(app)  # /console: the web console, through a door of its own (producer/console)
    return app
