"""The OpenAI Files + Batches API on mmq, so the stock `openai` SDK works with `base_url=<mmq>/v1`.

    client = OpenAI(base_url="http://mmq:8000/v1", api_key="<mmq API key>")
    f = client.files.create(file=open("in.jsonl", "rb"), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")

A batch is an mmq batch (mmq/records.py) plus the OpenAI-only fields in `{p}:oai:batch:{id}`; the
batch ids are the same. Beyond OpenAI, `endpoint` may be any mmq kind (images, speech, transcription,
translation; audio goes in a line's body as a data: URL in `file`), and `config` / `media` (mmq
extensions, via the SDK's `extra_body`) set a routing config and image downscaling for every line.

Status mapping (mmq record → OpenAI):
    submission failed (file unreadable, API stopped)     → failed
    not sealed (lines still being read and queued)       → validating
    in_progress, sealed                                  → in_progress
    completed, output files not named yet                → finalizing (another request is naming them)
    completed                                            → completed
    cancelling, or cancelled but files not named yet     → cancelling
    cancelled                                            → cancelled
    expired (the completion window passed; lines that had not run carry batch_expired) → expired
The completion window is the mmq batch's deadline: an expire job at `expires_at` ends what has not run.

Output and error files get their ids when the batch ends: `file-out-<batch id>` (succeeded lines, set
only if there are any) and `file-err-<batch id>` (failed and cancelled lines, set only if there are
any). Their content is streamed from the job records and stored results (views.iter_output).
`request_counts.failed` counts failed and cancelled lines, so completed + failed == total at the end
and the error file has exactly `failed` lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from array import array
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.asyncio import Redis
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmq import queue
from mmq.contract import (
    KIND_BY_URL,
    BatchRecord,
    BatchStatus,
    CacheOptions,
    JobStatus,
    Kind,
    MediaPrep,
    kind_for_url,
)
from mmq.records import Records
from mmq.storage import BlobNotFound, Storage
from producer.auth import bearer_token, tenant_for
from producer.files import FileMeta, FileStore, FileTooLarge, page_ids
from producer.jsonl import aiter_jsonl_chunks
from producer.safe_names import content_disposition
from producer.submit import (
    BatchLine,
    LineError,
    Producer,
    allowed_hosts,
    validate_cache,
    validate_config,
    validate_media,
)
from producer.views import iter_output

log = logging.getLogger(__name__)

ENDPOINTS = tuple(KIND_BY_URL)  # mmq's kinds, a superset of what OpenAI batches
MAX_LINES = 100_000
MAX_ERRORS = 1000  # Batch.errors is returned on every poll; the error file has every failed line
_WINDOW = re.compile(r"^([1-9][0-9]{0,3})h$")
_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\[\]]*): ")
_OUTPUT_STATUSES = (JobStatus.succeeded,)
_ERROR_STATUSES = (JobStatus.failed, JobStatus.cancelled)


# --------------------------------------------------------------------------------------------- errors
class OpenAIError(Exception):
    """An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _not_found(what: str, ident: str, param: str | None = None) -> OpenAIError:
    return OpenAIError(404, f"No such {what} object: {ident}", param=param)


def _is_v1(request: Request) -> bool:
    return request.url.path == "/v1" or request.url.path.startswith("/v1/")


async def _on_openai_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIError)
    return exc.response()


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not _is_v1(request):
        return await request_validation_exception_handler(request, exc)
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'." if param else "A JSON request body is required."
        raise_code: str | None = "missing_required_parameter"
    elif first.get("type") == "json_invalid":
        message, raise_code = "We could not parse the JSON body of your request.", None
    else:
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        message, raise_code = (f"Invalid '{param}': {msg}" if param else msg), "invalid_value"
    return OpenAIError(400, message, param=param, code=raise_code).response()


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _is_v1(request):
        return await http_exception_handler(request, exc)
    kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    return OpenAIError(exc.status_code, str(exc.detail), type=kind, headers=exc.headers).response()


