"""AWS Bedrock errors: an error answer -> ProviderError, and whether it is worth another try.

Bedrock's `x-amzn-ErrorType` header + {"message"} body -> ProviderError with the exception name as code;
ERRORS says which are worth a retry. A 200 answer mmq cannot read is a retryable unparseable error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from mmq.errors import (
    RETRYABLE_STATUSES,
    ProviderError,
    is_retryable,
    parse_retry_after,
    unparseable,
)

# exception name -> worth another try. Unknown names fall back to the HTTP status.
ERRORS: dict[str, bool] = {
    "ThrottlingException": True,
    "ModelNotReadyException": True,
    "ServiceUnavailableException": True,
    "InternalServerException": True,
    "ModelTimeoutException": True,
    "ServiceQuotaExceededException": True,  # a 400 that clears later (reference §5.3)
    "ValidationException": False,
    "AccessDeniedException": False,
    "ResourceNotFoundException": False,
    "UnrecognizedClientException": False,
    "InvalidSignatureException": False,
    "IncompleteSignatureException": False,
    "MissingAuthenticationTokenException": False,
    "ExpiredTokenException": False,
    "ModelErrorException": False,  # unless the model's own status says otherwise, see error_from_response
}
_CONTENT_FILTER_HINT = "content filters"  # Titan's 400 for a blocked prompt


def unparseable_body(body: Any) -> ProviderError:
    return unparseable("bedrock", body)


def error_name(resp: httpx.Response, body: Any) -> str | None:
    """The exception name from x-amzn-ErrorType ("Name:uri") or the body's __type ("ns#Name")."""
    header = resp.headers.get("x-amzn-errortype")
    if header:
        return header.split(":", 1)[0].strip() or None
    if isinstance(body, Mapping) and isinstance(body.get("__type"), str):
        return body["__type"].rsplit("#", 1)[-1] or None
    return None


def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    message = resp.reason_phrase or "error"
    try:
        body = resp.json()
    except ValueError:
        body = None
        message = resp.text[:300].strip() or message
    if isinstance(body, Mapping):
        message = str(body.get("message") or body.get("Message") or message)
    name = error_name(resp, body)
    status = resp.status_code
    if name in ERRORS:
        retryable = ERRORS[name]
    else:
        retryable = is_retryable(status, None)
    if name == "ModelErrorException" and isinstance(body, Mapping):
        # the model's own failure: as retryable as the status the model gave
        retryable = body.get("originalStatusCode") in RETRYABLE_STATUSES
    code = name
    if name == "ValidationException" and _CONTENT_FILTER_HINT in message.lower():
        code = "content_filter"
    return ProviderError(
        message,
        status=status,
        code=code,
        retryable=retryable,
        retry_after_s=parse_retry_after(resp.headers),
        provider=provider,
    )
