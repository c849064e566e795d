"""The Gemini batch wire shapes: the batch Operation, its states and stats, and the per-request results.

Why apart: these are what the google-genai SDK parses (_BatchJob_from_mldev reads name, metadata.state,
createTime / updateTime / endTime, model, displayName and metadata.output: responsesFile or
inlinedResponses.inlinedResponses), kept out of the handlers (gemini.py) so both stay small. Inline
results are one entry per request in request order ({"response"} or {"error"}, with the request's
metadata); file results are a generated JSONL file of {"key", "response" | "error"} in the order
lines finished. A failed line's error is a google.rpc.Status {code (gRPC), message}.
"""

from __future__ import annotations

import json

from mmq.simulator.batches.engine import BatchEngine
from mmq.simulator.batches.gemini_files import rfc3339
from mmq.simulator.batches.shelf import StoredFile
from mmq.simulator.batches.timeline import Batch, Line

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
STATES = {
    "validating": "BATCH_STATE_PENDING",
    "in_progress": "BATCH_STATE_RUNNING",
    "finalizing": "BATCH_STATE_RUNNING",
    "cancelling": "BATCH_STATE_RUNNING",
    "completed": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "expired": "BATCH_STATE_EXPIRED",
    "cancelled": "BATCH_STATE_CANCELLED",
}
GRPC = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}
_UNRUN = {
    "expired": {"code": 4, "message": "The batch expired before this request ran. (mmq simulator)"},
    "cancelled": {"code": 1, "message": "The batch was cancelled before this request ran. (mmq simulator)"},
}


def _status(line: Line) -> dict[str, object]:
    outcome = line.outcome
    assert outcome is not None
    if outcome.kind in _UNRUN:
        return _UNRUN[outcome.kind]
    error = outcome.body.get("error") if isinstance(outcome.body, dict) else None
    error = error if isinstance(error, dict) else {}
    return {"code": GRPC.get(str(error.get("status")), 2), "message": str(error.get("message") or "")}


def _entry(line: Line) -> dict[str, object]:
    outcome = line.outcome
    assert outcome is not None
    return {"response": outcome.body} if outcome.kind == "succeeded" else {"error": _status(line)}


def _output(batch: Batch, engine: BatchEngine, inline: bool) -> dict[str, object]:
    if "metadata" in batch.info:  # inline: every request, in request order
        if not inline:
            return {}
        entries = []
        for line, meta in zip(batch.lines, batch.info["metadata"], strict=True):  # type: ignore[call-overload]
            entry = _entry(line)
            if meta is not None:
                entry["metadata"] = meta
            entries.append(entry)
        return {"inlinedResponses": {"inlinedResponses": entries}}
    if "responses_file" not in batch.info:
        text = "".join(
            json.dumps({"key": line.id, **_entry(line)}, ensure_ascii=False) + "\n"
            for line in batch.in_finish_order()
        )
        name = "files/batch-" + batch.id.removeprefix("batches/")
        engine.files.put(StoredFile(name, "gemini", name, "batch_output", text.encode(), generated=True))
        batch.info["responses_file"] = name
    return {"responsesFile": batch.info["responses_file"]}


def operation(batch: Batch, now: float, engine: BatchEngine, *, inline: bool = True) -> dict[str, object]:
    status = batch.terminal or batch.status(now)
    counts = batch.counts()
    meta: dict[str, object] = {
        "@type": BATCH_TYPE,
        "model": f"models/{batch.info['model']}",
        "displayName": batch.info.get("display_name") or batch.id,
        "name": batch.id,
        "state": STATES[status],
        "createTime": rfc3339(batch.created_at),
        "updateTime": rfc3339(batch.ended_at or now),
        "batchStats": {
            "requestCount": str(len(batch.lines)),
            "successfulRequestCount": str(counts["succeeded"]),
            "failedRequestCount": str(counts["errored"] + counts["expired"] + counts["cancelled"]),
            "pendingRequestCount": str(counts["pending"]),
        },
    }
    if batch.info.get("file_name"):
        meta["inputConfig"] = {"fileName": batch.info["file_name"]}
    shown: dict[str, object] = {"name": batch.id, "metadata": meta, "done": batch.terminal is not None}
    if batch.ended_at is not None:
        meta["endTime"] = rfc3339(batch.ended_at)
    if batch.terminal == "failed":
        shown["error"] = {"code": 3, "message": str((batch.invalid or [{}])[0].get("message"))}
    elif batch.terminal is not None:
        output = _output(batch, engine, inline)
        meta["output"] = output
        shown["response"] = {"@type": OUTPUT_TYPE, **output}
    return shown