async def _on_crash(request: Request, exc: Exception) -> Response:
    if not _is_v1(request):
        return PlainTextResponse("Internal Server Error", status_code=500)  # Starlette's own answer
    message = "The server had an error while processing your request."
    return OpenAIError(500, message, type="server_error").response()


# -------------------------------------------------------------------------------------------- state
class OaiBatch(BaseModel):
    """The OpenAI-only fields of a batch, kept in Redis next to the mmq batch record."""

    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int
    output_expires_s: int | None = None
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    in_progress_at: int | None = None
    cancelling_at: int | None = None
    failed_at: int | None = None
    finalized_at: int | None = None  # output/error file ids are set
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: dict[str, Any] | None = None


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Ctx:
    redis: Redis
    records: Records
    storage: Storage
    producer: Producer
    files: FileStore
    prefix: str
    tasks: set[asyncio.Future[Any]]

    def batch_key(self, batch_id: str) -> str:
        return f"{self.prefix}:oai:batch:{batch_id}"

    def tenant_batches_key(self, tenant: str) -> str:
        return f"{self.prefix}:oai:tenant:{tenant}:batches"

    async def add_batch(self, batch: BatchRecord, oai: OaiBatch) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.batch_key(batch.id), mapping=_encode(oai.model_dump()))
        pipe.zadd(self.tenant_batches_key(batch.tenant), {batch.id: batch.created_at})
        await pipe.execute()

    async def update(self, batch_id: str, **fields: Any) -> None:
        await self.redis.hset(self.batch_key(batch_id), mapping=_encode(fields))

    async def get_oai(self, batch_id: str) -> OaiBatch | None:
        raw = await self.redis.hgetall(self.batch_key(batch_id))
        return OaiBatch.model_validate({_s(k): json.loads(v) for k, v in raw.items()}) if raw else None

    def spawn(self, work: Awaitable[Any]) -> None:
        """Background work that outlives the request (stopped, and accounted for, at shutdown)."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v, separators=(",", ":")) for k, v in fields.items()}


async def _ctx(request: Request) -> Ctx:
    state = request.app.state
    ctx: Ctx | None = getattr(state, "oai", None)
    if ctx is None or ctx.redis is not state.redis:  # built once per app, after the lifespan opened Redis
        producer: Producer = state.producer
        prefix = producer.settings.key_prefix
        ctx = Ctx(
            redis=state.redis,
            records=state.records,
            storage=state.storage,
            producer=producer,
            files=FileStore(state.redis, state.storage, prefix),
            prefix=prefix,
            tasks=state.oai_tasks,
        )
        state.oai = ctx
    return ctx


async def _tenant(request: Request) -> str:
    who = tenant_for(bearer_token(request.headers.get("authorization", "")), request.app.state.tenant_keys)
    if who is None:
        raise OpenAIError(
            401,
            "Incorrect API key provided. Send an mmq API key as 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        )
    return who


Tenant = Annotated[str, Depends(_tenant)]
Context = Annotated[Ctx, Depends(_ctx)]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.oai_tasks = set()
    yield
    # runs before the app's own lifespan closes Redis: unfinished submissions mark their batch failed
    tasks = list(app.state.oai_tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


router = APIRouter(prefix="/v1", lifespan=_lifespan)


def mount(app: FastAPI) -> None:
    """Adds /v1/files and /v1/batches, and OpenAI-shaped errors on /v1 paths (other paths unchanged)."""
    app.include_router(router)
    app.add_exception_handler(OpenAIError, _on_openai_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_crash)


# -------------------------------------------------------------------------------------------- files
def _expires_after(anchor: Any, seconds: Any) -> int | None:
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise OpenAIError(400, "expires_after[anchor] must be 'created_at'.", param="expires_after[anchor]")
    try:
        value = int(str(seconds))
    except ValueError:
        value = -1
    if not 3600 <= value <= 2592000:
        raise OpenAIError(
            400,
            "expires_after[seconds] must be an integer from 3600 to 2592000.",
            param="expires_after[seconds]",
        )
    return value


async def _read_upload(upload: UploadFile, size: int = 1 << 20) -> AsyncIterator[bytes]:
    while chunk := await upload.read(size):
        yield chunk


async def _file(ctx: Ctx, file_id: str, who: str) -> FileMeta:
    meta = await ctx.files.get(file_id, who)
    if meta is None:
        raise _not_found("File", file_id, param="file_id")
    return meta


def _content(ctx: Ctx, meta: FileMeta) -> AsyncIterator[bytes]:
    if meta.source == "upload":
        return ctx.files.stream(meta)
    statuses = _OUTPUT_STATUSES if meta.source == "batch_output" else _ERROR_STATUSES
    return iter_output(ctx.records, ctx.storage, meta.batch_id or "", statuses)


async def _sized(ctx: Ctx, meta: FileMeta) -> FileMeta:
    """A batch output file's size is counted on first request (a full read), then kept."""
    if meta.bytes is None:
        size = 0
        async for chunk in _content(ctx, meta):
            size += len(chunk)
        await ctx.files.set_bytes(meta, size)
    return meta


