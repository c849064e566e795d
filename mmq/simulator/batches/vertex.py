"""Vertex AI batch prediction: projects/{p}/locations/{l}/batchPredictionJobs create / get / list /
cancel / delete, for Gemini (publishers/google) and Claude on Vertex (publishers/anthropic).

Why: the batch tier's Vertex wire (reference native_batch.md §5; worker/batch_tier/apis/vertex.py is
its client). Create takes {displayName, model: "publishers/{google|anthropic}/models/{id}",
inputConfig: {instancesFormat: "jsonl", gcsSource: {uris}}, outputConfig: {predictionsFormat: "jsonl",
gcsDestination: {outputUriPrefix}}, labels?}; the input objects are read from the simulator's Cloud
Storage (gcs.py) at create, and an input that is missing, unreadable or over the knobs' limits fails
the job (JOB_STATE_FAILED with its error), as Vertex validates after accepting. Each line runs through
the realtime handler of the job's model (Gemini's generateContent, or Claude-on-Vertex's rawPredict),
so its usage is the realtime usage, on the shared engine's timeline (the batch_* knobs: completion
time, partial failures, expiry, slow cancellation). Predictions are written to Cloud Storage when the
job ends (vertex_wire.py). Claude jobs are limited to 4 running per project (429 RESOURCE_EXHAUSTED
beyond), Vertex's default quota. The list takes `filter=display_name="…"`, `pageSize`, `pageToken`,
newest first. Auth is a bearer token (any works); errors are Google's.
"""

from __future__ import annotations

import re
import string
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.batches.calls import Origin, answer, json_body
from mmq.simulator.batches.engine import BatchEngine, new_id
from mmq.simulator.batches.routing import by_method
from mmq.simulator.batches.timeline import Batch, Line, Runner
from mmq.simulator.batches.vertex_wire import ANTHROPIC, GOOGLE, job_resource, read_lines
from mmq.simulator.errors import json_response
from mmq.simulator.gcs_store import GcsStore, split_uri
from mmq.simulator.gemini import generate_content
from mmq.simulator.gemini.errors import GoogleError, _dialect, _invalid, to_google
from mmq.simulator.gemini.wire import _fields, _read_body
from mmq.simulator.guard import Handler, bearer_key, guarded
from mmq.simulator.vertex_anthropic import raw_predict

PLACE = "/v1/projects/{project}/locations/{location}"
JOBS = PLACE + "/batchPredictionJobs"
ONE = JOBS + "/{job_id}"
PROVIDERS = {GOOGLE: "vertex", ANTHROPIC: "vertex-anthropic"}  # the stats' provider names
WINDOW_S = 72 * 3600.0  # queued or running this long: expired (reference §5, unverified)
MAX_REQUESTS = 200_000
MAX_BYTES = 1024 * 1024 * 1024
CLAUDE_CONCURRENT = 4  # Claude batch jobs per project (Vertex's default quota)
_MODEL = re.compile(
    r"^publishers/(google|anthropic)/models/([A-Za-z0-9][A-Za-z0-9._-]*(?:@[A-Za-z0-9._-]+)?)$"
)
_FILTER = re.compile(r'^\s*display_name\s*=\s*"((?:[^"\\]|\\.)*)"\s*$')
_METHOD = {GOOGLE: "generateContent", ANTHROPIC: "rawPredict"}
INJECTED = {
    "error": {
        "code": 500,
        "message": "Internal error encountered. (mmq simulator: batch_fail_rate)",
        "status": "INTERNAL",
    }
}


def _engine(request: Request) -> BatchEngine:
    return request.app.state.sim.batches


def _store(request: Request) -> GcsStore:
    return request.app.state.sim.gcs


