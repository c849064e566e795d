"""The simulator's Claude-on-Vertex dialect: Anthropic's Messages API behind Vertex AI's rawPredict.

Routes (built by `vertex_anthropic_routes()`, each guarded like every API route):
    POST /v1[beta1]/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict

Why a dialect of its own: Claude on Vertex takes the Messages body in Vertex's envelope (Anthropic's own
Vertex client, anthropic-sdk-python `lib/vertex`, is the reference), so an adapter that sent the direct
API's request there must fail here as it would at Google. What is checked:
- `Authorization: Bearer <OAuth2 access token>` (any token works), read by the guard's bearer reader;
- the body carries `"anthropic_version": "vertex-2023-10-16"` and no `model` (the model is the URL's,
  and it names the answer's `model`); the rest of the body is checked and answered by the Anthropic
  dialect itself (mmq/simulator/anthropic.py `answer`), so the two never drift apart.
Errors come in the two shapes Vertex gives: what the model refuses keeps Anthropic's
{"type": "error", "error": {...}} body; what Vertex's front end refuses (auth, the rate limiter, injected
faults) is Google's {"error": {"code", "message", "status"}}, rendered as the Gemini dialect does.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.anthropic import answer, invalid, read_body, render_error
from mmq.simulator.errors import ApiError
from mmq.simulator.gemini.errors import to_google
from mmq.simulator.guard import Handler, bearer_key, guarded

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
PATH = "/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict"
PREFIXES = ("/v1", "/v1beta1")


async def raw_predict(request: Request) -> Response:
    try:
        body = await read_body(request)
        version = body.pop("anthropic_version", None)
        if version is None:
            raise invalid("anthropic_version: Field required")
        if version != VERTEX_ANTHROPIC_VERSION:
            raise invalid(f"anthropic_version: Input should be '{VERTEX_ANTHROPIC_VERSION}'")
        if "model" in body:
            raise invalid("model: Extra inputs are not permitted (on Vertex AI the model is in the URL)")
        return await answer(request, body, request.path_params["model"])
    except ApiError as exc:
        return render_error(exc)  # the model's refusal: Anthropic's shape


def _is_anthropic_error(response: Response) -> bool:
    try:
        body = json.loads(bytes(response.body))
    except (ValueError, TypeError):
        return False
    return isinstance(body, dict) and body.get("type") == "error"


def _front_end_errors(endpoint: Handler) -> Handler:
    """The guard's own answers (auth, rate limit, faults) in Google's shape; the model's stay Anthropic's."""

    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        if response.status_code < 400 or _is_anthropic_error(response):
            return response
        return to_google(response, vertex=True)

    return wrapper


def vertex_anthropic_routes() -> list[Route]:
    """The Claude-on-Vertex routes, guarded with bearer auth (stats count each path template)."""
    return [
        Route(
            prefix + PATH,
            _front_end_errors(guarded(raw_predict, prefix + PATH, key=bearer_key)),
            methods=["POST"],
        )
        for prefix in PREFIXES
    ]
