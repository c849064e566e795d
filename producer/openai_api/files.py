"""The /v1/files routes: upload (multipart, streamed to storage), list, retrieve, content, delete.

Uploads live in the file store (file_store.py). Batch output and error files are not copies: their
content is streamed from the job records and stored results (views.iter_output), and their size is
counted on the first request that needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from mmq.contract import JobStatus
from mmq.storage import BlobNotFound
from producer.openai_api.context import Context, Ctx, Tenant, page
from producer.openai_api.errors import OpenAIError, not_found
from producer.openai_api.file_store import FileMeta, FileTooLarge
from producer.safe_names import content_disposition
from producer.views import iter_output

_OUTPUT_STATUSES = (JobStatus.succeeded,)
_ERROR_STATUSES = (JobStatus.failed, JobStatus.cancelled)

router = APIRouter()


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
        raise not_found("File", file_id, param="file_id")
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
    return page(data, has_more)


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
        raise not_found("File", file_id, param="file_id") from None
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
