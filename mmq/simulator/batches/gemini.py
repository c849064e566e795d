"""Gemini API batch mode: models/{model}:batchGenerateContent, batches get / list / cancel / delete.

Why: the batch tier's Gemini wire (reference native_batch.md §4; field paths as the google-genai SDK's
_BatchJob_from_mldev reads them). Create takes {"batch": {"displayName"?, "inputConfig": {"requests":
{"requests": [{"request", "metadata"?}]}} | {"fileName": "files/…"}}}: inline requests (the whole call
≤ 20 MB) answered inline in request order, or an uploaded JSONL of {"key", "request"} lines answered in
a generated responses file ({"key", "response"} or {"key", "error"}, in the order lines finished).
A batch is an Operation {name: "batches/…", metadata: {state: BATCH_STATE_*, batchStats, output…}, done,
response | error}; there is no cancelling state, so a batch being cancelled stays RUNNING until it is
CANCELLED. Each line runs through the realtime generateContent handler of the batch's model (its
answer and error shapes: gemini_wire.py). An unreadable input file fails the batch.
Vertex AI batch prediction (GCS input) is vertex.py.
"""

from __future__ import annotations

import json
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.batches.calls import Origin, answer, json_body
from mmq.simulator.batches.engine import BatchEngine, new_id
from mmq.simulator.batches.gemini_files import NAME_CHARS
from mmq.simulator.batches.gemini_wire import operation
from mmq.simulator.batches.paging import limit_param, page
from mmq.simulator.batches.routing import by_method
from mmq.simulator.batches.shelf import StoredFile
from mmq.simulator.batches.timeline import Batch, Line, Runner
from mmq.simulator.errors import json_response
from mmq.simulator.gemini import generate_content, studio_key
from mmq.simulator.gemini.errors import GoogleError, _dialect, _invalid, to_google
from mmq.simulator.gemini.wire import _fields, _read_body
from mmq.simulator.guard import Handler, guarded

CREATE = "/v1beta/models/{model}:batchGenerateContent"
BATCHES = "/v1beta/batches"
WINDOW_S = 48 * 3600.0  # pending or running for 48 h: expired (reference §4, unverified)
MAX_REQUESTS = 100_000  # not documented; the knob sets a smaller one
INJECTED = {
    "error": {
        "code": 500,
        "message": "Internal error encountered. (mmq simulator: batch_fail_rate)",
        "status": "INTERNAL",
    }
}


def _engine(request: Request) -> BatchEngine:
    return request.app.state.sim.batches


# --------------------------------------------------------------------------------------------- input
def _inline_lines(spec: object, engine: BatchEngine, batch_id: str) -> tuple[list[Line], list[object]]:
    """Lines of inline requests; a line's id (for billing) is its metadata.key, else batch name#index."""
    requests = _fields(spec, "batch.input_config.requests", frozenset({"requests"})).get("requests")
    if not isinstance(requests, list) or not requests:
        raise _invalid(
            "* BatchGenerateContentRequest.batch.input_config.requests.requests: must not be empty\n"
        )
    _check_count(len(requests), engine)
    lines: list[Line] = []
    metadata: list[object] = []
    for i, item in enumerate(requests):
        where = f"batch.input_config.requests.requests[{i}]"
        fields = _fields(item, where, frozenset({"request", "metadata"}))
        if not isinstance(fields.get("request"), dict):
            raise _invalid(f"Invalid value at '{where}.request': expected a GenerateContentRequest object.")
        meta = fields.get("metadata")
        key = meta.get("key") if isinstance(meta, dict) else None
        lines.append(
            Line(i, str(key) if key is not None else f"{batch_id}#{i}", "generateContent", fields["request"])
        )
        metadata.append(meta)
    return lines, metadata


def _check_count(count: int, engine: BatchEngine) -> None:
    limit = engine.config.batch_max_requests or MAX_REQUESTS
    if count > limit:
        raise _invalid(f"The batch has {count} requests; at most {limit} are allowed.")