def _gs(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("gs://") or not value[5:].partition("/")[0]:
        raise _invalid(f"{where}: expected a gs://bucket/path URI, got {value!r}.")
    return value


# --------------------------------------------------------------------------------------------- input
def _configs(body: dict[str, object]) -> tuple[list[str], str]:
    """(the input URIs, the output prefix) of a create body; only the JSONL / Cloud Storage forms."""
    source = _fields(
        body.get("inputConfig"), "input_config", frozenset({"instancesFormat", "gcsSource", "bigquerySource"})
    )
    if source.get("instancesFormat") != "jsonl" or "gcsSource" not in source:
        raise _invalid("input_config: the mmq simulator takes instancesFormat 'jsonl' with a gcsSource.")
    uris = _fields(source["gcsSource"], "input_config.gcs_source", frozenset({"uris"})).get("uris")
    if not isinstance(uris, list) or not uris:
        raise _invalid("input_config.gcs_source.uris: at least one URI is required.")
    inputs = [_gs(uri, "input_config.gcs_source.uris") for uri in uris]
    known = frozenset({"predictionsFormat", "gcsDestination", "bigqueryDestination"})
    sink = _fields(body.get("outputConfig"), "output_config", known)
    if sink.get("predictionsFormat") != "jsonl" or "gcsDestination" not in sink:
        raise _invalid(
            "output_config: the mmq simulator takes predictionsFormat 'jsonl' with a gcsDestination."
        )
    prefix = _fields(sink["gcsDestination"], "output_config.gcs_destination", frozenset({"outputUriPrefix"}))
    return inputs, _gs(prefix.get("outputUriPrefix"), "output_config.gcs_destination.output_uri_prefix")


def _lines(
    store: GcsStore, engine: BatchEngine, inputs: list[str], publisher: str, job_id: str
) -> tuple[list[Line], str | None]:
    """Every input object's lines, or why the job fails."""
    data = b""
    for uri in inputs:
        place = split_uri(uri)
        obj = store.get(*place) if place else None
        if obj is None:
            return [], f"Failed to read {uri}: No such object."
        data += obj.data if obj.data.endswith(b"\n") else obj.data + b"\n"
    max_bytes = engine.config.batch_max_bytes or MAX_BYTES
    if len(data) > max_bytes:
        return [], f"The input is {len(data)} bytes, over the limit of {max_bytes}."
    lines, problem = read_lines(data, publisher, job_id, _METHOD[publisher])
    limit = engine.config.batch_max_requests or MAX_REQUESTS
    if problem is None and len(lines) > limit:
        return [], f"The input has {len(lines)} requests; at most {limit} are allowed."
    return lines, problem


def _runner(origin: Origin, publisher: str, project: str, location: str, model: str) -> Runner:
    place = f"/v1/projects/{project}/locations/{location}"
    path = f"{place}/publishers/{publisher}/models/{model}:{_METHOD[publisher]}"
    params = {"project": project, "location": location, "model": model}

    async def run(line: Line, inject: bool) -> tuple[int, object]:
        if inject:
            return 500, INJECTED
        request = origin.request(path, json_body(line.body), path_params=params)
        if publisher == ANTHROPIC:
            return await answer(raw_predict, request)
        return await answer(generate_content, request, lambda exc: to_google(exc.response(), vertex=True))

    return run


# ------------------------------------------------------------------------------------------ handlers
def _mine(request: Request, batch: Batch) -> bool:
    info, params = batch.info, request.path_params
    return (
        batch.provider in PROVIDERS.values()
        and info.get("project") == params["project"]
        and info.get("location") == params["location"]
    )


async def create(request: Request) -> Response:
    engine, params = _engine(request), request.path_params
    known = frozenset({"displayName", "model", "inputConfig", "outputConfig", "labels"})
    body = _fields(await _read_body(request), "", known)
    display = body.get("displayName")
    if not isinstance(display, str) or not display:
        raise _invalid("batch_prediction_job.display_name: is required.")
    match = _MODEL.match(str(body.get("model") or ""))
    if match is None:
        raise _invalid(f"batch_prediction_job.model: {body.get('model')!r} is not a publisher model name.")
    publisher, model = match[1], match[2]
    inputs, output_prefix = _configs(body)
    if publisher == ANTHROPIC:
        running = [
            b for b in engine.newest_first(PROVIDERS[ANTHROPIC]) if b.terminal is None and _mine(request, b)
        ]
        for batch in running:
            await engine.advance(batch)
        if sum(b.terminal is None for b in running) >= CLAUDE_CONCURRENT:
            raise GoogleError(
                429,
                f"Quota exceeded: at most {CLAUDE_CONCURRENT} concurrent Anthropic batch prediction jobs per "
                "project. (mmq simulator)",
            )
    job_id = new_id(str(1 + int(time.time()) % 9), 18, string.digits)
    lines, problem = _lines(_store(request), engine, inputs, publisher, job_id)
    info: dict[str, object] = {
        "publisher": publisher,
        "project": params["project"],
        "location": params["location"],
        "display_name": display,
        "model": body["model"],
        "input_config": body["inputConfig"],
        "output_config": body["outputConfig"],
        "output_prefix": output_prefix,
        "labels": body.get("labels"),
    }
    batch = engine.create(
        job_id,
        PROVIDERS[publisher],
        lines,
        _runner(Origin.of(request), publisher, params["project"], params["location"], model),
        window_s=WINDOW_S,
        invalid=[{"message": problem}] if problem else None,
        info=info,
    )
    return json_response(await _current(request, batch))


async def _current(request: Request, batch: Batch) -> dict[str, object]:
    now = time.time()
    await _engine(request).advance(batch, now)
    return job_resource(batch, now, _store(request))


def _batch(request: Request) -> Batch:
    job_id = request.path_params["job_id"]
    batch = _engine(request).batches.get(job_id)
    if batch is None or not _mine(request, batch):
        raise GoogleError(404, f"The BatchPredictionJob {job_id} does not exist.")
    return batch


async def retrieve(request: Request) -> Response:
    return json_response(await _current(request, _batch(request)))


async def listing(request: Request) -> Response:
    raw_filter = request.query_params.get("filter") or ""
    wanted: str | None = None
    if raw_filter:
        match = _FILTER.match(raw_filter)
        if match is None:
            raise _invalid(f'Unsupported filter {raw_filter!r}: the mmq simulator takes display_name="…".')
        wanted = re.sub(r"\\(.)", r"\1", match[1])
    try:
        size = min(max(int(request.query_params.get("pageSize") or 100), 1), 1000)
    except ValueError:
        raise _invalid("page_size: expected an integer.") from None
    jobs = [b for b in reversed(_engine(request).batches.values()) if _mine(request, b)]
    jobs = [b for b in jobs if wanted is None or b.info.get("display_name") == wanted]
    token = request.query_params.get("pageToken")
    if token:
        ids = [b.id for b in jobs]
        jobs = jobs[ids.index(token) + 1 :] if token in ids else []
    shown: dict[str, object] = {}
    if jobs:
        shown["batchPredictionJobs"] = [await _current(request, b) for b in jobs[:size]]
    if len(jobs) > size:
        shown["nextPageToken"] = jobs[size - 1].id
    return json_response(shown)


async def cancel(request: Request) -> Response:
    batch, engine = _batch(request), _engine(request)
    await engine.advance(batch)
    if batch.terminal is not None:
        state = job_resource(batch, time.time(), _store(request))["state"]
        raise GoogleError(
            400, f"The BatchPredictionJob {batch.id} is in state {state} and cannot be cancelled."
        )
    if batch.cancel_at is None:
        engine.cancel(batch)
    return json_response({})


async def delete(request: Request) -> Response:
    batch = _batch(request)
    _engine(request).delete(batch)
    name = f"projects/{batch.info['project']}/locations/{batch.info['location']}/operations/{batch.id}"
    return json_response(
        {"name": name, "done": True, "response": {"@type": "type.googleapis.com/google.protobuf.Empty"}}
    )


def _guard(handler: Handler, path: str) -> Handler:
    return _dialect(guarded(handler, path, key=bearer_key), vertex=True)


def vertex_batch_routes() -> list[Route]:
    return [
        Route(ONE + ":cancel", _guard(cancel, ONE + ":cancel"), methods=["POST"]),  # before ONE
        Route(JOBS, _guard(by_method({"POST": create, "GET": listing}), JOBS), methods=["POST", "GET"]),
        Route(ONE, _guard(by_method({"GET": retrieve, "DELETE": delete}), ONE), methods=["GET", "DELETE"]),
    ]
