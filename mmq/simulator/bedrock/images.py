"""The Bedrock dialect's InvokeModel for image models (POST /model/{modelId}/invoke).

Families: Titan / Nova Canvas, Stability SD3 / Stable Image, Stability SDXL, told apart by the model-id
prefix after any inference-profile geography. InvokeModel validates each family's body (errors worded
as Bedrock's "Malformed input request") and returns real PNGs (or JPEGs). A prompt containing
"mmq-sim:block" is filtered: Titan a 400 ValidationException, Stability finish_reasons / finishReason
set. Any other model is refused here: use Converse.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.bedrock.errors import _invalid, _malformed
from mmq.simulator.bedrock.wire import BLOCK_TRIGGER, _ok, _read_json
from mmq.simulator.stability import ASPECT_SIZES, SDXL_SIZES, random_seed, render

# model-id prefix (after any inference-profile geography) -> InvokeModel image family
IMAGE_FAMILIES: dict[str, str] = {
    "amazon.titan-image-generator": "titan",
    "amazon.nova-canvas": "nova",
    "stability.sd3": "stability3",
    "stability.stable-image": "stability3",
    "stability.stable-diffusion-xl": "sdxl",
}
_PROFILE = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.")
TITAN_FIELDS = frozenset({"taskType", "textToImageParams", "imageGenerationConfig"})
TITAN_TEXT_FIELDS = frozenset({"text", "negativeText", "style"})
TITAN_CONFIG_FIELDS = frozenset({"numberOfImages", "width", "height", "cfgScale", "seed", "quality"})
TITAN_MAX_TEXT: dict[str, int] = {"titan": 512, "nova": 1024}
STABILITY3_FIELDS = frozenset({"prompt", "mode", "aspect_ratio", "output_format", "seed", "negative_prompt"})
SDXL_FIELDS = frozenset(
    {"text_prompts", "width", "height", "cfg_scale", "steps", "seed", "samples", "style_preset", "sampler"}
)


def _family(model: str) -> str | None:
    bare = _PROFILE.sub("", model.rsplit("/", 1)[-1])
    matches = [p for p in IMAGE_FAMILIES if bare.startswith(p)]
    return IMAGE_FAMILIES[max(matches, key=len)] if matches else None


def _int(obj: Mapping[str, object], name: str, default: int, lo: int, hi: int) -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed(f"#/{name}: expected type: Integer, found: {type(value).__name__}")
    if not lo <= value <= hi:
        raise _malformed(f"#/{name}: {value} is not in the range {lo}..{hi}")
    return value


def _obj(value: object, where: str, known: frozenset[str]) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _malformed(f"#/{where}: expected type: JSONObject")
    extra = sorted(set(value) - known)
    if extra:
        raise _malformed(f"#: extraneous key [{extra[0]}] is not permitted")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def _titan(body: dict[str, object], family: str, request: Request) -> dict[str, object]:
    _obj(body, "", TITAN_FIELDS)
    if body.get("taskType") != "TEXT_IMAGE":
        raise _malformed("#/taskType: the mmq simulator supports TEXT_IMAGE only")
    params = _obj(body.get("textToImageParams"), "textToImageParams", TITAN_TEXT_FIELDS)
    text = params.get("text")
    limit = TITAN_MAX_TEXT[family]
    if not isinstance(text, str) or not 1 <= len(text) <= limit:
        raise _malformed(f"#/textToImageParams/text: expected a string of 1 to {limit} characters")
    negative = params.get("negativeText")
    if negative is not None and (not isinstance(negative, str) or not 1 <= len(negative) <= limit):
        raise _malformed(f"#/textToImageParams/negativeText: expected a string of 1 to {limit} characters")
    config = _obj(body.get("imageGenerationConfig", {}), "imageGenerationConfig", TITAN_CONFIG_FIELDS)
    count = _int(config, "numberOfImages", 1, 1, 5)
    width = _int(config, "width", 1024, 320, 4096)
    height = _int(config, "height", 1024, 320, 4096)
    if width % 16 or height % 16:
        raise _malformed("#/imageGenerationConfig: width and height must be divisible by 16")
    seed = _int(config, "seed", 0, 0, 2147483646)
    scale = config.get("cfgScale", 8.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 1.1 <= scale <= 10:
        raise _malformed("#/imageGenerationConfig/cfgScale: must be between 1.1 and 10.0")
    if config.get("quality", "standard") not in ("standard", "premium"):
        raise _malformed("#/imageGenerationConfig/quality: must be standard or premium")
    if BLOCK_TRIGGER in text:
        raise _invalid(
            "This request has been blocked by our content filters. Please adjust your text prompt to "
            "submit a new request."
        )
    seed = seed or random_seed(request, 2147483646 - count)
    images = [await render(text, seed + i, width, height) for i in range(count)]
    return {"images": [_b64(png) for png in images], "error": None}


async def _stability3(body: dict[str, object], request: Request) -> dict[str, object]:
    _obj(body, "", STABILITY3_FIELDS)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= 10000:
        raise _malformed("#/prompt: expected a string of 1 to 10000 characters")
    if body.get("mode", "text-to-image") != "text-to-image":
        raise _malformed("#/mode: the mmq simulator supports text-to-image only")
    ratio = body.get("aspect_ratio", "1:1")
    if ratio not in ASPECT_SIZES:
        raise _malformed(f"#/aspect_ratio: {ratio} is not a valid enum value")
    fmt = body.get("output_format", "png")
    if not isinstance(fmt, str) or fmt.lower() not in ("png", "jpeg"):
        raise _malformed(f"#/output_format: {fmt} is not a valid enum value")
    seed = _int(body, "seed", 0, 0, 4294967294) or random_seed(request)
    width, height = ASPECT_SIZES[str(ratio)]
    data = await render(prompt, seed, width, height, f"image/{fmt.lower()}")
    reason = "Filter reason: prompt" if BLOCK_TRIGGER in prompt else None
    return {"seeds": [seed], "finish_reasons": [reason], "images": [_b64(data)]}


async def _sdxl(body: dict[str, object], request: Request) -> dict[str, object]:
    _obj(body, "", SDXL_FIELDS)
    prompts = body.get("text_prompts")
    if not isinstance(prompts, list) or not prompts:
        raise _malformed("#/text_prompts: expected a non-empty array")
    texts = []
    for item in prompts:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"]:
            raise _malformed("#/text_prompts: each prompt needs a text")
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise _malformed("#/text_prompts: weight must be a number")
        if weight > 0:
            texts.append(item["text"])
    prompt = " ".join(texts)
    width, height = _int(body, "width", 1024, 128, 4096), _int(body, "height", 1024, 128, 4096)
    if (width, height) not in SDXL_SIZES:
        raise _malformed(f"#: {width}x{height} is not an SDXL size")
    _int(body, "samples", 1, 1, 1)
    _int(body, "steps", 30, 10, 50)
    seed = _int(body, "seed", 0, 0, 4294967295) or random_seed(request)
    png = await render(prompt, seed, width, height)
    finish = "CONTENT_FILTERED" if BLOCK_TRIGGER in prompt else "SUCCESS"
    return {"result": "success", "artifacts": [{"seed": seed, "base64": _b64(png), "finishReason": finish}]}


async def invoke(request: Request) -> Response:
    model = request.path_params["model_id"]
    family = _family(model)
    if family is None:
        raise _invalid(
            f"The mmq simulator's InvokeModel speaks the image families only ({', '.join(IMAGE_FAMILIES)}); "
            f"use Converse for {model}."
        )
    body = _read_json(await request.body())
    if family in ("titan", "nova"):
        return _ok(await _titan(body, family, request))
    if family == "stability3":
        return _ok(await _stability3(body, request))
    return _ok(await _sdxl(body, request))
