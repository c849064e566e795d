"""Google Gemini, on AI Studio (the Developer API) and on Vertex AI: vision chat and Imagen images.

Takes OpenAI-shaped requests and speaks Google's JSON (camelCase, as the google-genai SDK sends it; the
REST docs' snake_case forms are accepted by Google too). Reference: ../shared/reference/providers.md §4.

A folder per provider, a file per capability (as Portkey's gateway lays out its providers):
- this module: the adapter (provider "gemini" for AI Studio, "vertex" for Vertex AI), its kinds and
  media rules, the pure `to_native` / `from_native` that dispatch a job by kind, and the protocol
  methods (`translate` / `parse` / `error`) around them; the shared send path sends, one call a job;
- auth.py: AI Studio (x-goog-api-key) vs Vertex (OAuth2 bearer, project / location in the URL);
- chat.py: generateContent request / response translation (and the media limits the adapter declares);
  its parameters are a parameter-map table (worker.providers.params);
- images.py: Imagen `predict` bodies and answers (a parameter-map table too);
- errors.py: Google error answers -> ProviderError, retry delays and daily quotas.

`to_native` / `from_native` are pure (no I/O) so golden tests can pin the exact wire bodies.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import httpx

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest
from worker.providers.gemini import auth
from worker.providers.gemini.chat import (
    DOCUMENT_TYPES,
    IMAGE_TYPES,
    MAX_IMAGES,
    MAX_INLINE_IMAGE_BYTES,
    chat_body,
    chat_response,
)
from worker.providers.gemini.errors import error_from_response, unparseable_body
from worker.providers.gemini.images import (
    DEFAULT_IMAGE_MODEL,
    IMAGEN_MODEL_PREFIX,
    image_body,
    image_response,
)
from worker.providers.protocol import WireAdapter

# a model may be given as a bare id or as the resource name the REST docs show
_MODEL_PREFIXES = ("publishers/google/models/", "models/")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ======================================================================================= request
def _model_id(model: Any) -> str:
    if not isinstance(model, str):
        raise InvalidJob("model is required")
    for prefix in _MODEL_PREFIXES:
        if model.startswith(prefix):
            model = model[len(prefix) :]
    if not _MODEL_ID.match(model):
        raise InvalidJob(f"model {model!r} is not a Gemini model id (e.g. gemini-2.5-flash)")
    return model


def to_native(kind: Kind, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """OpenAI-shaped request -> ("{model}:{method}", Gemini JSON body). Raises InvalidJob."""
    if kind is Kind.chat:
        return f"{_model_id(request.get('model'))}:generateContent", chat_body(request)
    if kind is Kind.image:
        model = _model_id(request.get("model") or DEFAULT_IMAGE_MODEL)
        if not model.startswith(IMAGEN_MODEL_PREFIX):
            raise InvalidJob(f"image model {model!r}: the gemini adapter generates images with Imagen models")
        return f"{model}:predict", image_body(request)
    raise InvalidJob(f"the gemini adapter does not handle {kind} jobs")


# ======================================================================================= responses
def from_native(kind: Kind, body: Any, request: dict[str, Any]) -> dict[str, Any]:
    """A 200 Gemini/Imagen body -> the OpenAI response shape. Raises ProviderError for blocked prompts
    (not retryable) and unusable bodies (retryable)."""
    if not isinstance(body, dict):
        raise unparseable_body(body)
    if kind is Kind.chat:
        return chat_response(body, request)
    if kind is Kind.image:
        return image_response(body)
    raise InvalidJob(f"the gemini adapter does not handle {kind} jobs")


# ========================================================================================= adapter
class GeminiAdapter(WireAdapter):
    kinds = frozenset({Kind.chat, Kind.image})
    media = MediaRules(
        image_types=IMAGE_TYPES,
        max_image_bytes=MAX_INLINE_IMAGE_BYTES,
        max_images=MAX_IMAGES,
        document_types=DOCUMENT_TYPES,
        remote_urls=False,
    )

    def __init__(self, name: str = "gemini", vertex: bool = False) -> None:
        self.name = name
        self.vertex = vertex
        # gs:// objects: Vertex reads them from Cloud Storage (fileData.fileUri); AI Studio does not
        self.media = replace(GeminiAdapter.media, gcs_uris=vertex)
        # Vertex's host names its region, which decides where data is processed: never guessed
        self.default_base_url = None if vertex else "https://generativelanguage.googleapis.com"

    def endpoint(self, target: Target, suffix: str) -> tuple[str, dict[str, str]]:
        """URL and headers for "{model}:{method}"; the Vertex routing headers are consumed here."""
        return auth.endpoint(target, suffix, self.vertex, self.name)

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> WireRequest:
        suffix, body = to_native(kind, request)
        url, headers = self.endpoint(target, suffix)
        return WireRequest(url, headers, json=body)

    def error(self, response: httpx.Response) -> ProviderError:
        return error_from_response(response, self.name)

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        out = from_native(kind, body, request)
        return ProviderResponse(
            response.status_code,
            body=out,
            request_id=response.headers.get("x-request-id") or body.get("responseId"),
            usage=out.get("usage"),
        )
