"""The simulator's Azure OpenAI dialect: the OpenAI handlers behind Azure's URLs, auth and errors.

Routes (built by `azure_routes()`, each wrapped in guard.guarded like the OpenAI routes):
    POST /openai/deployments/{deployment}/{op}?api-version=YYYY-MM-DD[-preview]     deployments form
    POST /openai/v1/{op}[?api-version=preview|latest]                               v1 form
    op: chat/completions, images/generations, audio/speech, audio/transcriptions, audio/translations
The /openai/v1 paths are shared with the Groq dialect (simulator/groq.py): a request is Azure's when it
carries an `api-key` header or its Host names azure (my-res.openai.azure.com); any other goes to Groq.

Auth: `api-key: <key>` or `Authorization: Bearer <Entra token>`; any value works and becomes the guard's
rate-limit identity.

The work is done by the OpenAI handlers (chat.py, images.py, audio.py). What is Azure's here
(reference ../shared/reference/providers.md §2):
- deployments form: api-version is required (missing: 404 "Resource not found"; not a dated version:
  400 "API version not supported"); a body without `model` gets the deployment name, as Azure routes
  by the path. v1 form: no dated api-version.
- a chat or image prompt containing "mmq-sim:block" is refused with HTTP 400 code "content_filter"
  and an innererror naming the filtered category; chat answers carry `prompt_filter_results` and
  `choices[].content_filter_results`.
- 401, 429 and scripted content_filter faults come in Azure's {"error": {"code", "message"}} shape; a
  429 says "Please retry after N seconds" and keeps retry-after (and retry-after-ms, UNVERIFIED for
  Azure) but of the x-ratelimit-* headers only the remaining ones. Validation errors from the OpenAI
  handlers keep OpenAI's shape, as Azure passes the model's own errors through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Message, Scope

from mmq.simulator.audio import speech, transcriptions, translations
from mmq.simulator.chat import chat_completions
from mmq.simulator.errors import ApiError, json_response
from mmq.simulator.gemini import BLOCK_TRIGGER
from mmq.simulator.guard import Handler, bearer_key, guarded
from mmq.simulator.images import image_generations

# op -> (OpenAI handler, operation name used in Azure's 429 wording)
_OPS: dict[str, tuple[Handler, str]] = {
    "chat/completions": (chat_completions, "ChatCompletions_Create"),
    "images/generations": (image_generations, "ImageGenerations_Create"),
    "audio/speech": (speech, "AudioSpeech_Create"),
    "audio/transcriptions": (transcriptions, "AudioTranscriptions_Create"),
    "audio/translations": (translations, "AudioTranslations_Create"),
}
_JSON_OPS = frozenset({"chat/completions", "images/generations", "audio/speech"})
_FILTERED_OPS = frozenset({"chat/completions", "images/generations"})  # where the prompt filter runs
DATED_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(?:-preview)?$")
V1_VERSIONS = frozenset({"v1", "preview", "latest"})
FILTER_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
BLOCKED_CATEGORY = "violence"
ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource. "
    "(mmq simulator: any api-key works)"
)
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')
# headers Azure does not send (reference §2 lists retry-after and the x-ratelimit-remaining-* ones)
_NOT_AZURE = ("x-ratelimit-limit-requests", "x-ratelimit-reset-requests")


class AzureError(ApiError):
    """Rendered as Azure's own {"error": {"code", "message", ...}}, with no OpenAI `type`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, code=code, headers=headers)
        self.extra = extra or {}

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def is_azure(scope: Scope) -> bool:
    """Whether a request on the shared /openai/v1 paths is meant for Azure rather than Groq."""
    for name, value in scope.get("headers", ()):
        if name == b"api-key" or (name == b"host" and b"azure" in value.lower()):
            return True
    return False


class DialectRoute(Route):
    """A Route that matches only requests `accept` says are its dialect: two dialects share a path."""

    def __init__(
        self, path: str, endpoint: Handler, *, methods: list[str], accept: Callable[[Scope], bool]
    ) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.accept = accept

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and not self.accept(scope):
            return Match.NONE, {}
        return match, child


def content_filter_error(headers: dict[str, str] | None = None) -> AzureError:
    verdicts = {
        name: {
            "filtered": name == BLOCKED_CATEGORY,
            "severity": "medium" if name == BLOCKED_CATEGORY else "safe",
        }
        for name in FILTER_CATEGORIES
    }
    return AzureError(
        400,
        "content_filter",
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
        f"Please modify your prompt and retry. (mmq simulator: the prompt contains {BLOCK_TRIGGER})",
        extra={
            "param": "prompt",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": verdicts},
        },
        headers=headers,
    )


