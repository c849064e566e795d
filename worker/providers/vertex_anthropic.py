"""Claude on Vertex AI (provider "vertex-anthropic"): Anthropic's Messages API, served by Google.

Why its own adapter: Vertex takes the very Messages body the direct API takes, but in another envelope,
so a config naming `anthropic` with a Vertex base URL would be sent to the wrong path with the wrong
credential. The translation is not repeated here: requests, answers and media rules are
worker.providers.anthropic's (`to_native`, `from_native`, AnthropicAdapter.parse). What differs, per
Anthropic's own Vertex client (anthropic-sdk-python `lib/vertex`) and ../shared/reference/providers.md
§3 and §4.1:

- `POST {base}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`:
  the model travels in the URL (`claude-sonnet-4-5@20250929`), never in the body; streaming
  (`:streamRawPredict`) is not used by batch jobs;
- the body is the Messages body without `model`, with `"anthropic_version": "vertex-2023-10-16"` (the
  version is a body field here, not the `anthropic-version` header);
- place and credential as for Gemini on Vertex (worker.providers.gemini.auth): `Target.api_key` is an
  OAuth2 access token sent as `Authorization: Bearer`, the project comes from the
  `x-mmq-vertex-project` target header and the region from `x-mmq-vertex-location` or a
  `{region}-aiplatform.googleapis.com` base URL (never guessed: it decides where data is processed);
- errors come in two shapes: Anthropic's `{"type": "error", "error": {...}}` for what the model refuses,
  Google's `{"error": {"code", "message", "status"}}` for what Vertex's front end refuses (auth, quota,
  an unknown model); each is read by its own module's reader;
- media: the worker inlines http(s) images and PDFs as base64 (remote_urls False), because whether Claude
  on Vertex fetches URL sources is not verified; gs:// objects are Gemini-on-Vertex only.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import httpx

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from worker.providers import anthropic
from worker.providers.anthropic import AnthropicAdapter
from worker.providers.base import AudioInput, Target, WireRequest
from worker.providers.gemini import auth as vertex_auth
from worker.providers.gemini import errors as google_errors

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
PUBLISHER = "anthropic"
METHOD = "rawPredict"
# a model may be given as the resource name Vertex's docs show
_MODEL_PREFIX = "publishers/anthropic/models/"
# Vertex model ids carry a version after "@" (claude-sonnet-4-5@20250929); nothing that needs quoting
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:@[A-Za-z0-9._-]+)?$")


def model_id(model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise InvalidJob("model is required (a Claude model id on Vertex, e.g. claude-sonnet-4-5@20250929)")
    model = model.removeprefix(_MODEL_PREFIX)
    if not _MODEL_ID.match(model):
        raise InvalidJob(f"model {model!r} is not a Vertex model id (e.g. claude-sonnet-4-5@20250929)")
    return model


def to_native(request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """OpenAI chat request -> ("{model}:rawPredict", body): the Anthropic translation, its `model` moved
    to the URL and Vertex's anthropic_version added. Pure; raises InvalidJob."""
    body = anthropic.to_native(request)
    model = model_id(body.pop("model", None))
    return f"{model}:{METHOD}", {"anthropic_version": VERTEX_ANTHROPIC_VERSION, **body}


class VertexAnthropicAdapter(AnthropicAdapter):
    name = "vertex-anthropic"
    kinds = frozenset({Kind.chat})
    default_base_url = None  # every customer's region is their own: never guessed
    media = replace(AnthropicAdapter.media, remote_urls=False)

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> WireRequest:
        if kind is not Kind.chat:
            raise InvalidJob(f"the {self.name} adapter does chat only, not {kind}", type="routing_error")
        suffix, body = to_native(request)
        url, headers = vertex_auth.endpoint(target, suffix, True, self.name, publisher=PUBLISHER)
        return WireRequest(url, headers, json=body)

    def error(self, response: httpx.Response) -> ProviderError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("type") == "error":
            return anthropic.error_from_response(response, self.name)  # the model's own refusal
        return google_errors.error_from_response(response, self.name)  # Vertex's front end
