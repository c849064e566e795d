"""The Google dialect's errors: Google's error shape, and the guard's answers translated to it.

Errors come in Google's shape {"error": {"code", "message", "status", "details"?}}. The guard's own
answers (auth, rate limit, injected faults) are translated to it too, and a 429 carries a
google.rpc.RetryInfo detail instead of Retry-After headers, as Google does. Kept apart so that
generateContent, Imagen predict and the routes raise and render the same errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.errors import NativeError, json_response
from mmq.simulator.guard import Handler

_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


class GoogleError(NativeError):
    """Raised in a handler; rendered as Google's error body."""

    def __init__(
        self,
        code: int,
        message: str,
        details: list[dict[str, object]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {
            "code": self.code,
            "message": self.message,
            "status": _STATUS_NAMES.get(self.code, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def response(self) -> Response:
        return json_response(self.body(), self.code, self.headers)


def _invalid(message: str) -> GoogleError:
    return GoogleError(400, message)


def _retry_delay(seconds: float) -> str:
    # Google's Duration JSON: "12s", "3.700s"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _wait_s(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            return float(headers[name]) / scale
        except (KeyError, ValueError):
            continue
    return None


def to_google(response: Response, vertex: bool) -> Response:
    """Re-render an OpenAI-shaped error from the guard in Google's shape (also used by the Claude-on-Vertex
    dialect, whose front-end errors are Google's)."""
    try:
        error = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):
        return response
    if not isinstance(error, dict) or isinstance(error.get("status"), str):
        return response  # already Google's
    status = response.status_code
    drop = ("content-length", "content-type", "retry-after", "retry-after-ms")
    headers = {k: v for k, v in response.headers.items() if k not in drop}
    message = str(error.get("message") or "")
    details: list[dict[str, object]] | None = None
    if status == 401 and vertex:
        message = (
            "Request is missing required authentication credential. Expected OAuth 2 access token, login "
            "cookie or other valid authentication credential. (mmq simulator: any bearer token works)"
        )
    elif status == 401:
        status, message = (
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use "
            "API Key or other form of API consumer identity to call this API. (mmq simulator: any key works)",
        )
    elif status == 429:
        details = [
            {
                "@type": QUOTA_FAILURE,
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                    }
                ],
            }
        ]
        message = f"You exceeded your current quota, please check your plan and billing details. ({message})"
    elif status == 503:
        message = f"The model is overloaded. Please try again later. ({message})"
    wait = _wait_s(response.headers)
    if wait is not None:  # Google says when to come back in RetryInfo, not in a header
        details = [*(details or []), {"@type": RETRY_INFO, "retryDelay": _retry_delay(wait)}]
    return GoogleError(status, message, details, headers).response()


def _dialect(endpoint: Handler, vertex: bool) -> Handler:
    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        return to_google(response, vertex) if response.status_code >= 400 else response

    return wrapper