@router.post("/files")
async def create_file(request: Request, who: Tenant, ctx: Context) -> dict[str, Any]:
    """Multipart `purpose=batch`, `file`, optional `expires_after[anchor|seconds]`. Starlette spools the
    file part to disk past 1 MB; it is then copied to storage part by part, never whole in memory."""
    async with request.form(max_files=1, max_fields=10) as form:
        purpose = form.get("purpose")
        upload = form.get("file")
        if not isinstance(purpose, str) or not purpose:
            raise OpenAIError(
                400,
                "Missing required parameter: 'purpose'.",
                param="purpose",
                code="missing_required_parameter",
            )
        if purpose != "batch":
            raise OpenAIError(
                400,
                f"Invalid value for 'purpose': {purpose!r}. mmq accepts only 'batch'.",
                param="purpose",
                code="invalid_value",
            )
        if not isinstance(upload, UploadFile):
            raise OpenAIError(
                400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
            )
        expires = _expires_after(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
        try:
            meta = await ctx.files.create(
                tenant=who,
                filename=upload.filename or "upload.jsonl",
                purpose=purpose,
                chunks=_read_upload(upload),
                expires_after_s=expires,
            )
        except FileTooLarge as e:
            raise OpenAIError(400, str(e), param="file", code="file_too_large") from None
    return meta.file_object()


@router.get("/files")
async def list_files(
    who: Tenant,
    ctx: Context,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Literal["asc", "desc"] = "desc",
    purpose: str | None = None,
) -> dict[str, Any]:
    metas: list[FileMeta] = []
    cursor, more = after, True
    while more and len(metas) <= limit:  # a purpose filter may drop ids: read on until the page is full
        ids, more = await ctx.files.page(
            who, after=cursor, limit=min(limit + 1 - len(metas), 1000), newest_first=order == "desc"
        )
        if not ids:
            break
        cursor = ids[-1]
        for file_id in ids:
            meta = await ctx.files.get(file_id, who)
            if meta is not None and (purpose is None or meta.purpose == purpose):
                metas.append(meta)
    has_more = len(metas) > limit or more
    data = [(await _sized(ctx, m)).file_object() for m in metas[:limit]]
    return _page(data, has_more)


@router.get("/files/{file_id}")
async def retrieve_file(file_id: str, who: Tenant, ctx: Context) -> dict[str, Any]:
    return (await _sized(ctx, await _file(ctx, file_id, who))).file_object()


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, who: Tenant, ctx: Context) -> StreamingResponse:
    meta = await _file(ctx, file_id, who)
    chunks = _content(ctx, meta)
    try:  # read the first chunk here: a file gone from storage is a 404, not a broken stream
        first = await anext(chunks, b"")
    except BlobNotFound:
        raise _not_found("File", file_id, param="file_id") from None
    return StreamingResponse(
        _prepend(first, chunks),
        media_type="application/octet-stream",
        headers={"content-disposition": content_disposition(meta.filename)},  # any name, even 文件.jsonl
    )


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, who: Tenant, ctx: Context) -> dict[str, Any]:
    await ctx.files.delete(await _file(ctx, file_id, who))
    return {"id": file_id, "object": "file", "deleted": True}