def _file_lines(file: StoredFile, engine: BatchEngine) -> tuple[list[Line], str | None]:
    """Lines of an uploaded JSONL input, or the reason the batch fails."""
    max_bytes = engine.config.batch_max_bytes
    if max_bytes is not None and len(file.data) > max_bytes:
        return [], f"The input file is {len(file.data)} bytes, over the limit of {max_bytes}."
    lines: list[Line] = []
    for n, raw in enumerate(file.data.decode("utf-8", "replace").split("\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("request"), dict) or "key" not in obj:
            return [], f"Line {n} of {file.id} is not a JSON object with a key and a request."
        lines.append(Line(len(lines), str(obj["key"]), "generateContent", obj["request"]))
    if not lines:
        return [], f"The input file {file.id} has no requests."
    limit = engine.config.batch_max_requests or MAX_REQUESTS
    if len(lines) > limit:
        return [], f"The input file has {len(lines)} requests; at most {limit} are allowed."
    return lines, None


def _runner(origin: Origin, model: str) -> Runner:
    async def run(line: Line, inject: bool) -> tuple[int, object]:
        if inject:
            return 500, INJECTED
        request = origin.request(
            f"/v1beta/models/{model}:generateContent", json_body(line.body), path_params={"model": model}
        )
        return await answer(generate_content, request, lambda exc: to_google(exc.response(), vertex=False))

    return run


# ------------------------------------------------------------------------------------------ handlers
async def create(request: Request) -> Response:
    engine = _engine(request)
    model = request.path_params["model"].removeprefix("models/")
    body = _fields(await _read_body(request), "", frozenset({"batch"}))
    spec = _fields(body.get("batch"), "batch", frozenset({"displayName", "inputConfig", "model", "priority"}))
    source = _fields(spec.get("inputConfig"), "batch.input_config", frozenset({"requests", "fileName"}))
    if len(source) != 1:
        raise _invalid("batch.input_config: exactly one of requests and file_name must be set.")
    max_bytes = engine.config.batch_max_bytes
    if max_bytes is not None and len(await request.body()) > max_bytes:
        raise _invalid(f"Request payload size exceeds the limit: {max_bytes} bytes.")
    batch_id = "batches/" + new_id("", 20, NAME_CHARS)
    info: dict[str, object] = {"model": model, "display_name": spec.get("displayName")}
    invalid = None
    if "requests" in source:
        lines, info["metadata"] = _inline_lines(source["requests"], engine, batch_id)
    else:
        name = source["fileName"]
        file = engine.files.get("gemini", name) if isinstance(name, str) else None
        if file is None:
            raise GoogleError(404, f"File {name} not found.")
        info["file_name"] = name
        lines, problem = _file_lines(file, engine)
        invalid = [{"message": problem}] if problem else None
    batch = engine.create(
        batch_id,
        "gemini",
        lines,
        _runner(Origin.of(request), model),
        window_s=WINDOW_S,
        invalid=invalid,
        info=info,
    )
    return json_response(await _current(request, batch))


async def _current(request: Request, batch: Batch, *, inline: bool = True) -> dict[str, object]:
    now = time.time()
    engine = _engine(request)
    await engine.advance(batch, now)
    return operation(batch, now, engine, inline=inline)


def _batch(request: Request) -> Batch:
    name = "batches/" + request.path_params["batch_id"]
    batch = _engine(request).get("gemini", name)
    if batch is None:
        raise GoogleError(404, f"Batch {name} not found.")
    return batch


async def retrieve(request: Request) -> Response:
    return json_response(await _current(request, _batch(request)))


async def listing(request: Request) -> Response:
    limit = limit_param(request.query_params.get("pageSize"), 50, 1000, "pageSize")
    batches = _engine(request).newest_first("gemini")
    chunk, more = page(batches, lambda b: b.id, limit, after=request.query_params.get("pageToken"))
    shown: dict[str, object] = {"operations": [await _current(request, b, inline=False) for b in chunk]}
    if more:
        shown["nextPageToken"] = chunk[-1].id
    return json_response(shown)


async def cancel(request: Request) -> Response:
    batch = _batch(request)
    engine = _engine(request)
    await engine.advance(batch)
    if batch.terminal is None and batch.cancel_at is None:
        engine.cancel(batch)
    return json_response({})


async def delete(request: Request) -> Response:
    _engine(request).delete(_batch(request))
    return json_response({})


def _guard(handler: Handler, path: str) -> Handler:
    return _dialect(guarded(handler, path, key=studio_key), vertex=False)


def gemini_batch_routes() -> list[Route]:
    one = BATCHES + "/{batch_id}"
    return [
        Route(CREATE, _guard(create, CREATE), methods=["POST"]),
        Route(one + ":cancel", _guard(cancel, one + ":cancel"), methods=["POST"]),  # before `one`
        Route(BATCHES, _guard(listing, BATCHES), methods=["GET"]),
        Route(one, _guard(by_method({"GET": retrieve, "DELETE": delete}), one), methods=["GET", "DELETE"]),
    ]