# ------------------------------------------------------------------------------------ request side
def _check_version(request: Request, deployments: bool) -> None:
    version = request.query_params.get("api-version")
    if deployments and not version:
        raise AzureError(404, "404", "Resource not found")
    if (deployments and not DATED_VERSION.match(version or "")) or (
        not deployments and version is not None and version not in V1_VERSIONS
    ):
        raise AzureError(400, "BadRequest", "API version not supported")


def _with_body(request: Request, body: bytes) -> Request:
    """The same request with another body (the handlers read it from the ASGI receive channel)."""
    scope = dict(request.scope)
    scope["headers"] = [
        *((k, v) for k, v in request.scope["headers"] if k != b"content-length"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def _json_with_model(request: Request, raw: bytes, deployment: str) -> Request:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return request  # the handler words the bad-JSON error
    if not isinstance(body, dict) or body.get("model"):
        return request
    body["model"] = deployment
    return _with_body(request, json.dumps(body).encode())


async def _form_with_model(request: Request, deployment: str) -> Request:
    match = _BOUNDARY.search(request.headers.get("content-type", ""))
    raw = await request.body()
    if match is None or b'name="model"' in raw:
        return request
    boundary = match[1].encode("latin-1")
    end = raw.rfind(b"--" + boundary + b"--")
    if end < 0:
        return request
    part = (
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\n'
        + deployment.encode()
        + b"\r\n"
    )
    return _with_body(request, raw[:end] + part + raw[end:])


def _with_filter_results(response: Response) -> Response:
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        return response
    safe = {name: {"filtered": False, "severity": "safe"} for name in FILTER_CATEGORIES}
    body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": safe}]
    for choice in body.get("choices") or []:
        choice["content_filter_results"] = safe
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    return json_response(body, response.status_code, headers)


def _operation(op: str, deployments: bool) -> Handler:
    handler = _OPS[op][0]

    async def endpoint(request: Request) -> Response:
        _check_version(request, deployments)
        deployment = request.path_params.get("deployment", "")
        if op in _JSON_OPS:
            raw = await request.body()
            if op in _FILTERED_OPS and BLOCK_TRIGGER.encode() in raw:
                raise content_filter_error()
            if deployments:
                request = _json_with_model(request, raw, deployment)
        elif deployments:
            request = await _form_with_model(request, deployment)
        response = await handler(request)
        if op == "chat/completions" and response.status_code == 200:
            return _with_filter_results(response)
        return response

    return endpoint


# ----------------------------------------------------------------------------------- response side
def _to_azure(response: Response, op: str, version: str) -> Response:
    """Azure's headers, and the guard's OpenAI-shaped 401/429/content_filter re-rendered as Azure's."""
    for name in _NOT_AZURE:
        if name in response.headers:
            del response.headers[name]
    if response.status_code < 400:
        return response
    try:
        error = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):
        return response
    if not isinstance(error, dict) or "type" not in error:
        return response  # already Azure's
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    status = response.status_code
    if error.get("code") == "content_filter":
        return content_filter_error(headers).response()
    if status == 401:
        return AzureError(401, "401", ACCESS_DENIED, headers=headers).response()
    if status == 429:
        wait = headers.get("retry-after")
        message = (
            f"Requests to the {_OPS[op][1]} Operation under Azure OpenAI API version {version} have "
            "exceeded call rate limit of your current OpenAI S0 pricing tier."
            + (f" Please retry after {wait} seconds." if wait else "")  # no header, no promise
            + " (mmq simulator)"
        )
        return AzureError(429, "429", message, headers=headers).response()
    return response


def azure_key(request: Request) -> str:
    """The guard's key reader: the api-key header, unless a bearer (Entra) token is sent as well."""
    key = request.headers.get("api-key", "").strip()
    return key if key and "authorization" not in request.headers else bearer_key(request)


def _dialect(endpoint: Handler, op: str) -> Handler:
    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        return _to_azure(response, op, request.query_params.get("api-version") or "v1")

    return wrapper


def azure_routes() -> list[Route]:
    """The Azure-dialect routes, guarded like the OpenAI ones (stats count each path template)."""
    routes: list[Route] = []
    for op in _OPS:
        path = f"/openai/deployments/{{deployment}}/{op}"
        endpoint = _dialect(guarded(_operation(op, True), path, key=azure_key), op)
        routes.append(Route(path, endpoint, methods=["POST"]))
        path = f"/openai/v1/{op}"
        endpoint = _dialect(guarded(_operation(op, False), f"{path} (azure)", key=azure_key), op)
        routes.append(DialectRoute(path, endpoint, methods=["POST"], accept=is_azure))
    return routes
