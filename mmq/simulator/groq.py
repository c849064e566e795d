"""The simulator's Groq dialect: OpenAI-compatible vision chat and Whisper audio under /openai/v1.

Routes (built by `groq_routes()`, each wrapped in guard.guarded like the OpenAI routes):
    POST /openai/v1/chat/completions
    POST /openai/v1/audio/transcriptions
    POST /openai/v1/audio/translations
The paths are shared with Azure's v1 form (simulator/azure.py): requests with an `api-key` header or an
azure Host go there, every other one comes here. Auth is `Authorization: Bearer <key>` (any key works).

The OpenAI handlers do the work; this module adds Groq's rules first (reference
../shared/reference/providers.md §7.3, chat limits from pg:console.groq.com/docs/vision):
- audio: model whisper-large-v3 or whisper-large-v3-turbo (another: 404 model_not_found), translations
  only with whisper-large-v3, response_format json | text | verbose_json (no srt/vtt),
  timestamp_granularities[] only with verbose_json;
- chat: at most 5 images, n = 1, and a request holding base64 images at most 4 MB (413).
Errors are OpenAI-style {"error": {"message", "type", "code"}} without null fields; a missing key is
401 "Invalid API Key". A 429 keeps retry-after and the x-ratelimit-* headers (Groq's reset values are Go
durations like "2m59.56s"), not OpenAI's retry-after-ms.
"""

from __future__ import annotations

import json

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from mmq.simulator.audio import transcriptions, translations
from mmq.simulator.azure import DialectRoute, is_azure
from mmq.simulator.chat import chat_completions
from mmq.simulator.errors import ApiError, bad_request, json_response
from mmq.simulator.guard import Handler, guarded
from mmq.simulator.parsing import read_json

TRANSCRIPTION_MODELS = frozenset({"whisper-large-v3", "whisper-large-v3-turbo"})
TRANSLATION_MODELS = frozenset({"whisper-large-v3"})
RESPONSE_FORMATS = ("json", "text", "verbose_json")
MAX_IMAGES = 5
MAX_BASE64_REQUEST = 4 * 1024 * 1024


# -------------------------------------------------------------------------------------------- rules
def _model_error(model: str) -> ApiError:
    return ApiError(
        404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
    )


def _check_audio(form: FormData, translate: bool) -> None:
    model = form.get("model")
    if isinstance(model, str) and model:  # a missing model is the OpenAI handler's error
        if model not in TRANSCRIPTION_MODELS:
            raise _model_error(model)
        if translate and model not in TRANSLATION_MODELS:
            raise bad_request(
                f"`{model}` does not support translations; use {', '.join(sorted(TRANSLATION_MODELS))}.",
                "model",
                "invalid_value",
            )
    fmt = form.get("response_format")
    if isinstance(fmt, str) and fmt not in RESPONSE_FORMATS:
        raise bad_request(
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {fmt!r}.",
            "response_format",
            "invalid_value",
        )
    if form.getlist("timestamp_granularities[]") and fmt != "verbose_json":
        raise bad_request(
            "timestamp_granularities requires response_format=verbose_json.",
            "timestamp_granularities",
            "invalid_value",
        )


def _audio(translate: bool) -> Handler:
    handler = translations if translate else transcriptions

    async def endpoint(request: Request) -> Response:
        await request.body()  # cached, so the handler can parse the same form again on failure
        try:
            form = await request.form(max_files=1, max_fields=100)
        except (MultiPartException, HTTPException) as exc:
            detail = exc.message if isinstance(exc, MultiPartException) else exc.detail
            raise bad_request(f"Could not parse multipart form: {detail}") from None
        try:
            _check_audio(form, translate)
        except ApiError:
            await form.close()
            raise
        return await handler(request)  # reads the form parsed above

    return endpoint


def _image_count(messages: object) -> int:
    count = 0
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            count += isinstance(part, dict) and part.get("type") == "image_url"
    return count


async def chat(request: Request) -> Response:
    raw = await request.body()
    body = await read_json(request)
    if body.get("n") not in (None, 1):
        raise bad_request("'n' : number must be at most 1", "n", "invalid_value")
    images = _image_count(body.get("messages"))
    if images > MAX_IMAGES:
        raise bad_request(
            f"Too many images provided. This model supports up to {MAX_IMAGES} images", "messages"
        )
    if images and len(raw) > MAX_BASE64_REQUEST and b";base64," in raw:
        raise ApiError(413, "Request Entity Too Large", code="request_too_large")
    return await chat_completions(request)


# ------------------------------------------------------------------------------------------ dialect
def _to_groq(response: Response) -> Response:
    if response.status_code < 400:
        return response
    try:
        error = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):
        return response
    if not isinstance(error, dict):
        return response
    if response.status_code == 401:
        error = {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}
    drop = ("content-length", "content-type", "retry-after-ms")
    headers = {k: v for k, v in response.headers.items() if k not in drop}
    return json_response(
        {"error": {k: v for k, v in error.items() if v is not None}}, response.status_code, headers
    )


def _dialect(endpoint: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        return _to_groq(await endpoint(request))

    return wrapper


_ROUTES: dict[str, Handler] = {
    "/openai/v1/chat/completions": chat,
    "/openai/v1/audio/transcriptions": _audio(translate=False),
    "/openai/v1/audio/translations": _audio(translate=True),
}


def _is_groq(scope: Scope) -> bool:
    return not is_azure(scope)


def groq_routes() -> list[Route]:
    """The Groq-dialect routes, guarded like the OpenAI ones (stats count each path)."""
    return [
        DialectRoute(path, _dialect(guarded(handler, path)), methods=["POST"], accept=_is_groq)
        for path, handler in _ROUTES.items()
    ]
