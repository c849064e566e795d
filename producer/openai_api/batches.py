"""The /v1/batches routes (create, list, retrieve, cancel) and the submission task behind create.

Creating a batch checks the request and the input file's metadata, creates the mmq batch (it is
`validating` meanwhile) and returns at once; a background task then streams the input file from storage
and queues its lines. Lines OpenAI would refuse (another endpoint, a missing or repeated custom_id, bad
JSON) fail alone and are listed in `errors` with OpenAI's codes. Beyond OpenAI, `endpoint` may be any
mmq kind, and `config` / `media` / `cache` (mmq extensions, via the SDK's `extra_body`) apply to every
line. The completion window is the mmq batch's deadline: an expire job at `expires_at` ends what has not
run. `dry_run: true` (mmq, via `extra_body`) answers the input file's quote instead and creates nothing
(batch_quote.py documents its shape).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from array import array
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.asyncio import Redis

from mmq import queue
from mmq.contract import BatchRecord, BatchStatus, CacheOptions, JobStatus, MediaPrep
from mmq.records import Records
from mmq.request_models import KIND_BY_URL, Kind, kind_for_url
from producer.batch_lines import BatchLine, duplicate_custom_id
from producer.jsonl import aiter_jsonl_chunks
from producer.openai_api.batch_object import batch_object
from producer.openai_api.context import Context, Ctx, OaiBatch, Tenant, as_str, page
from producer.openai_api.errors import OpenAIError, not_found
from producer.openai_api.file_store import FileMeta, page_ids
from producer.options import LineError, check_options, parse_options

log = logging.getLogger(__name__)

ENDPOINTS = tuple(KIND_BY_URL)  # mmq's kinds, a superset of what OpenAI batches
MAX_LINES = 100_000
MAX_ERRORS = 1000  # Batch.errors is returned on every poll; the error file has every failed line
_WINDOW = re.compile(r"^([1-9][0-9]{0,3})h$")
_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\[\]]*): ")

router = APIRouter()


class ExpiresAfter(BaseModel):
    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2592000)


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields OpenAI adds later must not break old servers

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: ExpiresAfter | None = None
    config: dict[str, Any] | str | None = Field(default=None, description="mmq: routing config (Portkey)")
    media: dict[str, Any] | None = Field(default=None, description='mmq: {"max_side", "max_bytes"}')
    cache: dict[str, Any] | bool | None = Field(default=None, description='mmq: false or {"level", ...}')
    dry_run: bool = Field(default=False, description="mmq: answer the file's quote; create nothing")
    max_cost: str | float | None = Field(default=None, description="mmq: the batch's budget in USD")
    on_budget: str | None = Field(default=None, description="mmq: wait (default) | fail")
    tier: str | None = Field(default=None, description="mmq: realtime | batch | auto (default: auto)")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v not in KIND_BY_URL:
            raise ValueError(f"must be one of {', '.join(ENDPOINTS)}")
        return v

    @field_validator("completion_window")
    @classmethod
    def _window(cls, v: str) -> str:
        if not _WINDOW.match(v):
            raise ValueError("must be a number of hours such as '24h'")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and (len(v) > 16 or any(len(k) > 64 or len(x) > 512 for k, x in v.items())):
            raise ValueError("at most 16 pairs, keys up to 64 characters, values up to 512")
        return v


@dataclass
class _Lines:
    """What the submission learns about the lines as they stream past (positions = job list order)."""

    kind: Kind
    endpoint: str
    line_nos: array[int] = field(default_factory=lambda: array("l"))
    codes: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # position → (code, param)
    custom_ids: dict[str, int] = field(default_factory=dict)  # custom_id → the line that used it first
    model: str | None = None
    cancelled: bool = False


def _check_line(line: BatchLine, st: _Lines) -> tuple[str, str | None] | None:
    """Flags what OpenAI refuses and mmq's producer would accept; returns (code, param) of a bad line."""
    if line.error:
        if line.error.startswith(("not valid JSON", "line is not a JSON object")):
            return "invalid_json_line", None
        param = next((p for p in ("url", "method", "body") if p in line.error), None)
        return "invalid_request", param
    try:
        same = kind_for_url(line.url or "") is st.kind
    except ValueError:
        same = False
    if not same:
        line.error = f"url {line.url!r} does not match the batch's endpoint {st.endpoint}"
        return "invalid_url", "url"
    if line.custom_id is None:
        line.error = "missing custom_id (each line needs one, unique in the file)"
        return "invalid_request", "custom_id"
    first = st.custom_ids.setdefault(line.custom_id, line.line_no or 0)
    if first != (line.line_no or 0):  # the producer's rule (CustomIds), with OpenAI's code
        line.error = duplicate_custom_id(line.custom_id, first)
        return "duplicate_custom_id", "custom_id"
    if st.model is None and isinstance(model := (line.body or {}).get("model"), str):
        st.model = model
    return None


