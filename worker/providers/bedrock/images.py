"""AWS Bedrock image generation: OpenAI image requests <-> InvokeModel (`POST {base}/model/{modelId}/invoke`).

The native body depends on the model family, chosen by model-id prefix (IMAGE_FAMILIES): Amazon Titan /
Nova Canvas (`numberOfImages` = n), Stability SD3 / Stable Image (one image per call, n calls made in
turn), Stability SDXL. Each family's field mapping is a parameter-map table (worker.providers.params);
per-call seeds and SDXL's weighted text_prompts stay code. Answers become the OpenAI images response
{created, data: [{b64_json}]}; mmq stores the bytes itself (worker/results.py), so `response_format`
needs no translation.

The Stability families share the rules of Stability's own API (worker.providers.stability): its size
rules, an explicit `aspect_ratio` winning over `size`, OpenAI `style` carried as `style_preset` only when
it names a Stability preset (DALL·E 3's "vivid" / "natural" are refused), and the refusals of the OpenAI
fields Stability has no equivalent for (OPENAI_ONLY). On Bedrock only SDXL takes a `style_preset` (and
`cfg_scale`, `steps`, `sampler`): the SD3 / Stable Image request body (AWS's model parameters page) has
none of them, so they are refused there, never dropped in silence.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from mmq.errors import InvalidJob, ProviderError
from worker.providers.bedrock.errors import unparseable_body
from worker.providers.params import ParamTable, map_params, rename, unsupported, validate
from worker.providers.stability import (
    OPENAI_ONLY,
    V1_SIZES,
    aspect_ratio,
    explicit_aspect_ratio,
    sdxl_size_for_ratio,
    style_preset_for,
    v1_dimensions,
)

# cross-region inference profiles prefix the model id with a geography
_PROFILE_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.")
# model-id prefix (after any inference-profile geography) -> body family; longest prefix wins.
IMAGE_FAMILIES: dict[str, str] = {
    "amazon.titan-image-generator": "titan",
    "amazon.nova-canvas": "titan",  # same TEXT_IMAGE body
    "stability.sd3": "stability3",
    "stability.stable-image": "stability3",
    "stability.stable-diffusion-xl": "sdxl",
}
TITAN_MAX_IMAGES = 5
TITAN_DEFAULT_SIZE = (1024, 1024)
TITAN_QUALITY: dict[str, str] = {
    "hd": "premium",
    "high": "premium",
    "standard": "standard",
    "low": "standard",
}
STABILITY3_OUTPUT_FORMATS = frozenset({"png", "jpeg"})
SDXL_DEFAULT_SIZE = (1024, 1024)


def image_family(model_id: str) -> str | None:
    bare = model_id.rsplit("/", 1)[-1]  # an ARN ends in .../{model id}
    bare = _PROFILE_PREFIX.sub("", bare)
    matches = [p for p in IMAGE_FAMILIES if bare.startswith(p)]
    return IMAGE_FAMILIES[max(matches, key=len)] if matches else None


def _size(size: Any, default: tuple[int, int]) -> tuple[int, int]:
    if not size or size == "auto":
        return default
    w, _, h = str(size).partition("x")
    if not (w.isdigit() and h.isdigit()):
        raise InvalidJob(f"size {size!r} must look like 1024x1024")
    return int(w), int(h)


def _titan_count(n: Any) -> int:
    n = int(n or 1)
    if n > TITAN_MAX_IMAGES:
        raise InvalidJob(
            f"Titan / Nova Canvas return at most {TITAN_MAX_IMAGES} images per request; got n={n}"
        )
    return n


def _stability3_format(fmt: Any) -> str:
    fmt = fmt or "png"
    if fmt not in STABILITY3_OUTPUT_FORMATS:
        raise InvalidJob(
            f"output_format {fmt!r}: Stability on Bedrock writes {sorted(STABILITY3_OUTPUT_FORMATS)}"
        )
    return fmt  # lower case as on Stability's own API; the case Bedrock wants is unverified


def _sdxl_size(size: Any) -> tuple[int, int]:
    return v1_dimensions("stable-diffusion-xl-1024", size) or SDXL_DEFAULT_SIZE


def _sdxl_ratio_size(ratio: Any) -> tuple[int, int]:
    return sdxl_size_for_ratio(ratio, V1_SIZES["stable-diffusion-xl-1024"])


def _sdxl_format(fmt: Any) -> None:
    if fmt not in (None, "png"):
        raise InvalidJob(f"output_format {fmt!r}: SDXL on Bedrock writes PNG only")


def _if_given(value: Any) -> Any:
    return value or None


# OpenAI images fields (and the Stability-style extras the contract keeps) -> InvokeModel body fields,
# per family (worker.providers.params).
TITAN_PARAMS: ParamTable = {
    "prompt": rename("textToImageParams.text"),
    "negative_prompt": rename("textToImageParams.negativeText", _if_given),
    "n": rename("imageGenerationConfig.numberOfImages", _titan_count, default=1),
    "size": [
        rename(
            "imageGenerationConfig.width",
            lambda s: _size(s, TITAN_DEFAULT_SIZE)[0],
            default=TITAN_DEFAULT_SIZE[0],
        ),
        rename(
            "imageGenerationConfig.height",
            lambda s: _size(s, TITAN_DEFAULT_SIZE)[1],
            default=TITAN_DEFAULT_SIZE[1],
        ),
    ],
    "quality": rename("imageGenerationConfig.quality", lambda quality: TITAN_QUALITY.get(str(quality))),
    "cfg_scale": rename("imageGenerationConfig.cfgScale"),
    "seed": rename("imageGenerationConfig.seed"),
}
_NOT_ON_STABILITY3 = (
    "not a parameter of Stability's SD3 / Stable Image models on Bedrock (of Stability's models there, "
    "only SDXL, stability.stable-diffusion-xl, takes it)"
)
STABILITY3_PARAMS: ParamTable = {
    "aspect_ratio": rename("aspect_ratio", explicit_aspect_ratio),  # explicit wins over size
    "size": rename("aspect_ratio", aspect_ratio),
    "output_format": rename("output_format", _stability3_format, default="png"),
    "negative_prompt": rename("negative_prompt", _if_given),
    **{
        name: unsupported(_NOT_ON_STABILITY3)
        for name in ("style_preset", "style", "cfg_scale", "steps", "sampler", "clip_guidance_preset")
    },
    **OPENAI_ONLY,
}
SDXL_PARAMS: ParamTable = {
    "aspect_ratio": [  # explicit wins over size: the accepted SDXL size nearest the ratio
        rename("width", lambda r: _sdxl_ratio_size(r)[0]),
        rename("height", lambda r: _sdxl_ratio_size(r)[1]),
    ],
    "size": [
        rename("width", lambda s: _sdxl_size(s)[0], default=SDXL_DEFAULT_SIZE[0]),
        rename("height", lambda s: _sdxl_size(s)[1], default=SDXL_DEFAULT_SIZE[1]),
    ],
    "output_format": validate(_sdxl_format),
    **{name: rename(name) for name in ("cfg_scale", "steps", "seed", "style_preset", "sampler")},
    "style": rename("style_preset", style_preset_for),  # after style_preset: an explicit one wins
    **OPENAI_ONLY,
}


def _titan_bodies(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [map_params(TITAN_PARAMS, request, into={"taskType": "TEXT_IMAGE"})]


def _stability3_bodies(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    body = map_params(STABILITY3_PARAMS, request, into={"prompt": request["prompt"], "mode": "text-to-image"})
    bodies = []
    for i in range(int(request.get("n") or 1)):  # one image per call
        one = dict(body)
        if request.get("seed") is not None:
            seed = int(request["seed"])
            one["seed"] = seed if seed == 0 else (seed + i - 1) % 4294967294 + 1
        bodies.append(one)
    return bodies


def _sdxl_bodies(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    prompts: list[dict[str, Any]] = [{"text": request["prompt"], "weight": 1}]
    if request.get("negative_prompt"):
        prompts.append({"text": request["negative_prompt"], "weight": -1})
    body = map_params(SDXL_PARAMS, request, into={"text_prompts": prompts})
    return [body for _ in range(int(request.get("n") or 1))]  # SDXL on Bedrock: one image per call


IMAGE_BODIES: dict[str, Callable[[Mapping[str, Any]], list[dict[str, Any]]]] = {
    "titan": _titan_bodies,
    "stability3": _stability3_bodies,
    "sdxl": _sdxl_bodies,
}


# ====================================================================================== responses
def _filtered(why: str) -> ProviderError:
    return ProviderError(why, status=200, code="content_filter", retryable=False, provider="bedrock")


def _images(family: str, body: Mapping[str, Any]) -> list[str]:
    if family == "sdxl":
        artifacts = body.get("artifacts")
        if not isinstance(artifacts, list) or not artifacts:
            raise unparseable_body(body)
        if any(isinstance(a, Mapping) and a.get("finishReason") == "CONTENT_FILTERED" for a in artifacts):
            raise _filtered("Bedrock filtered the generated image (finishReason CONTENT_FILTERED)")
        images = [a.get("base64") for a in artifacts if isinstance(a, Mapping)]
    else:
        if family == "titan" and body.get("error"):
            raise ProviderError(
                f"Titan error: {body['error']}", status=200, retryable=False, provider="bedrock"
            )
        reasons = [r for r in body.get("finish_reasons") or [] if r]  # SD3 family: null means fine
        if reasons:
            raise _filtered(f"Bedrock filtered the generated image: {'; '.join(map(str, reasons))}")
        images = body.get("images")
    if not isinstance(images, list) or not images or not all(isinstance(i, str) and i for i in images):
        raise unparseable_body(body)
    return images  # type: ignore[return-value]


def images_response(family: str, bodies: list[Mapping[str, Any]]) -> dict[str, Any]:
    """200 InvokeModel answers (one per call) -> the OpenAI images response."""
    return {
        "created": int(time.time()),
        "data": [{"b64_json": i} for b in bodies for i in _images(family, b)],
    }
