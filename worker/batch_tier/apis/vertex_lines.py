"""Vertex AI batch prediction's input lines and prediction lines, for Gemini and for Claude on Vertex.

Why apart from vertex.py (the control plane and Cloud Storage): these are pure shapes, one pair per
publisher, and the part most likely to change with Google's output format
(../shared/reference/native_batch.md §5):

- Gemini: an input line is `{"request": <GenerateContentRequest>}`, with no id field of its own. The
  output echoes `request`, so the job id rides in `request.labels` (`{"mmq_job": <job id>}`: mmq's job
  ids are lowercase letters, digits and `_`, which label values allow). A prediction line is
  `{"request", "response": <GenerateContentResponse>, "status": ""}`; a failed one carries its error
  as text in `status` (and no response).
- Claude on Vertex: `{"custom_id", "request": <the rawPredict body: messages, anthropic_version
  "vertex-2023-10-16", max_tokens…>}`; a prediction line adds `response` (the Message) and `status`.
  An error may be the Anthropic error body in `response`, or text in `status`.

Error text is read as well as it can be: an embedded Google error JSON ({"error": {"code", "status"}}),
else a google.rpc status name or an HTTP code in the text. Retryable, as for Gemini's own batches, when
the line did not run or failed transiently (CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, 5xx…, and
text nobody can read: a realtime call then gives the definite answer); a 4xx is the request's fault.
Lines with no outcome at all (a job cancelled or expired before they ran) are simply absent: the
engine sends those jobs realtime.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from worker.batch_tier.apis.anthropic import STATUS_OF_TYPE
from worker.batch_tier.apis.gemini import GRPC, RETRYABLE_CODES
from worker.batch_tier.protocol import LineResult
from worker.providers.anthropic import RETRYABLE_TYPES

log = logging.getLogger(__name__)

LABEL = "mmq_job"  # the request label that carries a Gemini line's job id through the output
_STATUS_OF_NAME = {name: status for name, status in GRPC.values()}
_NAME_OF_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_NAMES = re.compile(r"\b(" + "|".join(sorted(_STATUS_OF_NAME, key=len, reverse=True)) + r")\b")
_HTTP = re.compile(r"\b([45]\d\d)\b")


# ------------------------------------------------------------------------------------------ input
def gemini_line(custom_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    labels = body.get("labels")
    labels = dict(labels) if isinstance(labels, Mapping) else {}
    return {"request": {**body, "labels": {**labels, LABEL: custom_id}}}


def claude_line(custom_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "request": dict(body)}


# ----------------------------------------------------------------------------------------- output
def _embedded_json(text: str) -> Any:
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


def error_line(custom_id: str, status: Any, body: Any = None) -> LineResult:
    """A failed line from its `status` text (and a body, when the output has one)."""
    text = status if isinstance(status, str) else json.dumps(status) if status else ""
    found = body if isinstance(body, Mapping) else _embedded_json(text)
    error = found.get("error") if isinstance(found, Mapping) else None
    if isinstance(found, Mapping) and found.get("type") == "error" and isinstance(error, Mapping):
        kind = str(error.get("type") or "api_error")  # Anthropic's own error body
        return LineResult(
            custom_id,
            ok=False,
            status_code=STATUS_OF_TYPE.get(kind),
            body=dict(found),
            error_code=kind,
            error_message=str(error.get("message") or kind),
            retryable=kind in RETRYABLE_TYPES,
        )
    name: str | None = None
    http: int | None = None
    message = text or "the line failed without a status"
    if isinstance(error, Mapping):  # Google's {"error": {"code", "message", "status"}}
        name = error.get("status") if isinstance(error.get("status"), str) else None
        code = error.get("code")
        http = code if isinstance(code, int) and 400 <= code < 600 else None
        message = str(error.get("message") or message)
    if name is None and (match := _NAMES.search(text)):
        name = match[1]
    if http is None and (match := _HTTP.search(text)):
        http = int(match[1])
    if name is None:
        name = _NAME_OF_HTTP.get(http or 0, "INTERNAL" if (http or 0) >= 500 else "UNKNOWN")
    if http is None:
        http = _STATUS_OF_NAME.get(name)
    retryable = name in RETRYABLE_CODES or (http is not None and (http == 429 or http >= 500))
    return LineResult(
        custom_id,
        ok=False,
        status_code=http,
        body=dict(found) if isinstance(found, Mapping) else None,
        error_code=name,
        error_message=message[:2000],
        retryable=retryable,
    )


def gemini_result(item: Mapping[str, Any]) -> LineResult | None:
    """One Gemini prediction line; None when it carries no job id (not a line mmq wrote)."""
    request = item.get("request")
    labels = request.get("labels") if isinstance(request, Mapping) else None
    custom_id = labels.get(LABEL) if isinstance(labels, Mapping) else None
    if not isinstance(custom_id, str) or not custom_id:
        log.warning("vertex batch predictions: a line without the %s label was skipped", LABEL)
        return None
    response, status = item.get("response"), item.get("status")
    if not status and isinstance(response, Mapping):
        return LineResult(custom_id, ok=True, status_code=200, body=dict(response))
    return error_line(custom_id, status, response if isinstance(response, Mapping) else None)


def claude_result(item: Mapping[str, Any]) -> LineResult | None:
    """One Claude-on-Vertex prediction line; None without a custom_id."""
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        log.warning("vertex-anthropic batch predictions: a line without a custom_id was skipped")
        return None
    response, status = item.get("response"), item.get("status")
    if not status and isinstance(response, Mapping) and response.get("type") == "message":
        return LineResult(custom_id, ok=True, status_code=200, body=dict(response))
    return error_line(custom_id, status, response if isinstance(response, Mapping) else None)
