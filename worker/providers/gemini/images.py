"""Gemini / Vertex image generation with Imagen: OpenAI image requests <-> `{model}:predict`.

An OpenAI WxH size maps to the nearest Imagen aspect ratio, n to sampleCount, output_format to an output
MIME type (the PARAMS table, worker.providers.params); the answer's predictions become the OpenAI images
response {created, data: [{b64_json}]}.
Imagen answers 200 with no images when every image was filtered, which is reported as a blocked prompt.
"""

from __future__ import annotations

import math
import time
from typing import Any

from mmq.errors import InvalidJob, ProviderError
from worker.providers.gemini.errors import unparseable_body
from worker.providers.params import ParamTable, drop, map_params, rename

IMAGEN_MODEL_PREFIX = "imagen-"
DEFAULT_IMAGE_MODEL = "imagen-4.0-generate-001"  # model IDs are UNVERIFIED in the reference
IMAGEN_MAX_SAMPLES = 4  # sampleCount cap, UNVERIFIED in the reference
# Imagen aspect ratios (width / height); an OpenAI WxH size maps to the nearest one.
ASPECT_RATIOS: dict[str, float] = {"1:1": 1.0, "3:4": 3 / 4, "4:3": 4 / 3, "9:16": 9 / 16, "16:9": 16 / 9}
IMAGEN_MIME_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg"}  # OpenAI output_format


def aspect_ratio(size: str | None) -> str | None:
    """The Imagen aspect ratio nearest to an OpenAI WxH size (None for auto / unset)."""
    if not size or size == "auto":
        return None
    w, _, h = size.partition("x")
    ratio = math.log(int(w) / int(h))
    return min(ASPECT_RATIOS, key=lambda name: abs(math.log(ASPECT_RATIOS[name]) - ratio))


def _sample_count(n: Any) -> int:
    n = n or 1
    if n > IMAGEN_MAX_SAMPLES:
        raise InvalidJob(f"Imagen returns at most {IMAGEN_MAX_SAMPLES} images per request; got n={n}")
    return n


def _mime_type(fmt: Any) -> str:
    if fmt not in IMAGEN_MIME_TYPES:
        raise InvalidJob(f"output_format {fmt!r}: Imagen writes {sorted(IMAGEN_MIME_TYPES)}")
    return IMAGEN_MIME_TYPES[fmt]


# OpenAI images fields -> Imagen `parameters` (worker.providers.params). response_format is moot (Imagen
# always answers with bytes); quality and style have no equivalent.
PARAMS: ParamTable = {
    "n": rename("sampleCount", _sample_count, default=1),
    "size": rename("aspectRatio", aspect_ratio),
    "output_format": rename("outputOptions.mimeType", _mime_type),
    "response_format": drop("Imagen always answers with bytes, which mmq stores itself"),
    "quality": drop("no Imagen equivalent"),
    "style": drop("no Imagen equivalent"),
}


def image_body(request: dict[str, Any]) -> dict[str, Any]:
    params = map_params(PARAMS, request)
    params["includeRaiReason"] = True  # say why an image was dropped
    return {"instances": [{"prompt": request["prompt"]}], "parameters": params}


# ======================================================================================= responses
def image_response(body: dict[str, Any]) -> dict[str, Any]:
    predictions = body.get("predictions", [])
    if not isinstance(predictions, list):
        raise unparseable_body(body)
    data: list[dict[str, Any]] = []
    reasons: list[str] = []
    for p in predictions:
        if isinstance(p, dict) and isinstance(p.get("bytesBase64Encoded"), str):
            item = {"b64_json": p["bytesBase64Encoded"]}
            if isinstance(p.get("prompt"), str):  # the enhanced prompt Imagen actually used
                item["revised_prompt"] = p["prompt"]
            data.append(item)
        elif isinstance(p, dict) and p.get("raiFilteredReason"):
            reasons.append(str(p["raiFilteredReason"]))
    if not data:
        # Imagen answers 200 with no images (or only filter reasons) when every image was filtered
        raise ProviderError(
            "Imagen returned no images: " + ("; ".join(reasons) or "all were filtered"),
            status=200,
            code="blocked",
            retryable=False,
            provider="gemini",
        )
    return {"created": int(time.time()), "data": data}
