"""The Bedrock dialect's errors: Bedrock's error shape, and the guard's answers re-rendered in it.

Every error is Bedrock's: body {"message": ...}, header `x-amzn-ErrorType: <Exception>`, plus
`x-amzn-RequestId`. The guard's own answers (rate limit, injected faults) are re-rendered that way; a
scripted fault whose `code` is a Bedrock exception name keeps that name. Bedrock documents no Retry-After,
so the re-rendered answers drop it. Kept apart so that auth, Converse and InvokeModel raise the same errors.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.errors import NativeError, json_response
from mmq.simulator.guard import Handler

EXCEPTION_BY_STATUS: dict[int, str] = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
KNOWN_EXCEPTIONS = frozenset(
    {
        *EXCEPTION_BY_STATUS.values(),
        "ServiceQuotaExceededException",
        "ModelNotReadyException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
    }
)
DEFAULT_MESSAGES: dict[str, str] = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ServiceUnavailableException": "The service is temporarily unable to handle the request.",
    "InternalServerException": "The server encountered an internal error.",
}


class BedrockError(NativeError):
    """Raised in a handler; rendered as Bedrock's error: {"message"} + x-amzn-ErrorType."""

    def __init__(
        self, status: int, name: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        headers = {
            **self.headers,
            "x-amzn-errortype": f"{self.name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-requestid": str(uuid.uuid4()),
        }
        return json_response({"message": self.message}, self.status, headers)


def _invalid(message: str) -> BedrockError:
    return BedrockError(400, "ValidationException", message)


def _constraint(where: str, constraint: str) -> BedrockError:
    return _invalid(
        f"1 validation error detected: Value at '{where}' failed to satisfy constraint: {constraint}"
    )


def _malformed(message: str) -> BedrockError:
    # InvokeModel bodies are the model's; Bedrock words their errors this way
    return _invalid(f"Malformed input request: {message}, please reformat your input and try again.")


def _forbidden(name: str, message: str) -> BedrockError:
    return BedrockError(403, name, message)


def _to_bedrock(response: Response) -> Response:
    """Re-render an OpenAI-shaped error from the guard in Bedrock's shape."""
    if "x-amzn-errortype" in response.headers:
        return response
    try:
        error = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):
        error = {}
    status = response.status_code
    code = error.get("code") if isinstance(error, dict) else None
    name = (
        code
        if code in KNOWN_EXCEPTIONS
        else EXCEPTION_BY_STATUS.get(
            status, "InternalServerException" if status >= 500 else "ValidationException"
        )
    )
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    message = DEFAULT_MESSAGES.get(name, "") + (f" ({message})" if message else "")
    # Bedrock documents no Retry-After: back-off is the client's business
    drop = ("content-length", "content-type", "retry-after", "retry-after-ms")
    headers = {k: v for k, v in response.headers.items() if k not in drop}
    return BedrockError(status, name, message.strip(), headers).response()


def _dialect(endpoint: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        return _to_bedrock(response) if response.status_code >= 400 else response

    return wrapper