async def _checked(
    lines: AsyncIterable[BatchLine], st: _Lines, redis: Redis, batch_key: str
) -> AsyncIterator[BatchLine]:
    async for line in lines:
        pos = len(st.line_nos)
        if pos >= MAX_LINES:
            break
        # a cancel during a long submission stops reading the file (checked now and then, not per line)
        if pos % 256 == 255 and as_str(await redis.hget(batch_key, "status") or b"") == "cancelling":
            st.cancelled = True
            break
        st.line_nos.append(line.line_no or 0)
        if (flag := _check_line(line, st)) is not None:
            st.codes[pos] = flag
        yield line


async def _line_errors(records: Records, batch_id: str, st: _Lines, invalid: int) -> list[dict[str, Any]]:
    """BatchError entries for the lines refused at submit. They are the batch's failed jobs that never
    reached a worker (no `started_at`); the producer's own checks (body, media) are found the same way."""
    errors: list[dict[str, Any]] = []
    pos = 0
    async for ids in records.iter_batch_job_ids(batch_id, chunk=1000):
        for job in await records.get_jobs(ids):
            if job and job.status is JobStatus.failed and job.started_at is None and job.error:
                line = st.line_nos[pos] if pos < len(st.line_nos) else None
                message = job.error.message.removeprefix(f"line {line}: ")
                # the producer names the field first ("messages[0].content[1]: ..."): that is the param
                field_name = _FIELD.match(message)
                guess = f"body.{field_name.group(1)}" if field_name else None
                code, param = st.codes.get(pos, ("invalid_request", guess))
                errors.append({"code": code, "message": message, "param": param, "line": line})
                if len(errors) >= min(invalid, MAX_ERRORS):
                    return errors
            pos += 1
    return errors


async def _submit(
    ctx: Ctx,
    batch: BatchRecord,
    st: _Lines,
    meta: FileMeta,
    options: tuple[dict[str, Any] | None, MediaPrep | None, CacheOptions | None],
) -> None:
    """Reads the input file from storage and queues its lines (the batch is `validating` meanwhile)."""
    batch_key = ctx.records.batch_key(batch.id)
    try:
        chunks = aiter_jsonl_chunks(ctx.files.stream(meta), ctx.producer.settings.max_line_bytes)
        lines = _checked(chunks, st, ctx.redis, batch_key)
        _, invalid = await ctx.producer.add_lines(batch, lines, *options)
        errors = await _line_errors(ctx.records, batch.id, st, invalid) if invalid else []
        await ctx.update(batch.id, in_progress_at=int(time.time()), model=st.model, errors=errors or None)
        if not await ctx.records.seal_batch(batch.id, invalid) and batch.deadline:
            await queue.schedule(
                ctx.redis, ctx.producer.settings.queue_name, queue.EXPIRE_FUNCTION, batch.id, batch.deadline
            )
        if st.cancelled:  # lines queued after the cancel's own sweep
            await ctx.records.cancel_queued(batch.id)
    except (Exception, asyncio.CancelledError) as e:
        stopped = isinstance(e, asyncio.CancelledError)
        if not stopped:
            log.exception("batch %s: submission failed", batch.id)
        reason = "the API stopped while reading the input file" if stopped else f"{type(e).__name__}: {e}"
        error = {"code": "submission_failed", "message": reason, "param": None, "line": None}
        # a failed batch runs nothing more: what was queued is cancelled
        await ctx.update(batch.id, failed_at=int(time.time()), errors=[error])
        await ctx.records.start_cancel(batch.id)
        await ctx.records.seal_batch(batch.id)
        await ctx.records.cancel_queued(batch.id)
        if stopped:
            raise


