"""The console's media URLs: a job's input media and result files, full size and as thumbnails.

    {prefix}/jobs/{job_id}/input/{n}                 the request's n-th medium (producer/console/job_media.py)
    {prefix}/jobs/{job_id}/input/{n}/thumb/{size}    its thumbnail (s: table rows, m: the job page)
    {prefix}/jobs/{job_id}/output/{n}                the result's n-th file (generated image, speech, text)
    {prefix}/jobs/{job_id}/output/{n}/thumb/{size}
    {prefix}/jobs/{job_id}/thumb                     a table row's thumbnail: its first input image or
                                                     its generated image

The job is checked against the viewer's tenant before anything else (another tenant's job, a job that
does not exist and an index past the end are the same 404); the storage key comes from the job itself.
Answers are `private, max-age=600` with an ETag: a job table that refreshes every few seconds while its
batch runs does not ask for its thumbnails again, a later revalidation costs the tenant check and no
bytes, and shared caches keep nothing. Signing out clears the browser's cache of the console (the
`Clear-Site-Data` header), so the next person at the browser does not find the last one's images in it.
Audio answers byte ranges, which browsers use to seek.
"""

from __future__ import annotations

import hashlib
import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.contract import JobRecord
from mmq.media import extension_for
from mmq.storage import BlobNotFound, StorageKeyError
from producer.console.app import console_of
from producer.console.job_media import (
    InputItem,
    download_name,
    first_thumb_source,
    input_items,
    load_input,
    request_body,
    served_type,
)
from producer.console.pages import own_job
from producer.console.thumbs import SIZES, thumbnail

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CACHE_CONTROL = "private, max-age=600"


def _not_found() -> HTTPException:
    return HTTPException(404, "Not found")


def _n(request: Request) -> int:
    raw = request.path_params["n"]
    if not raw.isdigit() or len(raw) > 6:
        raise _not_found()
    return int(raw)


def _etag(identity: str) -> str:
    return '"' + hashlib.sha256(identity.encode()).hexdigest()[:32] + '"'


def _not_modified(request: Request, etag: str) -> Response | None:
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={"etag": etag, "cache-control": CACHE_CONTROL})
    return None


def _bytes_response(request: Request, data: bytes, etag: str, recorded: str | None, stem: str) -> Response:
    """`data` with its sniffed type; inline only for images and audio a browser shows (see job_media)."""
    media_type, inline = served_type(data, recorded)
    headers = {"etag": etag, "cache-control": CACHE_CONTROL, "accept-ranges": "bytes"}
    if not inline:
        name = download_name(
            stem, extension_for(media_type) if media_type != "application/octet-stream" else ".bin"
        )
        headers["content-disposition"] = f'attachment; filename="{name}"'
    wanted = _RANGE.match(request.headers.get("range", ""))
    if wanted and media_type.startswith("audio/") and data:
        first, last = wanted.groups()
        size = len(data)
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:
            start, end = max(0, size - int(last or 0)), size - 1
        if start > end or start >= size:
            return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
        headers["content-range"] = f"bytes {start}-{end}/{size}"
        return Response(data[start : end + 1], status_code=206, media_type=media_type, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


async def _input_item(request: Request, job: JobRecord, n: int) -> InputItem:
    items = input_items(job, await request_body(job, console_of(request).storage))
    if not 0 <= n < len(items) or items[n].source not in ("stored", "inline"):
        raise _not_found()
    return items[n]


async def input_file(request: Request) -> Response:
    c = console_of(request)
    job = await own_job(request)
    item = await _input_item(request, job, _n(request))
    etag = _etag(f"in:{item.thumb_id}")
    if (cached := _not_modified(request, etag)) is not None:
        return cached
    data = await load_input(item, c.storage)
    if data is None:
        raise _not_found()
    return _bytes_response(request, data, etag, item.declared, f"{job.custom_id or job.id}-input-{item.n}")


async def output_file(request: Request) -> Response:
    c = console_of(request)
    job = await own_job(request)
    n = _n(request)
    if not job.result or not 0 <= n < len(job.result.files):
        raise _not_found()
    f = job.result.files[n]
    etag = _etag(f"out:{f.key}")
    if (cached := _not_modified(request, etag)) is not None:
        return cached
    try:
        data = await c.storage.get(f.key)
    except (BlobNotFound, StorageKeyError):
        raise _not_found() from None
    return _bytes_response(request, data, etag, f.content_type, f"{job.custom_id or job.id}-{n}")


async def _thumb(request: Request, job: JobRecord, where: str, n: int, size: str) -> Response:
    c = console_of(request)
    if size not in SIZES:
        raise _not_found()
    if where == "input":
        item = await _input_item(request, job, n)
        if item.role != "image":
            raise _not_found()
        source_id = item.thumb_id

        async def load() -> bytes | None:
            return await load_input(item, c.storage)

    else:
        if not job.result or not 0 <= n < len(job.result.files):
            raise _not_found()
        key = job.result.files[n].key
        source_id = hashlib.sha256(key.encode()).hexdigest()

        async def load() -> bytes | None:
            try:
                return await c.storage.get(key)
            except (BlobNotFound, StorageKeyError):
                return None

    etag = _etag(f"thumb:{size}:{source_id}")
    if (cached := _not_modified(request, etag)) is not None:
        return cached
    data = await thumbnail(c.storage, size, source_id, load, c.settings.image_max_pixels, c.makers)
    if data is None:
        raise _not_found()
    return _bytes_response(request, data, etag, None, "thumbnail")


async def input_thumb(request: Request) -> Response:
    job = await own_job(request)
    return await _thumb(request, job, "input", _n(request), request.path_params["size"])


async def output_thumb(request: Request) -> Response:
    job = await own_job(request)
    return await _thumb(request, job, "output", _n(request), request.path_params["size"])


async def row_thumb(request: Request) -> Response:
    job = await own_job(request)
    found = first_thumb_source(job)
    if found is None:
        raise _not_found()
    where, n = found
    if where == "input" and job.request is None:  # a request kept in storage: its first image, if any
        items = input_items(job, await request_body(job, console_of(request).storage))
        n = next((i.n for i in items if i.role == "image" and i.source in ("stored", "inline")), -1)
        if n < 0:
            raise _not_found()
    return await _thumb(request, job, where, n, "s")


def routes(prefix: str) -> list[Route]:
    jobs = f"{prefix}/jobs/{{job_id}}"
    return [
        Route(f"{jobs}/thumb", row_thumb, methods=["GET"]),
        Route(f"{jobs}/input/{{n}}", input_file, methods=["GET"]),
        Route(f"{jobs}/input/{{n}}/thumb/{{size}}", input_thumb, methods=["GET"]),
        Route(f"{jobs}/output/{{n}}", output_file, methods=["GET"]),
        Route(f"{jobs}/output/{{n}}/thumb/{{size}}", output_thumb, methods=["GET"]),
    ]
