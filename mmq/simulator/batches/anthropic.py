"""Anthropic Message Batches: create, retrieve, list, cancel, results, delete under /v1/messages/batches.

Why: the batch tier's Anthropic wire (reference native_batch.md §3, queue_and_batch.md §C.5). Requests
come inline ({"requests": [{"custom_id", "params"}]}, no file); models may be mixed; custom_id must match
^[a-zA-Z0-9_-]{1,64}$ and be unique; at most 100,000 requests or 256 MB (413) unless the knobs say
less. Bad params are not refused at create: each line runs through the realtime /v1/messages handler
and a bad one comes back `errored`. processing_status is in_progress | canceling | ended;
request_counts show only `processing` until the batch ends; timestamps are RFC 3339; results_url is
set once ended, and the results are one JSONL (succeeded with usage.service_tier "batch", errored,
canceled, expired), in the order lines finished. Cancelling an ended batch returns it unchanged.
Auth and errors are the realtime dialect's (x-api-key, anthropic-version, {"type":"error",...}).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.anthropic import (
    _with_limit_headers,
    anthropic_error,
    api_key,
    invalid,
    messages,
    read_body,
    render_error,
)
from mmq.simulator.batches.calls import Origin, answer, json_body
from mmq.simulator.batches.engine import BatchEngine, new_id
from mmq.simulator.batches.paging import limit_param, page
from mmq.simulator.batches.routing import by_method
from mmq.simulator.batches.timeline import Batch, Line, Runner
from mmq.simulator.errors import json_response
from mmq.simulator.guard import Handler, guarded

PATH = "/v1/messages/batches"
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
WINDOW_S = 86_400.0
INJECTED = {
    "type": "error",
    "error": {"type": "api_error", "message": "Internal server error (mmq simulator: batch_fail_rate)"},
}
_KINDS = {"succeeded": "succeeded", "errored": "errored", "cancelled": "canceled", "expired": "expired"}


def _rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _engine(request: Request) -> BatchEngine:
    return request.app.state.sim.batches


def _version(request: Request) -> str:
    version = request.headers.get("anthropic-version")
    if not version:
        raise invalid("anthropic-version: header is required")
    return version


def _lines(body: dict[str, object], engine: BatchEngine, size: int) -> list[Line]:
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise invalid(
            "requests: Field required" if requests is None else "requests: List should have at least 1 item"
        )
    limit = engine.config.batch_max_requests or MAX_REQUESTS
    if len(requests) > limit:
        raise invalid(
            f"requests: List should have at most {limit} items after validation, not {len(requests)}"
        )
    max_bytes = engine.config.batch_max_bytes or MAX_BYTES
    if size > max_bytes:
        raise anthropic_error(
            413, "request_too_large", f"Request exceeds the maximum size of {max_bytes} bytes"
        )
    lines: list[Line] = []
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise invalid(f"requests.{i}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise invalid(f"requests.{i}.custom_id: String should match pattern '{CUSTOM_ID.pattern}'")
        if custom_id in seen:
            raise invalid(f"requests.{i}.custom_id: duplicate custom_id {custom_id!r}; each must be unique")
        params = item.get("params")
        if not isinstance(params, dict):
            raise invalid(f"requests.{i}.params: Input should be a valid dictionary")
        seen.add(custom_id)
        lines.append(Line(i, custom_id, "/v1/messages", params))
    return lines


def _runner(origin: Origin, version: str) -> Runner:
    async def run(line: Line, inject: bool) -> tuple[int, object]:
        if inject:
            return 500, INJECTED
        request = origin.request("/v1/messages", json_body(line.body), headers={"anthropic-version": version})
        status, body = await answer(messages, request, render_error)
        if status == 200 and isinstance(body, dict) and isinstance(body.get("usage"), dict):
            body["usage"]["service_tier"] = "batch"
        return status, body

    return run


def batch_object(batch: Batch, now: float) -> dict[str, object]:
    status = batch.terminal or batch.status(now)
    ended = batch.terminal is not None
    counts = batch.counts()
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": "ended" if ended else "canceling" if status == "cancelling" else "in_progress",
        "request_counts": {
            "processing": 0 if ended else len(batch.lines),
            "succeeded": counts["succeeded"] if ended else 0,
            "errored": counts["errored"] if ended else 0,
            "canceled": counts["cancelled"] if ended else 0,
            "expired": counts["expired"] if ended else 0,
        },
        "ended_at": _rfc3339(batch.ended_at),
        "created_at": _rfc3339(batch.created_at),
        "expires_at": _rfc3339(batch.plan.expire_at or batch.created_at + WINDOW_S),
        "archived_at": None,
        "cancel_initiated_at": _rfc3339(batch.cancel_at),
        "results_url": f"{batch.info['base_url']}{PATH}/{batch.id}/results" if ended else None,
    }


def _result(line: Line) -> dict[str, object]:
    outcome = line.outcome
    assert outcome is not None
    kind = _KINDS[outcome.kind]
    result: dict[str, object] = {"type": kind}
    if kind == "succeeded":
        result["message"] = outcome.body
    elif kind == "errored":
        error = outcome.body if isinstance(outcome.body, dict) else INJECTED
        result["error"] = {**error, "request_id": "req_" + secrets.token_hex(12)}
    return {"custom_id": line.id, "result": result}


# ------------------------------------------------------------------------------------------ handlers
async def create(request: Request) -> Response:
    version = _version(request)
    engine = _engine(request)
    body = await read_body(request)
    lines = _lines(body, engine, len(await request.body()))
    origin = Origin.of(request)
    batch = engine.create(
        new_id("msgbatch_01"),
        "anthropic",
        lines,
        _runner(origin, version),
        window_s=WINDOW_S,
        info={"base_url": origin.base_url},
    )
    if (reply_s := request.app.state.sim.config.batch_create_reply_s) > 0:
        await asyncio.sleep(reply_s)  # the batch exists; its creator has not heard yet
    return json_response(await _current(request, batch))


async def _current(request: Request, batch: Batch) -> dict[str, object]:
    now = time.time()
    await _engine(request).advance(batch, now)
    return batch_object(batch, now)


def _batch(request: Request) -> Batch:
    _version(request)
    batch_id = request.path_params["batch_id"]
    batch = _engine(request).get("anthropic", batch_id)
    if batch is None:
        raise anthropic_error(404, "not_found_error", f"Message batch {batch_id!r} not found.")
    return batch


async def retrieve(request: Request) -> Response:
    return json_response(await _current(request, _batch(request)))


async def listing(request: Request) -> Response:
    _version(request)
    query = request.query_params
    limit = limit_param(query.get("limit"), 20, 1000)
    batches = _engine(request).newest_first("anthropic")
    chunk, more = page(
        batches, lambda b: b.id, limit, after=query.get("after_id"), before=query.get("before_id")
    )
    data = [await _current(request, b) for b in chunk]
    return json_response(
        {
            "data": data,
            "has_more": more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


async def cancel(request: Request) -> Response:
    batch = _batch(request)
    engine = _engine(request)
    await engine.advance(batch)
    if batch.terminal is None and batch.cancel_at is None:
        engine.cancel(batch)
    return json_response(await _current(request, batch))


async def results(request: Request) -> Response:
    batch = _batch(request)
    await _engine(request).advance(batch)
    if batch.terminal is None:
        raise invalid(
            f"Message batch {batch.id} is still processing; its results are available once it has ended."
        )
    text = "".join(json.dumps(_result(line), ensure_ascii=False) + "\n" for line in batch.in_finish_order())
    return Response(text.encode(), media_type="application/x-jsonl")


async def delete(request: Request) -> Response:
    batch = _batch(request)
    engine = _engine(request)
    await engine.advance(batch)
    if batch.terminal is None:
        raise invalid(f"Message batch {batch.id} cannot be deleted while it is processing; cancel it first.")
    engine.delete(batch)
    return json_response({"id": batch.id, "type": "message_batch_deleted"})


def anthropic_batch_routes() -> list[Route]:
    table: tuple[tuple[str, dict[str, Handler]], ...] = (
        (PATH, {"POST": create, "GET": listing}),
        (PATH + "/{batch_id}", {"GET": retrieve, "DELETE": delete}),
        (PATH + "/{batch_id}/cancel", {"POST": cancel}),
        (PATH + "/{batch_id}/results", {"GET": results}),
    )
    return [
        Route(
            path,
            _with_limit_headers(guarded(by_method(handlers), path, key=api_key, render=render_error)),
            methods=list(handlers),
        )
        for path, handlers in table
    ]