@router.post("/batches")
async def create_batch(body: CreateBatch, who: Tenant, ctx: Context) -> dict[str, Any]:
    meta = await ctx.files.get(body.input_file_id, who)
    if meta is None:
        raise not_found("File", body.input_file_id, param="input_file_id")
    if meta.source != "upload" or meta.purpose != "batch":
        raise OpenAIError(400, "The input file must be uploaded with purpose 'batch'.", param="input_file_id")
    if meta.lines == 0:
        raise OpenAIError(400, "The input file has no requests.", param="input_file_id", code="empty_file")
    if meta.lines > MAX_LINES:
        raise OpenAIError(
            400,
            f"The input file has {meta.lines} requests; a batch takes at most {MAX_LINES}.",
            param="input_file_id",
            code="too_many_requests",
        )
    hours = int(_WINDOW.match(body.completion_window).group(1))  # type: ignore[union-attr]
    try:  # mmq's options from extra_body, parsed and checked as every entry point's are
        fields = {"config": body.config, "media": body.media, "cache": body.cache, "metadata": body.metadata}
        budget = {"max_cost": body.max_cost, "on_budget": body.on_budget, "tier": body.tier}
        fields |= {name: value for name, value in budget.items() if value is not None}
        options = check_options(parse_options(fields), ctx.producer.settings)
    except LineError as e:
        head = str(e).split(":", 1)[0]  # "routing config: …", "media options: …", "cache options: …"
        param = next((p for p in ("media", "cache", "max_cost", "on_budget", "tier") if p in head), "config")
        raise OpenAIError(400, str(e), param=param) from None
    if body.dry_run:  # the quote only: nothing is written, queued or sent
        from producer.openai_api.batch_quote import quote_file

        return await quote_file(ctx, meta, body.endpoint, body.completion_window, options)
    deadline = time.time() + hours * 3600
    windowed = options.model_copy(update={"deadline": deadline})  # a /v1 batch's window is its deadline
    batch = await ctx.producer.create_batch(
        tenant=who,
        metadata=options.metadata,
        deadline=deadline,
        tier=windowed.resolved_tier(time.time(), ctx.producer.settings.batch_tier_min_window_s),
        max_cost_micro_usd=options.max_cost_micro_usd,
        on_budget=options.on_budget,
        fail_if_interrupted=True,  # an API killed while reading the file: the batch ends `failed`
    )
    now = int(batch.created_at)
    oai = OaiBatch(
        endpoint=body.endpoint,
        input_file_id=meta.id,
        completion_window=body.completion_window,
        created_at=now,
        expires_at=now + hours * 3600,
        output_expires_s=body.output_expires_after.seconds if body.output_expires_after else None,
    )
    await ctx.add_batch(batch, oai)
    st = _Lines(kind=KIND_BY_URL[body.endpoint], endpoint=body.endpoint)
    ctx.spawn(_submit(ctx, batch, st, meta, (options.config, options.media, options.cache)))
    view = await batch_object(ctx, batch.id, who)
    assert view is not None
    return view


@router.get("/batches")
async def list_batches(
    who: Tenant,
    ctx: Context,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """Newest first; `after` is the id of the last batch of the previous page (the SDK's auto-pager).
    Every batch of the tenant, whatever made it (the CLI, /api, a workflow…): one list, as /api's."""
    ids, more = await page_ids(ctx.redis, ctx.records.tenant_batches_key(who), after, limit)
    data = [b for b in [await batch_object(ctx, i, who) for i in ids] if b is not None]
    return page(data, more)


@router.get("/batches/{batch_id}")
async def retrieve_batch(batch_id: str, who: Tenant, ctx: Context) -> dict[str, Any]:
    view = await batch_object(ctx, batch_id, who)
    if view is None:
        raise not_found("Batch", batch_id, param="batch_id")
    return view


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, who: Tenant, ctx: Context) -> dict[str, Any]:
    """Queued lines are cancelled (in the background), running ones finish; `cancelling` → `cancelled`
    when nothing runs. Cancelling a cancelling or cancelled batch returns it; a finished one is a 409."""
    view = await retrieve_batch(batch_id, who, ctx)
    if view["status"] in ("cancelling", "cancelled"):
        return view
    running = view["status"] in ("validating", "in_progress")
    outcome = await ctx.records.start_cancel(batch_id) if running else ""
    if outcome != BatchStatus.cancelling.value:
        view = await retrieve_batch(batch_id, who, ctx)
        raise OpenAIError(
            409,
            f"Cannot cancel a batch with status '{view['status']}'.",
            headers={"x-should-retry": "false"},  # the SDK retries 409s by default; this one cannot change
        )
    await ctx.update(batch_id, cancelling_at=int(time.time()))
    ctx.spawn(ctx.records.cancel_queued(batch_id))
    return await retrieve_batch(batch_id, who, ctx)
