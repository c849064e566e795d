"""The OpenAI Batch wire shapes: the Batch and FileObject JSON and the output / error file lines.

Why apart: OpenAI, Azure and Groq return these identical shapes (reference queue_and_batch.md §C.2-C.4,
native_batch.md §1.5-1.6), and the official `openai` SDK parses them, so every field the SDK's `Batch`
model has is present (null when unset). request_counts move while the batch runs; at the end,
expired and cancelled lines count as failed, so completed + failed = total. Output files hold the
lines that succeeded, error files the others (HTTP errors in `response`, expiry and cancellation in
`error` as batch_expired / batch_cancelled), in the order lines finished, never input order; an
empty file is not written (Azure's always are, empty or not).
"""

from __future__ import annotations

import json
import secrets

from mmq.simulator.batches.engine import BatchEngine, new_id
from mmq.simulator.batches.oai_surfaces import Surface
from mmq.simulator.batches.shelf import StoredFile
from mmq.simulator.batches.timeline import Batch, Line

_LINE_ERRORS = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
}


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def file_object(file: StoredFile) -> dict[str, object]:
    return {
        "id": file.id,
        "object": "file",
        "bytes": len(file.data),
        "created_at": int(file.created_at),
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": _int(file.expires_at),
    }


def _usage(batch: Batch) -> dict[str, object]:
    prompt = completion = 0
    for line in batch.lines:
        outcome = line.outcome
        if outcome is None or outcome.kind != "succeeded" or not isinstance(outcome.body, dict):
            continue
        usage = outcome.body.get("usage")
        if isinstance(usage, dict):  # chat: prompt/completion_tokens; images: input/output_tokens
            prompt += int(usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0)
            completion += int(usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def batch_object(batch: Batch, now: float) -> dict[str, object]:
    """The Batch as GET /batches/{id} shows it at `now` (advance it to `now` first)."""
    status = batch.terminal or batch.status(now)
    counts = batch.counts()
    began = (
        batch.invalid is None
        and now >= batch.start
        and not (batch.cancel_at is not None and batch.cancel_at < batch.start)
    )
    finalizing = status == "finalizing" or status == "completed"
    info = batch.info
    ended = {
        name: _int(batch.ended_at) if status == name else None
        for name in ("completed", "failed", "expired", "cancelled")
    }
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": info["endpoint"],
        "model": info.get("model"),
        "errors": {"object": "list", "data": batch.invalid} if batch.invalid else None,
        "input_file_id": info["input_file_id"],
        "completion_window": info["completion_window"],
        "status": status,
        "output_file_id": info.get("output_file_id"),
        "error_file_id": info.get("error_file_id"),
        "created_at": int(batch.created_at),
        "in_progress_at": _int(batch.start) if began else None,
        "expires_at": _int(info.get("expires_at")),  # type: ignore[arg-type]
        "finalizing_at": _int(batch.last_due) if finalizing else None,
        "completed_at": ended["completed"],
        "failed_at": ended["failed"],
        "expired_at": ended["expired"],
        "cancelling_at": _int(batch.cancel_at),
        "cancelled_at": ended["cancelled"],
        "request_counts": {
            "total": len(batch.lines) if began or batch.terminal else 0,
            "completed": counts["succeeded"],
            "failed": counts["errored"] + counts["expired"] + counts["cancelled"],
        },
        "usage": _usage(batch),
        "metadata": info.get("metadata"),
    }


def output_line(line: Line) -> dict[str, object]:
    outcome = line.outcome
    assert outcome is not None
    record: dict[str, object] = {"id": "batch_req_" + secrets.token_hex(16), "custom_id": line.id}
    if outcome.kind in _LINE_ERRORS:
        code, message = _LINE_ERRORS[outcome.kind]
        record.update(response=None, error={"code": code, "message": message})
    else:
        response = {
            "status_code": outcome.status,
            "request_id": "req_" + secrets.token_hex(16),
            "body": outcome.body,
        }
        record.update(response=response, error=None)
    return record


def write_results(engine: BatchEngine, batch: Batch, surface: Surface) -> None:
    """Once the batch has ended: store its output and error files and name them on the batch."""
    if batch.terminal in (None, "failed") or "output_file_id" in batch.info:
        return
    ok: list[bytes] = []
    bad: list[bytes] = []
    for line in batch.in_finish_order():
        text = json.dumps(output_line(line), ensure_ascii=False, separators=(",", ":")).encode()
        (ok if line.outcome is not None and line.outcome.kind == "succeeded" else bad).append(text + b"\n")
    for key, chunks, name in (("output_file_id", ok, "output"), ("error_file_id", bad, "error")):
        if not chunks and not surface.always_files:
            batch.info[key] = None
            continue
        stored = engine.files.put(
            StoredFile(
                new_id("file-"),
                surface.provider,
                f"{batch.id}_{name}.jsonl",
                "batch_output",
                b"".join(chunks),
                generated=True,
            )
        )
        batch.info[key] = stored.id
