"""The OpenAI Files API as the batch tier uses it: upload a batch input, read it back, fetch results, delete.

Why: the OpenAI, Azure and Groq batch APIs take their input as an uploaded file and return output and
error files; the official SDK's files.create / retrieve / content / delete / list calls must work
against the simulator (reference queue_and_batch.md §C.4, §C.6: multipart parts purpose,
expires_after[anchor], expires_after[seconds], file). Only purpose=batch is stored.
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.batches.engine import BatchEngine, new_id
from mmq.simulator.batches.oai_surfaces import Surface
from mmq.simulator.batches.oai_wire import file_object
from mmq.simulator.batches.paging import limit_param, page
from mmq.simulator.batches.shelf import StoredFile
from mmq.simulator.errors import ApiError, bad_request, json_response
from mmq.simulator.guard import Handler
from mmq.simulator.parsing import missing


def _engine(request: Request) -> BatchEngine:
    return request.app.state.sim.batches


def _expiry(anchor: object, seconds: object, surface: Surface) -> float | None:
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise bad_request(
            "Invalid 'expires_after[anchor]': the only supported value is 'created_at'.",
            "expires_after[anchor]",
            "invalid_value",
        )
    lo, hi = surface.file_expiry_s
    try:
        value = int(str(seconds))
    except ValueError:
        value = -1
    if not lo <= value <= hi:
        raise bad_request(
            f"Invalid 'expires_after[seconds]': expected an integer between {lo} and {hi}.",
            "expires_after[seconds]",
            "invalid_value",
        )
    return float(value)


def upload(surface: Surface) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            form = await request.form(max_files=1, max_fields=20)
        except (MultiPartException, HTTPException) as exc:
            detail = exc.message if isinstance(exc, MultiPartException) else exc.detail
            raise bad_request(f"Could not parse multipart form: {detail}") from None
        try:
            purpose = form.get("purpose")
            if not isinstance(purpose, str) or not purpose:
                raise missing("purpose")
            if purpose != "batch":
                raise bad_request(
                    f"The mmq simulator stores purpose='batch' files only, not {purpose!r}.",
                    "purpose",
                    "invalid_value",
                )
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise missing("file")
            expires_s = _expiry(
                form.get("expires_after[anchor]"), form.get("expires_after[seconds]"), surface
            )
            data = await upload.read()
            filename = upload.filename or "upload.jsonl"
        finally:
            await form.close()
        file = StoredFile(new_id("file-"), surface.provider, filename, purpose, data)
        _engine(request).files.put(file)
        if expires_s is not None:
            file.expires_at = file.created_at + expires_s
        return json_response(file_object(file))

    return endpoint


def _file(request: Request, surface: Surface) -> StoredFile:
    file_id = request.path_params["file_id"]
    file = _engine(request).files.get(surface.provider, file_id)
    if file is None:
        raise ApiError(404, f"No such File object: {file_id}", param="id")
    return file


def retrieve(surface: Surface) -> Handler:
    async def endpoint(request: Request) -> Response:
        return json_response(file_object(_file(request, surface)))

    return endpoint


def content(surface: Surface) -> Handler:
    async def endpoint(request: Request) -> Response:
        return Response(_file(request, surface).data, media_type="application/octet-stream")

    return endpoint


def delete(surface: Surface) -> Handler:
    async def endpoint(request: Request) -> Response:
        file = _file(request, surface)
        _engine(request).files.delete(surface.provider, file.id)
        return json_response({"id": file.id, "object": "file", "deleted": True})

    return endpoint


def listing(surface: Surface) -> Handler:
    async def endpoint(request: Request) -> Response:
        query = request.query_params
        limit = limit_param(query.get("limit"), 10_000, 10_000)
        files = _engine(request).files.newest_first(surface.provider)
        if query.get("purpose"):
            files = [f for f in files if f.purpose == query["purpose"]]
        if query.get("order") == "asc":
            files.reverse()
        chunk, more = page(files, lambda f: f.id, limit, after=query.get("after"))
        return json_response(
            {
                "object": "list",
                "data": [file_object(f) for f in chunk],
                "first_id": chunk[0].id if chunk else None,
                "last_id": chunk[-1].id if chunk else None,
                "has_more": more,
            }
        )

    return endpoint
