"""AWS Bedrock: vision chat (with documents) through Converse, image generation through InvokeModel.

Takes OpenAI-shaped requests and speaks Bedrock's rest-json (blobs are base64 strings in the body).
Reference: ../shared/reference/providers.md §5 and the cheat-sheet in §9.

A folder per provider, a file per capability (as Portkey's gateway lays out its providers), so a change to
one capability or to the auth reads and reviews on its own:
- this module: the adapter (kinds, media rules, default base URL), the pure `to_native` /
  `from_native` that dispatch a job by kind, and the protocol methods around them: `translate` gives
  one wire request per body (the one-image-per-call families take n), `sign` signs each just before
  the shared send path sends it, `parse` and `error` read the answers;
- auth.py: endpoint and region of a target, SigV4 signing and bearer API keys;
- chat.py: Converse request / response translation (and the media limits the adapter declares); its
  parameters are a parameter-map table (worker.providers.params);
- images.py: InvokeModel image bodies per model family (Titan / Nova Canvas, Stability SD3, SDXL), a
  parameter-map table each;
- errors.py: Bedrock error answers -> ProviderError and what is worth a retry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest
from worker.providers.bedrock import auth
from worker.providers.bedrock.chat import (
    DOCUMENT_FORMATS,
    IMAGE_FORMATS,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_SIDE,
    MAX_IMAGES,
    chat_body,
    chat_response,
)
from worker.providers.bedrock.errors import error_from_response, unparseable_body
from worker.providers.bedrock.images import IMAGE_BODIES, IMAGE_FAMILIES, image_family, images_response
from worker.providers.protocol import WireAdapter


# ======================================================================================= request
@dataclass(frozen=True)
class NativeRequest:
    """One Bedrock operation: POST {base}/model/{model_id}/{operation} once per body."""

    operation: str  # "converse" | "invoke"
    model_id: str
    bodies: list[dict[str, Any]]
    family: str | None = None  # the image body family for invoke


def _model_id(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise InvalidJob("model is required (a Bedrock model id, inference profile or ARN)")
    return model.strip()


def to_native(kind: Kind, request: dict[str, Any]) -> NativeRequest:
    """OpenAI-shaped request -> the Bedrock operation and body(ies). Pure; raises InvalidJob."""
    model_id = _model_id(request.get("model"))
    if kind is Kind.chat:
        return NativeRequest("converse", model_id, [chat_body(request)])
    if kind is Kind.image:
        if not isinstance(request.get("prompt"), str) or not request["prompt"]:
            raise InvalidJob("prompt is required")
        family = image_family(model_id)
        if family is None:
            raise InvalidJob(
                f"image model {model_id!r}: the bedrock adapter knows the families {sorted(IMAGE_FAMILIES)}"
            )
        return NativeRequest("invoke", model_id, IMAGE_BODIES[family](request), family)
    raise InvalidJob(f"the bedrock adapter does not handle {kind} jobs", type="routing_error")


# ====================================================================================== responses
def from_native(
    kind: Kind,
    bodies: list[Any],
    request: dict[str, Any],
    family: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """200 Bedrock answers -> the OpenAI response shape. Raises ProviderError (content filter: not retryable;
    unusable body: retryable)."""
    for body in bodies:
        if not isinstance(body, Mapping):
            raise unparseable_body(body)
    if kind is Kind.chat:
        return chat_response(bodies[0], request, request_id)
    if family is None:
        raise unparseable_body(bodies)
    return images_response(family, bodies)


# ======================================================================================== adapter
class BedrockAdapter(WireAdapter):
    name = "bedrock"
    kinds = frozenset({Kind.chat, Kind.image})
    media = MediaRules(
        image_types=frozenset(IMAGE_FORMATS),
        max_image_bytes=MAX_IMAGE_BYTES,
        max_image_side=MAX_IMAGE_SIDE,
        max_images=MAX_IMAGES,
        document_types=frozenset(DOCUMENT_FORMATS),
        remote_urls=False,
    )
    # a template: the router passes it as the base_url and base_url_for() fills in the region
    default_base_url = auth.DEFAULT_BASE_URL

    def region_for(self, target: Target) -> str:
        return auth.region_for(target)

    def base_url_for(self, target: Target) -> str:
        return auth.base_url_for(target)

    def endpoint(self, target: Target, model_id: str, operation: str) -> str:
        # the model id is percent-encoded once in the URL (":" -> %3A, "/" -> %2F); SigV4 encodes it again
        return f"{self.base_url_for(target)}/model/{quote(model_id, safe='')}/{operation}"

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> list[WireRequest]:
        native = to_native(kind, request)
        url = self.endpoint(target, native.model_id, native.operation)
        # one call per body, one after the other: one job never bursts several calls at once
        return [WireRequest(url, content=_dumps(payload)) for payload in native.bodies]

    def sign(self, target: Target, wire: WireRequest) -> WireRequest:
        # SigV4 covers the exact bytes and the moment they go out, so each call is signed just before it
        if wire.content is None:
            raise ValueError("a Bedrock wire request carries its JSON as bytes (content)")
        return replace(wire, headers=auth.request_headers(target, wire.url, wire.content, self.name))

    def error(self, response: httpx.Response) -> ProviderError:
        return error_from_response(response, self.name)

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        request_id = response.headers.get("x-amzn-requestid") or response.headers.get("x-request-id")
        family = image_family(_model_id(request.get("model"))) if kind is Kind.image else None
        out = from_native(kind, [body], request, family, request_id)
        return ProviderResponse(response.status_code, body=out, request_id=request_id, usage=out.get("usage"))


def _dumps(payload: dict[str, Any]) -> bytes:
    # the bytes that are signed are the bytes that are sent
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
