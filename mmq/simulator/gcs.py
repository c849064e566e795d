"""The simulator's Cloud Storage JSON API: the four calls a Vertex batch client makes, on an in-memory
store (gcs_store.py).

Why: Vertex AI batch prediction takes its input from and writes its output to Cloud Storage, so the
simulator standing in for Vertex stands in for storage.googleapis.com too (a test points the worker's
MMQ_GCS_BASE_URL at it). Routes, each guarded with bearer auth (any token works) like the Vertex ones:

    POST   /upload/storage/v1/b/{bucket}/o?uploadType=media&name={object}   the body is the object
    GET    /storage/v1/b/{bucket}/o?prefix&maxResults&pageToken      {"kind", "items"?, "nextPageToken"?}
    GET    /storage/v1/b/{bucket}/o/{object}[?alt=media]                     metadata, or the bytes
    DELETE /storage/v1/b/{bucket}/o/{object}                                 204

An object name in a path is %-encoded (its slashes as %2F); the server sees it decoded. Errors are the
JSON API's: {"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}; the guard's own
answers (auth, rate limit, faults) are rendered as Google's by the Gemini dialect's translator.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.errors import ApiError, NativeError, json_response
from mmq.simulator.gcs_store import GcsObject, GcsStore
from mmq.simulator.gemini.errors import to_google
from mmq.simulator.guard import Handler, bearer_key, guarded

UPLOAD = "/upload/storage/v1/b/{bucket}/o"
OBJECTS = "/storage/v1/b/{bucket}/o"
OBJECT = "/storage/v1/b/{bucket}/o/{name:path}"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_REASONS = {400: "invalid", 401: "required", 404: "notFound", 413: "uploadTooLarge"}


class GcsError(NativeError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def response(self) -> Response:
        reason = _REASONS.get(self.code, "backendError")
        error = {"domain": "global", "reason": reason, "message": self.message}
        return json_response(
            {"error": {"code": self.code, "message": self.message, "errors": [error]}}, self.code
        )


def _store(request: Request) -> GcsStore:
    return request.app.state.sim.gcs


def _bucket(request: Request) -> str:
    bucket = request.path_params["bucket"]
    if not _BUCKET.match(bucket):
        raise GcsError(400, f"Invalid bucket name: '{bucket}'")
    return bucket


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def resource(obj: GcsObject, request: Request) -> dict[str, object]:
    link = (
        f"{request.url.scheme}://{request.url.netloc}/storage/v1/b/{obj.bucket}/o/{quote(obj.name, safe='')}"
    )
    return {
        "kind": "storage#object",
        "id": f"{obj.bucket}/{obj.name}/{obj.generation}",
        "selfLink": link,
        "mediaLink": link + "?alt=media",
        "name": obj.name,
        "bucket": obj.bucket,
        "generation": str(obj.generation),
        "contentType": obj.content_type,
        "size": str(len(obj.data)),
        "timeCreated": rfc3339(obj.created_at),
        "updated": rfc3339(obj.created_at),
    }


async def upload(request: Request) -> Response:
    bucket = _bucket(request)
    kind = request.query_params.get("uploadType")
    if kind != "media":
        raise GcsError(400, f"uploadType {kind!r} is not supported by the mmq simulator (use media)")
    name = request.query_params.get("name")
    if not name:
        raise GcsError(400, "Required parameter: name")
    data = await request.body()
    content_type = request.headers.get("content-type") or "application/octet-stream"
    obj = _store(request).put(bucket, name, data, content_type)
    return json_response(resource(obj, request))


async def listing(request: Request) -> Response:
    bucket = _bucket(request)
    prefix = request.query_params.get("prefix", "")
    try:
        most = min(max(int(request.query_params.get("maxResults") or 1000), 1), 1000)
    except ValueError:
        raise GcsError(400, "Invalid value for maxResults") from None
    after = request.query_params.get("pageToken") or ""
    objects = [o for o in _store(request).listed(bucket, prefix) if o.name > after]
    shown: dict[str, object] = {"kind": "storage#objects"}
    if objects:
        shown["items"] = [resource(o, request) for o in objects[:most]]
    if len(objects) > most:
        shown["nextPageToken"] = objects[most - 1].name
    return json_response(shown)


def _object(request: Request) -> GcsObject:
    bucket, name = _bucket(request), request.path_params["name"]
    obj = _store(request).get(bucket, name)
    if obj is None:
        raise GcsError(404, f"No such object: {bucket}/{name}")
    return obj


async def read(request: Request) -> Response:
    obj = _object(request)
    if request.query_params.get("alt") == "media":
        return Response(obj.data, media_type=obj.content_type)
    return json_response(resource(obj, request))


async def delete(request: Request) -> Response:
    obj = _object(request)
    _store(request).delete(obj.bucket, obj.name)
    return Response(status_code=204)


def _google(exc: ApiError) -> Response:
    return to_google(exc.response(), vertex=True)


def _guard(handler: Handler, path: str) -> Handler:
    return guarded(handler, path, key=bearer_key, render=_google)


def gcs_routes() -> list[Route]:
    async def one(request: Request) -> Response:
        return await (delete if request.method == "DELETE" else read)(request)

    return [
        Route(UPLOAD, _guard(upload, UPLOAD), methods=["POST"]),
        Route(OBJECTS, _guard(listing, OBJECTS), methods=["GET"]),
        Route(OBJECT, _guard(one, OBJECT), methods=["GET", "DELETE"]),
    ]
