"""The Google dialect's Imagen predict, on AI Studio and Vertex AI paths.

Imagen returns real PNGs (or JPEGs), at 1K or 2K per aspect ratio. The Developer API (AI Studio)
refuses the parameters only Vertex accepts (reference §4.4). A prompt containing "mmq-sim:block" is
blocked: a raiFilteredReason (when includeRaiReason is set) and no image.
"""

from __future__ import annotations

import asyncio
import base64
import io

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.errors import json_response
from mmq.simulator.gemini.errors import _invalid
from mmq.simulator.gemini.wire import BLOCK_TRIGGER, _fields, _int, _not_found, _read_body
from mmq.simulator.images import _render

# Imagen output sizes at 1K per aspect ratio; sampleImageSize 2K doubles them
IMAGEN_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
IMAGEN_MAX_SAMPLES = 4
IMAGEN_DEFAULT_SAMPLES = 4  # Google's documented default for numberOfImages
IMAGEN_OUTPUT_TYPES = frozenset({"image/png", "image/jpeg"})
# Imagen parameters the Developer API refuses (Vertex accepts them); reference §4.4
VERTEX_ONLY_IMAGEN_PARAMS = frozenset(
    {"seed", "negativePrompt", "addWatermark", "enhancePrompt", "storageUri"}
)


_PREDICT_FIELDS = frozenset({"instances", "parameters"})
_INSTANCE_FIELDS = frozenset({"prompt"})
_IMAGEN_FIELDS = frozenset(
    {
        "sampleCount",
        "aspectRatio",
        "guidanceScale",
        "safetySetting",
        "personGeneration",
        "includeSafetyAttributes",
        "includeRaiReason",
        "language",
        "outputOptions",
        "sampleImageSize",
        *VERTEX_ONLY_IMAGEN_PARAMS,
    }
)
_OUTPUT_OPTION_FIELDS = frozenset({"mimeType", "compressionQuality"})


def _to_jpeg(png: bytes, quality: int) -> bytes:
    with Image.open(io.BytesIO(png)) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


async def predict(request: Request) -> Response:
    model = request.path_params["model"]
    if not model.startswith("imagen"):
        raise _not_found(model, "predict", request)
    vertex = "project" in request.path_params
    body = _fields(await _read_body(request), "", _PREDICT_FIELDS)
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise _invalid("* PredictRequest.instances: instances is not specified\n")
    params = _fields(body.get("parameters", {}), "parameters", _IMAGEN_FIELDS)
    refused = sorted(VERTEX_ONLY_IMAGEN_PARAMS & params.keys()) if not vertex else []
    if refused:
        raise _invalid(f"{refused[0]} parameter is not supported in Gemini API.")
    count = _int(
        params.get("sampleCount", IMAGEN_DEFAULT_SAMPLES), "parameters.sampleCount", 1, IMAGEN_MAX_SAMPLES
    )
    ratio = params.get("aspectRatio", "1:1")
    if ratio not in IMAGEN_SIZES:
        raise _invalid(f"Unsupported aspect ratio: {ratio}. Supported: " + ", ".join(IMAGEN_SIZES) + ".")
    width, height = IMAGEN_SIZES[str(ratio)]
    size = params.get("sampleImageSize", "1K")
    if size not in ("1K", "2K"):
        raise _invalid(f"Unsupported sample image size: {size}. Supported: 1K, 2K.")
    if size == "2K":
        width, height = width * 2, height * 2
    options = _fields(params.get("outputOptions", {}), "parameters.outputOptions", _OUTPUT_OPTION_FIELDS)
    out_mime = options.get("mimeType", "image/png")
    if out_mime not in IMAGEN_OUTPUT_TYPES:
        raise _invalid(f"Unsupported output mime type: {out_mime}. Supported: image/png, image/jpeg.")
    quality = _int(
        options.get("compressionQuality", 75), "parameters.outputOptions.compressionQuality", 0, 100
    )

    predictions: list[dict[str, str]] = []
    for i, instance_obj in enumerate(instances):
        instance = _fields(instance_obj, f"instances[{i}]", _INSTANCE_FIELDS)
        prompt = instance.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _invalid(f"instances[{i}].prompt: a non-empty prompt is required.")
        if BLOCK_TRIGGER in prompt:
            if params.get("includeRaiReason"):
                predictions += [
                    {"raiFilteredReason": "The prompt was blocked by the mmq simulator's safety filter."}
                ] * count
            continue
        images = await asyncio.gather(*(_render(prompt, k, width, height) for k in range(count)))
        for png in images:
            data = png if out_mime == "image/png" else await asyncio.to_thread(_to_jpeg, png, quality)
            predictions.append(
                {"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": out_mime}
            )
    # Imagen leaves out filtered images; with nothing left the body is {}
    return json_response({"predictions": predictions} if predictions else {})
