"""The OpenAI Batches API (create, retrieve, list, cancel) for OpenAI, Azure and Groq.

Why: this is the wire the worker's batch tier drives for the three OpenAI-format providers. Create
checks the call itself (endpoint, completion_window, metadata: ≤16 pairs, keys ≤64, values ≤512
chars) and answers 400 when it is wrong; the input file is checked too, but a bad file is reported
the providers' way, as a batch that fails when validation ends (oai_input.py), and so is a batch past
the enqueued-token quota (`token_limit_exceeded`, oai_quota.py). Metadata is stored
and returned, so a worker that crashed can find its batches again by listing them. Cancel is allowed
while validating or in progress (again while cancelling: no-op); on an ended batch it is a 400 (not a
409, which the SDK would retry).
"""

from __future__ import annotations

import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.batches.calls import Origin, answer, json_body
from mmq.simulator.batches.engine import BatchEngine
from mmq.simulator.batches.oai_input import error, parse_input
from mmq.simulator.batches.oai_quota import over_quota
from mmq.simulator.batches.oai_surfaces import OPENAI_ENDPOINTS, Surface
from mmq.simulator.batches.oai_wire import batch_object, write_results
from mmq.simulator.batches.paging import limit_param, page
from mmq.simulator.batches.timeline import Batch, Line, Runner
from mmq.simulator.errors import ApiError, bad_request, json_response
from mmq.simulator.guard import Handler
from mmq.simulator.parsing import missing, read_json, wrong_type

INJECTED_FAILURE = {
    "error": {
        "message": "The server had an error while processing your request. (mmq simulator: batch_fail_rate)",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


def _engine(request: Request) -> BatchEngine:
    return request.app.state.sim.batches


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type("metadata", "an object", value)
    if len(value) > 16:
        raise bad_request(
            "Invalid 'metadata': at most 16 key-value pairs are allowed.", "metadata", "invalid_value"
        )
    for key, item in value.items():
        if len(key) > 64:
            raise bad_request(
                f"Invalid 'metadata': key {key[:20]!r}… is over 64 characters.", "metadata", "invalid_value"
            )
        if not isinstance(item, str) or len(item) > 512:
            raise bad_request(
                f"Invalid 'metadata.{key}': expected a string of at most 512 characters.",
                "metadata",
                "invalid_value",
            )
    return dict(value)


def _required_str(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise missing(name)
    if not isinstance(value, str) or not value:
        raise wrong_type(name, "a non-empty string", value)
    return value


def runner(surface: Surface, origin: Origin) -> Runner:
    async def run(line: Line, inject: bool) -> tuple[int, object]:
        if inject:
            return 500, INJECTED_FAILURE
        request = origin.request(line.url, json_body(line.body))
        return await answer(surface.handlers[line.url], request, surface.render)

    return run


def create(surface: Surface, *, capitalised: bool = False) -> Handler:
    """POST /batches; `capitalised`: Azure's dated API versions echo the status as "Validating"."""

    async def endpoint(request: Request) -> Response:
        engine = _engine(request)
        body = await read_json(request)
        input_file_id = _required_str(body, "input_file_id")
        endpoint_url = _required_str(body, "endpoint")
        if endpoint_url not in OPENAI_ENDPOINTS and endpoint_url not in surface.handlers:
            raise bad_request(
                f"Invalid value: {endpoint_url!r}. Supported values are: "
                + ", ".join(f"'{e}'" for e in OPENAI_ENDPOINTS)
                + ".",
                "endpoint",
                "invalid_value",
            )
        if endpoint_url not in surface.handlers:
            raise bad_request(
                f"The mmq simulator's {surface.provider} batches run {', '.join(surface.handlers)}; "
                f"{endpoint_url} is not simulated.",
                "endpoint",
                "unsupported_value",
            )
        window = body.get("completion_window")
        if window is None:
            raise missing("completion_window")
        window_s = surface.window(window)
        if window_s is None and not surface.window_fails_batch:
            raise bad_request(
                f"Invalid value: {window!r}. Supported values are: {surface.windows_text}.",
                "completion_window",
                "invalid_value",
            )
        metadata = _metadata(body.get("metadata"))
        file = engine.files.get(surface.provider, input_file_id)
        if file is None:
            raise ApiError(404, f"No such File object: {input_file_id}", param="input_file_id")
        if file.purpose != "batch":
            raise bad_request(
                f"Invalid 'input_file_id': {input_file_id} has purpose {file.purpose!r}, not 'batch'.",
                "input_file_id",
                "invalid_value",
            )
        cfg = engine.config
        lines, model, errors = parse_input(
            file.data,
            surface,
            endpoint_url,
            cfg.batch_max_requests or surface.max_requests,
            cfg.batch_max_bytes or surface.max_bytes,
        )
        if window_s is None:
            errors.append(
                error(
                    "invalid_request",
                    f"completion_window must be {surface.windows_text}.",
                    None,
                    "completion_window",
                )
            )
        tokens = 0
        if not errors:
            tokens, refusal = over_quota(engine, surface.provider, model, lines)
            errors += [refusal] if refusal else []
        batch = engine.create(
            "batch_" + secrets.token_hex(16),
            surface.provider,
            [] if errors else lines,
            runner(surface, Origin.of(request)),
            window_s=window_s or 86_400.0,
            expires=surface.expires,
            invalid=errors or None,
            info={
                "endpoint": endpoint_url,
                "input_file_id": input_file_id,
                "completion_window": window,
                "metadata": metadata,
                "model": model,
                "enqueued_tokens": 0 if errors else tokens,
            },
        )
        batch.info["expires_at"] = batch.plan.expire_at or batch.created_at + (window_s or 86_400.0)
        shown = await _current(request, surface, batch)
        if capitalised:
            shown["status"] = str(shown["status"]).capitalize()
        return json_response(shown)

    return endpoint


async def _current(request: Request, surface: Surface, batch: Batch) -> dict[str, object]:
    now = time.time()
    engine = _engine(request)
    await engine.advance(batch, now)
    write_results(engine, batch, surface)
    return batch_object(batch, now)


def _batch(request: Request, surface: Surface) -> Batch:
    batch_id = request.path_params["batch_id"]
    batch = _engine(request).get(surface.provider, batch_id)
    if batch is None:
        raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
    return batch


def retrieve(surface: Surface) -> Handler:
    async def endpoint(request: Request) -> Response:
        return json_response(await _current(request, surface, _batch(request, surface)))

    return endpoint


def listing(surface: Surface) -> Handler:
    async def endpoint(request: Request) -> Response:
        limit = limit_param(request.query_params.get("limit"), 20, 100)
        batches = _engine(request).newest_first(surface.provider)
        chunk, more = page(batches, lambda b: b.id, limit, after=request.query_params.get("after"))
        data = [await _current(request, surface, b) for b in chunk]
        return json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
        )

    return endpoint


def cancel(surface: Surface) -> Handler:
    async def endpoint(request: Request) -> Response:
        batch = _batch(request, surface)
        engine = _engine(request)
        now = time.time()
        await engine.advance(batch, now)
        status = batch.terminal or batch.status(now)
        if status in ("validating", "in_progress"):
            engine.cancel(batch)
        elif status not in ("cancelling", "cancelled"):
            raise bad_request(f"Cannot cancel a batch with status '{status}'.", None, "invalid_state")
        return json_response(await _current(request, surface, batch))

    return endpoint
