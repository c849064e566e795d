"""OpenAI-shaped errors on /v1: `{"error": {"message", "type", "param", "code"}}`, as the SDK expects.

Routes raise OpenAIError; the handlers also turn FastAPI's validation errors, HTTP errors and crashes on
/v1 paths into that shape (a validation error names the first bad field as `param`). Other paths keep
FastAPI's and Starlette's own answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException


class OpenAIError(Exception):
    """An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def not_found(what: str, ident: str, param: str | None = None) -> OpenAIError:
    return OpenAIError(404, f"No such {what} object: {ident}", param=param)


def is_v1(request: Request) -> bool:
    return request.url.path == "/v1" or request.url.path.startswith("/v1/")


async def on_openai_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIError)
    return exc.response()


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not is_v1(request):
        return await request_validation_exception_handler(request, exc)
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'." if param else "A JSON request body is required."
        raise_code: str | None = "missing_required_parameter"
    elif first.get("type") == "json_invalid":
        message, raise_code = "We could not parse the JSON body of your request.", None
    else:
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        message, raise_code = (f"Invalid '{param}': {msg}" if param else msg), "invalid_value"
    return OpenAIError(400, message, param=param, code=raise_code).response()


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not is_v1(request):
        return await http_exception_handler(request, exc)
    kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    return OpenAIError(exc.status_code, str(exc.detail), type=kind, headers=exc.headers).response()


async def on_crash(request: Request, exc: Exception) -> Response:
    if not is_v1(request):
        return PlainTextResponse("Internal Server Error", status_code=500)  # Starlette's own answer
    message = "The server had an error while processing your request."
    return OpenAIError(500, message, type="server_error").response()
