"""Vertex AI batch prediction's wire shapes: the job resource, its input lines and its prediction lines,
for Google's models (Gemini) and Anthropic's (Claude on Vertex).

Why apart from the handlers (vertex.py): these are what a client parses (the google-genai SDK's
_BatchJob_from_vertex reads name, displayName, model, state, error, createTime / startTime / endTime /
updateTime, completionStats and outputInfo; reference native_batch.md §5), kept out of the routes so
both stay small.

- Input (a JSONL object in the simulated Cloud Storage): Gemini `{"request": <GenerateContentRequest>}`
  (no id of its own: a line is billed under its request labels' values, else job#index); Claude
  `{"custom_id", "request": <rawPredict body>}`. A line that is not such an object fails the job.
- Output, written once the job ends (if any line ran) to
  `{outputUriPrefix}/prediction-model-{time}/predictions.jsonl`, lines in the order they finished:
  Gemini `{"status": "", "processed_time", "request", "response"}`; Claude `{"custom_id", "request",
  "response", "status": ""}`. A failed line has its error as text in `status` ("Bad Request: {json}")
  (Claude's also the Anthropic error body in `response`); lines that never ran (cancelled, expired)
  are absent and counted in completionStats.incompleteCount.
- States: validating → JOB_STATE_PENDING; running and finalizing → RUNNING; CANCELLING; SUCCEEDED,
  FAILED (the job's `error`), EXPIRED, CANCELLED.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from mmq.simulator.batches.timeline import Batch, Line
from mmq.simulator.gcs import rfc3339
from mmq.simulator.gcs_store import GcsStore

STATES = {
    "validating": "JOB_STATE_PENDING",
    "in_progress": "JOB_STATE_RUNNING",
    "finalizing": "JOB_STATE_RUNNING",
    "cancelling": "JOB_STATE_CANCELLING",
    "completed": "JOB_STATE_SUCCEEDED",
    "failed": "JOB_STATE_FAILED",
    "expired": "JOB_STATE_EXPIRED",
    "cancelled": "JOB_STATE_CANCELLED",
}
GOOGLE, ANTHROPIC = "google", "anthropic"


# --------------------------------------------------------------------------------------------- input
def read_lines(data: bytes, publisher: str, job_id: str, url: str) -> tuple[list[Line], str | None]:
    """The job's lines from its input object, or why the job fails."""
    lines: list[Line] = []
    for n, raw in enumerate(data.decode("utf-8", "replace").split("\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        request = obj.get("request") if isinstance(obj, dict) else None
        if not isinstance(request, dict):
            return [], f"Line {n} of the input is not a JSON object with a request object."
        if publisher == ANTHROPIC:
            custom_id = obj.get("custom_id")  # type: ignore[union-attr]
            if not isinstance(custom_id, str) or not custom_id:
                return [], f"Line {n} of the input has no custom_id."
            line_id = custom_id
        else:
            labels = request.get("labels")
            values = sorted(str(v) for v in labels.values()) if isinstance(labels, dict) else []
            line_id = ",".join(values) or f"{job_id}#{len(lines)}"
        lines.append(Line(len(lines), line_id, url, request))
    if not lines:
        return [], "The input has no requests."
    return lines, None


# -------------------------------------------------------------------------------------------- output
def _status_text(status: int, body: object) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"{phrase}: {json.dumps(body, ensure_ascii=False)}"


def prediction(line: Line, publisher: str) -> dict[str, object] | None:
    """One output line, or None for a line that never ran."""
    outcome = line.outcome
    if outcome is None or outcome.kind not in ("succeeded", "errored"):
        return None
    ok = outcome.kind == "succeeded"
    if publisher == ANTHROPIC:
        out: dict[str, object] = {"custom_id": line.id, "request": line.body, "response": outcome.body}
        out["status"] = "" if ok else _status_text(outcome.status, outcome.body)
        return out
    out = {"status": "" if ok else _status_text(outcome.status, outcome.body)}
    out["processed_time"] = rfc3339(outcome.at)
    out["request"] = line.body
    if ok:
        out["response"] = outcome.body
    return out


def _write_output(batch: Batch, store: GcsStore) -> str | None:
    """Writes the predictions once (the job has ended); the output directory's gs:// URI, or None when
    no line ran."""
    if "output_dir" in batch.info:
        return batch.info["output_dir"]  # type: ignore[return-value]
    publisher = str(batch.info["publisher"])
    rows = [p for line in batch.in_finish_order() if (p := prediction(line, publisher)) is not None]
    bucket, _, prefix = str(batch.info["output_prefix"]).removeprefix("gs://").partition("/")
    if not rows:
        batch.info["output_dir"] = None
        return None
    stamp = rfc3339(batch.ended_at or batch.created_at).replace(".", "").replace(":", "")
    folder = "/".join(p for p in (prefix.strip("/"), f"prediction-model-{stamp}") if p)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    store.put(bucket, f"{folder}/predictions.jsonl", text.encode(), "application/jsonl")
    batch.info["output_dir"] = f"gs://{bucket}/{folder}"
    return batch.info["output_dir"]  # type: ignore[return-value]


def job_resource(batch: Batch, now: float, store: GcsStore) -> dict[str, object]:
    info = batch.info
    status = batch.terminal or batch.status(now)
    counts = batch.counts()
    job: dict[str, object] = {
        "name": f"projects/{info['project']}/locations/{info['location']}/batchPredictionJobs/{batch.id}",
        "displayName": info["display_name"],
        "model": info["model"],
        "inputConfig": info["input_config"],
        "outputConfig": info["output_config"],
        "state": STATES[status],
        "createTime": rfc3339(batch.created_at),
        "updateTime": rfc3339(batch.ended_at or now),
        "completionStats": {
            "successfulCount": str(counts["succeeded"]),
            "failedCount": str(counts["errored"]),
            "incompleteCount": str(counts["pending"] + counts["expired"] + counts["cancelled"]),
        },
    }
    if info.get("labels"):
        job["labels"] = info["labels"]
    if now >= batch.start and status != "failed":
        job["startTime"] = rfc3339(batch.start)
    if batch.ended_at is not None:
        job["endTime"] = rfc3339(batch.ended_at)
    if batch.terminal == "failed":
        job["error"] = {"code": 3, "message": str((batch.invalid or [{}])[0].get("message"))}
    elif batch.terminal is not None:
        out_dir = _write_output(batch, store)
        if out_dir:
            job["outputInfo"] = {"gcsOutputDirectory": out_dir}
    return job
