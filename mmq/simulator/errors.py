"""Errors that render themselves (OpenAI's shape and each dialect's) and a lean JSON response helper."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping

from starlette.responses import Response


def json_response(obj: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    # stdlib json with compact separators: cheaper than JSONResponse's defaults at high request rates
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers=headers, media_type="application/json")


class NativeError(Exception, ABC):
    """An error that renders itself in its dialect's shape: guard.guarded answers with `response()`
    (an ApiError goes through the route's `render` when it has one)."""

    @abstractmethod
    def response(self) -> Response: ...


class ApiError(NativeError):
    """Raised anywhere in a handler; rendered as {"error": {...}} like OpenAI does."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return json_response(self.body(), self.status, self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)
