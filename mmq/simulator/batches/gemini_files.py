"""Gemini's Files API, as much as batch mode needs: the resumable upload of a JSONL input, get, delete,
and the download of a batch's responses file.

Why: a Gemini batch takes large inputs as an uploaded file ({"fileName": "files/…"}) and returns a
generated responses file (reference native_batch.md §4). The google-genai SDK uploads with the
resumable protocol: POST /upload/v1beta/files with X-Goog-Upload-Protocol: resumable and
X-Goog-Upload-Command: start answers an X-Goog-Upload-URL; the bytes then go to that URL in chunks
("upload", the last "upload, finalize", each at its X-Goog-Upload-Offset), without the API key (the
upload id is the capability). Only generated files can be downloaded
(GET /v1beta/files/{id}:download?alt=media, also under /download/), as with Google.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.batches.engine import BatchEngine, new_id
from mmq.simulator.batches.routing import by_method
from mmq.simulator.batches.shelf import StoredFile
from mmq.simulator.errors import json_response
from mmq.simulator.gemini.auth import studio_key
from mmq.simulator.gemini.errors import GoogleError, _dialect, _invalid
from mmq.simulator.guard import Handler, guarded

UPLOAD = "/upload/v1beta/files"
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"  # Google resource ids: lower case and digits
FILE_TTL_S = 48 * 3600


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _engine(request: Request) -> BatchEngine:
    return request.app.state.sim.batches


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"


def file_json(file: StoredFile, base: str) -> dict[str, object]:
    shown: dict[str, object] = {
        "name": file.id,
        "displayName": file.filename,
        "mimeType": file.mime,
        "sizeBytes": str(len(file.data)),
        "createTime": rfc3339(file.created_at),
        "updateTime": rfc3339(file.created_at),
        "expirationTime": rfc3339(file.created_at + FILE_TTL_S),
        "sha256Hash": base64.b64encode(hashlib.sha256(file.data).hexdigest().encode()).decode(),
        "uri": f"{base}/v1beta/{file.id}",
        "state": "ACTIVE",
        "source": "GENERATED" if file.generated else "UPLOADED",
    }
    if file.generated:
        shown["downloadUri"] = f"{base}/download/v1beta/{file.id}:download?alt=media"
    return shown


async def _start(request: Request) -> Response:
    command = request.headers.get("x-goog-upload-command", "").lower()
    if request.headers.get("x-goog-upload-protocol", "").lower() != "resumable" or command != "start":
        raise _invalid(
            "The mmq simulator takes resumable uploads only "
            "(X-Goog-Upload-Protocol: resumable, X-Goog-Upload-Command: start)."
        )
    raw = await request.body()
    try:
        spec = json.loads(raw or b"{}").get("file") or {}
    except (ValueError, AttributeError):
        raise _invalid("Invalid JSON payload received.") from None
    mime = (
        request.headers.get("x-goog-upload-header-content-type")
        or spec.get("mimeType")
        or "application/jsonl"
    )
    session = new_id("", 32, NAME_CHARS)
    name = spec.get("name") if isinstance(spec.get("name"), str) else None
    file_id = name if name and name.startswith("files/") else "files/" + (name or new_id("", 12, NAME_CHARS))
    _engine(request).uploads[session] = StoredFile(
        file_id, "gemini", str(spec.get("displayName") or file_id.removeprefix("files/")), "batch", b"", mime
    )
    url = f"{_base(request)}{UPLOAD}?upload_id={session}&upload_protocol=resumable"
    return Response(b"", headers={"x-goog-upload-url": url, "x-goog-upload-status": "active"})


async def _chunk(request: Request, session: str) -> Response:
    engine = _engine(request)
    pending = engine.uploads.get(session)
    if pending is None:
        return GoogleError(404, f"No upload session {session!r}.").response()
    command = request.headers.get("x-goog-upload-command", "").lower()
    offset = request.headers.get("x-goog-upload-offset", "0")
    if offset != str(len(pending.data)):
        return GoogleError(
            400, f"Upload offset {offset} does not match the {len(pending.data)} bytes received."
        ).response()
    pending.data += await request.body()
    if "finalize" not in command:
        return Response(b"", headers={"x-goog-upload-status": "active"})
    del engine.uploads[session]
    engine.files.put(pending)
    return json_response(
        {"file": file_json(pending, _base(request))}, headers={"x-goog-upload-status": "final"}
    )


def _upload_endpoint() -> Route:
    start = _guard(_start, UPLOAD)

    async def endpoint(request: Request) -> Response:
        session = request.query_params.get("upload_id")
        return await (start(request) if session is None else _chunk(request, session))

    return Route(UPLOAD, endpoint, methods=["POST"])


def _file(request: Request) -> StoredFile:
    file_id = "files/" + request.path_params["file_id"]
    file = _engine(request).files.get("gemini", file_id)
    if file is None:
        raise GoogleError(
            403, f"You do not have permission to access the File {file_id} or it may not exist."
        )
    return file


async def retrieve(request: Request) -> Response:
    return json_response(file_json(_file(request), _base(request)))


async def delete(request: Request) -> Response:
    file = _file(request)
    _engine(request).files.delete("gemini", file.id)
    return json_response({})


async def download(request: Request) -> Response:
    file = _file(request)
    if not file.generated:
        raise _invalid("Only generated files can be downloaded; uploaded files can't be.")
    return Response(file.data, media_type=file.mime)


def _guard(handler: Handler, path: str) -> Handler:
    return _dialect(guarded(handler, path, key=studio_key), vertex=False)


def gemini_file_routes() -> list[Route]:
    one = "/v1beta/files/{file_id}"
    fetch = _guard(download, one + ":download")
    return [
        _upload_endpoint(),
        Route(one + ":download", fetch, methods=["GET"]),  # before `one`, whose {file_id} would match
        Route("/download" + one + ":download", fetch, methods=["GET"]),
        Route(one, _guard(by_method({"GET": retrieve, "DELETE": delete}), one), methods=["GET", "DELETE"]),
    ]
