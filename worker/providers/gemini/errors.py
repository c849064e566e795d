"""Gemini / Vertex errors: Google's error answers -> ProviderError, and whether to try again.

Google answers {"error": {"code", "message", "status", "details"}}; the status name and the HTTP status
decide retryability, a google.rpc.RetryInfo detail gives the delay when no Retry-After header does, and a
per-day QuotaFailure is not worth retrying. A 200 answer mmq cannot read is a retryable unparseable error.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from mmq.errors import RETRYABLE_STATUSES as RETRYABLE_HTTP
from mmq.errors import ProviderError, parse_retry_after, unparseable

RETRYABLE_GOOGLE_STATUSES = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"})
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")


def unparseable_body(body: Any) -> ProviderError:
    return unparseable("gemini", body)


def retry_delay_s(details: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo entry ("12s", "1.5s", or {seconds, nanos})."""
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or detail.get("@type") != _RETRY_INFO:
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and (match := _DURATION.match(delay)):
            return float(match[1])
        if isinstance(delay, dict):
            return float(delay.get("seconds") or 0) + float(delay.get("nanos") or 0) / 1e9
    return None


def _daily_quota(details: Any) -> bool:
    # a per-day quota will not clear within any retry budget: fail (or fall back) now
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == _QUOTA_FAILURE:
            for violation in detail.get("violations") or []:
                if isinstance(violation, dict) and "PerDay" in str(violation.get("quotaId", "")):
                    return True
    return False


def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    """Google's {"error": {"code", "message", "status", "details"}} (or any non-JSON body)."""
    message, status_name, details = resp.reason_phrase or "error", None, None
    try:
        body = resp.json()
        if isinstance(body, list) and body:  # some Google front ends wrap the error in a list
            body = body[0]
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            status_name = err.get("status") if isinstance(err.get("status"), str) else None
            details = err.get("details")
    except ValueError:
        message = resp.text[:300].strip() or message
    retryable = resp.status_code in RETRYABLE_HTTP or status_name in RETRYABLE_GOOGLE_STATUSES
    if _daily_quota(details):
        retryable, message = False, message + " (daily quota: retrying today will not help)"
    retry_after = parse_retry_after(resp.headers)
    if retry_after is None:
        retry_after = retry_delay_s(details)
    return ProviderError(
        message,
        status=resp.status_code,
        code=status_name,
        retryable=retryable,
        retry_after_s=retry_after,
        provider=provider,
    )