# ------------------------------------------------------------------------------------------ batches
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
    custom_ids: set[str] = field(default_factory=set)
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
    if line.custom_id in st.custom_ids:
        line.error = f"duplicate custom_id {line.custom_id!r}"
        return "duplicate_custom_id", "custom_id"
    st.custom_ids.add(line.custom_id)
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
        if pos % 256 == 255 and _s(await redis.hget(batch_key, "status") or b"") == "cancelling":
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
        raise _not_found("File", body.input_file_id, param="input_file_id")
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
    try:
        config = validate_config(body.config, allowed_hosts(ctx.producer.settings))
        media = validate_media(body.media)
        cache = validate_cache(body.cache)
    except LineError as e:
        head = str(e).split(":", 1)[0]  # "routing config: …", "media options: …", "cache options: …"
        param = "media" if "media" in head else "cache" if "cache" in head else "config"
        raise OpenAIError(400, str(e), param=param) from None
    hours = int(_WINDOW.match(body.completion_window).group(1))  # type: ignore[union-attr]
    batch = await ctx.producer.create_batch(
        tenant=who, metadata=body.metadata or {}, deadline=time.time() + hours * 3600
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
    ctx.spawn(_submit(ctx, batch, st, meta, (config, media, cache)))
    view = await _batch_object(ctx, batch.id, who)
    assert view is not None
    return view


@router.get("/batches")
async def list_batches(
    who: Tenant,
    ctx: Context,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """Newest first; `after` is the id of the last batch of the previous page (the SDK's auto-pager)."""
    ids, more = await page_ids(ctx.redis, ctx.tenant_batches_key(who), after, limit)
    data = [b for b in [await _batch_object(ctx, i, who) for i in ids] if b is not None]
    return _page(data, more)


@router.get("/batches/{batch_id}")
async def retrieve_batch(batch_id: str, who: Tenant, ctx: Context) -> dict[str, Any]:
    view = await _batch_object(ctx, batch_id, who)
    if view is None:
        raise _not_found("Batch", batch_id, param="batch_id")
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


# ------------------------------------------------------------------------------------- batch object
def _status(rec: BatchRecord, oai: OaiBatch) -> str:
    if oai.failed_at is not None:
        return "failed"
    if rec.status is BatchStatus.cancelling:
        return "cancelling"
    if rec.status is BatchStatus.cancelled:
        return "cancelled" if oai.finalized_at is not None else "cancelling"
    if not rec.sealed:
        return "validating"
    if rec.status is BatchStatus.completed:
        return "completed" if oai.finalized_at is not None else "finalizing"
    if rec.status is BatchStatus.expired:
        return "expired" if oai.finalized_at is not None else "finalizing"
    return "in_progress"


async def _batch_object(ctx: Ctx, batch_id: str, who: str) -> dict[str, Any] | None:
    rec = await ctx.records.get_batch(batch_id)
    oai = await ctx.get_oai(batch_id) if rec is not None and rec.tenant == who else None
    if rec is None or oai is None:
        return None
    ended = rec.status in (BatchStatus.completed, BatchStatus.cancelled, BatchStatus.expired)
    if ended and oai.finalized_at is None and oai.failed_at is None:
        oai = await _finalize(ctx, rec, oai)
    return _view(rec, oai)


async def _finalize(ctx: Ctx, rec: BatchRecord, oai: OaiBatch) -> OaiBatch:
    """Names the output and error files of an ended batch and sums its usage, once. A concurrent
    request that finds the work under way reports `finalizing` (or `cancelling`) meanwhile."""
    lock = f"{ctx.batch_key(rec.id)}:finalizing"
    if not await ctx.redis.set(lock, "1", nx=True, ex=120):
        return oai
    try:
        ended = int(rec.finished_at or time.time())
        expires = ended + oai.output_expires_s if oai.output_expires_s else None
        fields: dict[str, Any] = {"usage": await _usage(ctx, rec.id)}
        for source, count, fid, suffix in (
            ("batch_output", rec.counts.succeeded, f"file-out-{rec.id}", "output"),
            ("batch_error", rec.counts.failed + rec.counts.cancelled, f"file-err-{rec.id}", "error"),
        ):
            if count:
                await ctx.files.save(
                    FileMeta(
                        id=fid,
                        tenant=rec.tenant,
                        filename=f"{rec.id}_{suffix}.jsonl",
                        purpose="batch_output",
                        created_at=ended,
                        expires_at=expires,
                        source=source,  # type: ignore[arg-type]
                        batch_id=rec.id,
                    )
                )
                fields["output_file_id" if suffix == "output" else "error_file_id"] = fid
        fields["finalized_at"] = int(time.time())  # last: readers see the ids and the end together
        await ctx.update(rec.id, **fields)
        return oai.model_copy(update=fields)
    finally:
        await ctx.redis.delete(lock)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


async def _usage(ctx: Ctx, batch_id: str) -> dict[str, Any]:
    """Tokens of the batch's provider calls (cache hits cost nothing and are left out). Reads the raw
    record JSON: a pass over every job, done once when the batch ends."""
    t = {"input": 0, "cached": 0, "output": 0, "reasoning": 0, "total": 0}
    async for ids in ctx.records.iter_batch_job_ids(batch_id, chunk=1000):
        pipe = ctx.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(ctx.records.job_key(job_id), "data")
        for raw in await pipe.execute():
            job = json.loads(raw) if raw else {}
            usage = job.get("usage")
            if job.get("status") != "succeeded" or job.get("cached") or not isinstance(usage, dict):
                continue
            inp = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
            out = _int(usage.get("completion_tokens", usage.get("output_tokens")))
            in_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
            out_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
            t["input"] += inp
            t["output"] += out
            if isinstance(in_details, dict):
                t["cached"] += _int(in_details.get("cached_tokens"))
            if isinstance(out_details, dict):
                t["reasoning"] += _int(out_details.get("reasoning_tokens"))
            t["total"] += _int(usage.get("total_tokens")) or inp + out
    return {
        "input_tokens": t["input"],
        "input_tokens_details": {"cached_tokens": t["cached"]},
        "output_tokens": t["output"],
        "output_tokens_details": {"reasoning_tokens": t["reasoning"]},
        "total_tokens": t["total"],
    }


def _view(rec: BatchRecord, oai: OaiBatch) -> dict[str, Any]:
    """The Batch object with every field of OpenAI's spec (null when absent)."""
    status = _status(rec, oai)
    ended = int(rec.finished_at) if rec.finished_at else None
    c = rec.counts
    return {
        "id": rec.id,
        "object": "batch",
        "endpoint": oai.endpoint,
        "model": oai.model,
        "errors": {"object": "list", "data": oai.errors} if oai.errors else None,
        "input_file_id": oai.input_file_id,
        "completion_window": oai.completion_window,
        "status": status,
        "output_file_id": oai.output_file_id,
        "error_file_id": oai.error_file_id,
        "created_at": oai.created_at,
        "in_progress_at": oai.in_progress_at,
        "expires_at": oai.expires_at,
        "finalizing_at": ended if status in ("finalizing", "completed") else None,
        "completed_at": oai.finalized_at if status == "completed" else None,
        "failed_at": oai.failed_at,
        "expired_at": oai.finalized_at if status == "expired" else None,
        "cancelling_at": oai.cancelling_at,
        "cancelled_at": ended if status == "cancelled" else None,
        "request_counts": {"total": c.total, "completed": c.succeeded, "failed": c.failed + c.cancelled},
        "metadata": rec.metadata or None,
        "usage": oai.usage,
    }


def _page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
