"""Stability AI, direct API: text-to-image on v2beta Stable Image (ultra / core / sd3) and v1 (SDXL).

Takes the OpenAI images request the contract stores and gives back an OpenAI images response
{created, data: [{b64_json}]}. Reference: ../shared/reference/providers.md §6.

Which API a model goes to is data (MODELS, V1_ENGINE_PREFIX), not code:
- v2beta `POST /v2beta/stable-image/generate/{ultra|core|sd3}`: multipart/form-data even without a file,
  one image per call (OpenAI `n` > 1 translates to n wire requests, which the shared send path makes
  one after the other so a job never bursts past the provider's 150 requests / 10 s), `Accept:
  application/json` for {"image", "finish_reason", "seed"}. OpenAI `size` becomes the nearest Stability
  `aspect_ratio`.
- v1 `POST /v1/generation/{engine_id}/text-to-image`: JSON, `samples` = n, width/height from `size`
  (SDXL-1024 accepts nine sizes only; the nearest one by aspect ratio is sent).
The field mapping of each is a parameter-map table per endpoint (`v2_params`, `v1_params`,
worker.providers.params); per-image seeds and v1's weighted text_prompts stay code. Every field of an
OpenAI images request (reference §1.3; streaming aside, which batch jobs never use) is in the tables or,
for `n`, in that code: carried where Stability has it, refused with a message naming the field where it
does not, never dropped in silence (only `response_format` and `user`, which do not change the image,
are left out on purpose).

Stability-only parameters travel as extra top-level request fields (the contract keeps unknown fields):
`negative_prompt`, `seed`, `aspect_ratio`, `style_preset` (v2beta core, v1), `cfg_scale`, `steps`,
`sampler`, `clip_guidance_preset` (v1; refused on v2beta, whose reference has none of them).

`aspect_ratio` and `size`: an explicit `aspect_ratio` wins over `size`. It is the more specific ask
(Stability's own field, often set by a routing config's override_params for a Stability target while
the request keeps the `size` an OpenAI client always sends), so refusing the pair would break exactly
that use. The value must be one of ASPECT_RATIOS; on v1 SDXL it picks the accepted size nearest that
ratio, and other v1 engines (which take free width/height) refuse it: send `size` there.

`style` (OpenAI, DALL·E 3: "vivid" / "natural") and `style_preset`: Stability's presets (STYLE_PRESETS)
are named looks ("photographic", "anime", ...); OpenAI's two values have no documented equivalent among
them, and guessing one ("vivid" as "enhance"?) would change the picture without saying so. So a `style`
that names a Stability preset is carried as `style_preset`, and "vivid" / "natural" are refused with a
message pointing at `style_preset` (a routing config can set `override_params: {"style": null,
"style_preset": "..."}` for its Stability target). An explicit `style_preset` wins over `style`. Only
the endpoints that take presets take either (v2beta core, v1); the others refuse them.

`response_format`: Stability always answers with bytes. That is fine for both values: mmq stores every
generated image itself (worker/results.py) and the stored result points at its own file URL, so "url"
and "b64_json" jobs end the same way. OpenAI `quality` ("auto"/"standard" pass; Stability's quality is
the model you pick), `background` ("transparent"), `output_compression` (other than 100) and
`moderation` ("low") have no Stability equivalent and are refused (OPENAI_ONLY, shared with the
Stability models on Bedrock).

A 200 whose finish reason is CONTENT_FILTERED (a blurred image) is a failure: ProviderError code
"content_filter", not retryable. So is a 403 `content_moderation`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import httpx

from mmq.errors import InvalidJob, ProviderError, parse_retry_after, unparseable
from mmq.request_models import Kind
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest
from worker.providers.params import Param, ParamTable, drop, map_params, refuse_if, rename, validate
from worker.providers.protocol import WireAdapter

DEFAULT_BASE_URL = "https://api.stability.ai"
DEFAULT_MODEL = "stable-image-core"


@dataclass(frozen=True)
class StabilityModel:
    api: Literal["v2beta", "v1"]
    endpoint: str  # v2beta: ultra | core | sd3; v1: the engine id
    model: str | None = None  # the v2beta sd3 `model` form field


def _sd3(model: str) -> StabilityModel:
    return StabilityModel("v2beta", "sd3", model)


# OpenAI `model` -> where it goes. Names outside the table that start with V1_ENGINE_PREFIX are v1 engine ids.
MODELS: dict[str, StabilityModel] = {
    "stable-image-ultra": StabilityModel("v2beta", "ultra"),
    "ultra": StabilityModel("v2beta", "ultra"),
    "stable-image-core": StabilityModel("v2beta", "core"),
    "core": StabilityModel("v2beta", "core"),
    **{m: _sd3(m) for m in ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3", "sd3-turbo")},
    "stable-diffusion-xl-1024-v1-0": StabilityModel("v1", "stable-diffusion-xl-1024-v1-0"),
}
V1_ENGINE_PREFIX = "stable-diffusion-"

# Stability aspect ratios (width / height); an OpenAI WxH size maps to the nearest one.
ASPECT_RATIOS: dict[str, float] = {
    "21:9": 21 / 9,
    "16:9": 16 / 9,
    "3:2": 3 / 2,
    "5:4": 5 / 4,
    "1:1": 1.0,
    "4:5": 4 / 5,
    "2:3": 2 / 3,
    "9:16": 9 / 16,
    "9:21": 9 / 21,
}
V2_OUTPUT_FORMATS = frozenset({"png", "jpeg", "webp"})
# Stability's style presets (v2beta core, v1; the list "is subject to change", so `style_preset` itself is
# forwarded as given and only OpenAI's `style` is read against it)
STYLE_PRESETS = frozenset(
    {
        "3d-model",
        "analog-film",
        "anime",
        "cinematic",
        "comic-book",
        "digital-art",
        "enhance",
        "fantasy-art",
        "isometric",
        "line-art",
        "low-poly",
        "modeling-compound",
        "neon-punk",
        "origami",
        "photographic",
        "pixel-art",
        "tile-texture",
    }
)
OPENAI_STYLES = frozenset({"vivid", "natural"})  # DALL·E 3; no documented Stability equivalent
# v1 width/height: engine-id prefix -> the only sizes it accepts (others: multiples of 64, >= 128)
V1_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "stable-diffusion-xl-1024": (
        (1024, 1024),
        (1152, 896),
        (1216, 832),
        (1344, 768),
        (1536, 640),
        (640, 1536),
        (768, 1344),
        (832, 1216),
        (896, 1152),
    ),
}
V1_MAX_SAMPLES = 10
MAX_SEED = 4294967294  # v2beta's upper bound; v1 allows one more

# Extra (non-OpenAI) request fields forwarded as is, per API; endpoint-specific ones carry the endpoints.
V2_EXTRA: dict[str, frozenset[str] | None] = {
    "negative_prompt": None,
    "seed": None,
    "style_preset": frozenset({"core"}),
}
V2_STYLE_ENDPOINTS = frozenset({"core"})  # where OpenAI `style` may become a style_preset
V1_EXTRA = ("cfg_scale", "steps", "seed", "sampler", "style_preset", "clip_guidance_preset")
V1_ONLY = ("cfg_scale", "steps", "sampler", "clip_guidance_preset")  # not in the v2beta reference

FILTERED = "CONTENT_FILTERED"
# 429 puts the key in a 60 s timeout (reference §6.1); used when the answer carries no Retry-After.
RATE_LIMIT_PENALTY_S = 60.0
CONTENT_FILTER_NAMES = frozenset({"content_moderation"})


@dataclass(frozen=True)
class NativeRequest:
    """What to send: `bodies` are multipart form fields (v2beta, one per image) or one JSON body (v1)."""

    path: str
    multipart: bool
    bodies: list[dict[str, Any]]


# ------------------------------------------------------------------------------------------- request
def resolve_model(model: Any) -> StabilityModel:
    name = model or DEFAULT_MODEL
    if not isinstance(name, str):
        raise InvalidJob("model must be a string")
    if name in MODELS:
        return MODELS[name]
    if name.startswith(V1_ENGINE_PREFIX):
        return StabilityModel("v1", name)
    raise InvalidJob(
        f"model {name!r} is not a Stability model this adapter knows: use one of {sorted(MODELS)} "
        f"or a v1 engine id starting with {V1_ENGINE_PREFIX!r}"
    )


def _parse_size(size: Any) -> tuple[int, int] | None:
    if not size or size == "auto":
        return None
    w, _, h = str(size).partition("x")
    if not (w.isdigit() and h.isdigit()) or not int(w) or not int(h):
        raise InvalidJob(f"size {size!r} must look like 1024x1024")
    return int(w), int(h)


def aspect_ratio(size: Any) -> str | None:
    """The Stability aspect ratio nearest to an OpenAI WxH size (None for auto / unset)."""
    dims = _parse_size(size)
    if dims is None:
        return None
    ratio = math.log(dims[0] / dims[1])
    return min(ASPECT_RATIOS, key=lambda name: abs(math.log(ASPECT_RATIOS[name]) - ratio))


def v1_dimensions(engine: str, size: Any) -> tuple[int, int] | None:
    """v1 width/height for an OpenAI size: the nearest accepted size, or sides rounded to 64."""
    dims = _parse_size(size)
    if dims is None:
        return None
    for prefix, sizes in V1_SIZES.items():
        if engine.startswith(prefix):
            ratio = math.log(dims[0] / dims[1])
            return min(sizes, key=lambda s: (abs(math.log(s[0] / s[1]) - ratio), abs(s[0] - dims[0])))
    return tuple(max(128, round(side / 64) * 64) for side in dims)  # type: ignore[return-value]


def explicit_aspect_ratio(value: Any) -> str:
    """An `aspect_ratio` given in the request, checked against Stability's list."""
    if not isinstance(value, str) or value not in ASPECT_RATIOS:
        raise InvalidJob(f"aspect_ratio {value!r}: Stability takes one of {list(ASPECT_RATIOS)}")
    return value


def sdxl_size_for_ratio(ratio: Any, sizes: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """The accepted SDXL size nearest an explicit aspect ratio."""
    target = math.log(ASPECT_RATIOS[explicit_aspect_ratio(ratio)])
    return min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - target))


def _v1_ratio_size(engine: str, ratio: Any) -> tuple[int, int]:
    for prefix, sizes in V1_SIZES.items():
        if engine.startswith(prefix):
            return sdxl_size_for_ratio(ratio, sizes)
    raise InvalidJob(
        f"aspect_ratio: Stability v1 engine {engine!r} takes a width and height, not a ratio; "
        "send size (e.g. 1344x768) instead"
    )


def style_preset_for(style: Any) -> str:
    """OpenAI `style` as a Stability `style_preset`: a preset name passes; DALL·E 3's "vivid" /
    "natural" have no documented equivalent and are refused, never guessed."""
    if not isinstance(style, str):
        raise InvalidJob(f"style must be a string, got {type(style).__name__}")
    if style in STYLE_PRESETS:
        return style
    if style in OPENAI_STYLES:
        raise InvalidJob(
            f"style {style!r}: OpenAI's DALL·E 3 style has no documented Stability equivalent; choose a "
            f"Stability look with style_preset (one of {sorted(STYLE_PRESETS)}), or leave style out for "
            'this target (override_params {"style": null})'
        )
    raise InvalidJob(f"style {style!r}: not a Stability style preset (one of {sorted(STYLE_PRESETS)})")


# OpenAI images fields Stability (direct and on Bedrock) has no equivalent for: accepted at the values
# that ask for nothing beyond what Stability does anyway, refused otherwise (worker.providers.params).
OPENAI_ONLY: dict[str, Param] = {
    "response_format": drop("mmq stores every generated image, so url and b64_json jobs end alike"),
    "user": drop("an end-user id for OpenAI's abuse monitoring; the image does not depend on it"),
    "quality": refuse_if(
        lambda q: q not in ("auto", "standard"),
        "Stability has no quality setting; choose the model instead (stable-image-ultra is its best)",
    ),
    "background": refuse_if(lambda b: b == "transparent", "Stability writes opaque images only"),
    "output_compression": refuse_if(lambda c: c != 100, "Stability has no compression setting"),
    "moderation": refuse_if(lambda m: m != "auto", "Stability's moderation cannot be changed"),
}


def _only_at(endpoints: frozenset[str] | set[str], what: str = "") -> Param:
    return refuse_if(lambda _: True, f"only accepted by Stability {sorted(endpoints)}{what}")


def _seed(value: Any, index: int) -> int:
    # n images from one explicit seed: seed, seed+1, ... so they are reproducible and still differ
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise InvalidJob(f"seed must be an integer between 0 and {MAX_SEED}")
    return value if value == 0 else (value + index - 1) % MAX_SEED + 1


def _v2_format(fmt: Any) -> str:
    fmt = fmt or "png"
    if fmt not in V2_OUTPUT_FORMATS:
        raise InvalidJob(f"output_format {fmt!r}: Stability writes {sorted(V2_OUTPUT_FORMATS)}")
    return fmt


def _v1_format(fmt: Any) -> None:
    if fmt not in (None, "png"):
        raise InvalidJob(f"output_format {fmt!r}: Stability v1 engines write PNG only")


def _v1_samples(n: Any) -> int:
    n = int(n or 1)
    if n > V1_MAX_SAMPLES:
        raise InvalidJob(f"Stability v1 returns at most {V1_MAX_SAMPLES} images per request; got n={n}")
    return n


@lru_cache
def v2_params(target: StabilityModel) -> ParamTable:
    """OpenAI images fields -> v2beta form fields for one endpoint (worker.providers.params). Rows apply
    in order and the first writer of a field wins: an explicit aspect_ratio / style_preset before the
    size / style they would otherwise be derived from."""
    extras: dict[str, Param] = {
        name: rename(name) if endpoints is None or target.endpoint in endpoints else _only_at(endpoints)
        for name, endpoints in V2_EXTRA.items()
    }
    style = (
        rename("style_preset", style_preset_for)
        if target.endpoint in V2_STYLE_ENDPOINTS
        else _only_at(V2_STYLE_ENDPOINTS, " (as a style_preset)")
    )
    return {
        "prompt": rename("prompt"),
        "aspect_ratio": rename("aspect_ratio", explicit_aspect_ratio),
        "size": rename("aspect_ratio", aspect_ratio),
        "output_format": rename("output_format", _v2_format, default="png"),
        "model": rename("model", lambda _: target.model),  # the sd3 form field; the others take none
        **extras,
        "style": style,
        **{name: _only_at({"v1 engines"}) for name in V1_ONLY},
        **OPENAI_ONLY,
    }


@lru_cache
def v1_params(target: StabilityModel) -> ParamTable:
    """OpenAI images fields -> v1 JSON body fields for one engine (worker.providers.params)."""
    return {
        "output_format": validate(_v1_format),
        "aspect_ratio": [
            rename("width", lambda ratio: _v1_ratio_size(target.endpoint, ratio)[0]),
            rename("height", lambda ratio: _v1_ratio_size(target.endpoint, ratio)[1]),
        ],
        "size": [
            rename("width", lambda size: (v1_dimensions(target.endpoint, size) or (None, None))[0]),
            rename("height", lambda size: (v1_dimensions(target.endpoint, size) or (None, None))[1]),
        ],
        "n": rename("samples", _v1_samples, default=1),
        **{name: rename(name) for name in V1_EXTRA},
        "style": rename("style_preset", style_preset_for),
        **OPENAI_ONLY,
    }


def _v2_forms(target: StabilityModel, request: Mapping[str, Any]) -> list[dict[str, Any]]:
    form = map_params(v2_params(target), request)
    forms = []
    for i in range(int(request.get("n") or 1)):
        one = dict(form)
        if "seed" in one:
            one["seed"] = _seed(one["seed"], i)
        forms.append(one)
    return forms


def _v1_body(target: StabilityModel, request: Mapping[str, Any]) -> dict[str, Any]:
    prompts: list[dict[str, Any]] = [{"text": request["prompt"], "weight": 1}]
    if request.get("negative_prompt"):
        prompts.append({"text": request["negative_prompt"], "weight": -1})  # v1's negative prompt
    return map_params(v1_params(target), request, into={"text_prompts": prompts})


def to_native(request: dict[str, Any]) -> NativeRequest:
    """OpenAI images request -> what to POST where. Pure; raises InvalidJob."""
    if not isinstance(request.get("prompt"), str) or not request["prompt"]:
        raise InvalidJob("prompt is required")
    target = resolve_model(request.get("model"))
    if target.api == "v2beta":
        return NativeRequest(
            f"/v2beta/stable-image/generate/{target.endpoint}", True, _v2_forms(target, request)
        )
    return NativeRequest(
        f"/v1/generation/{target.endpoint}/text-to-image", False, [_v1_body(target, request)]
    )


# ------------------------------------------------------------------------------------------ response
def _unparseable(body: Any) -> ProviderError:
    return unparseable("stability", body)


def _filtered() -> ProviderError:
    return ProviderError(
        "Stability filtered the generated image (finish reason CONTENT_FILTERED)",
        status=200,
        code="content_filter",
        retryable=False,
        provider="stability",
    )


def _images(body: Any) -> list[str]:
    """The base64 images of one 200 answer (v2beta or v1 JSON)."""
    if not isinstance(body, dict):
        raise _unparseable(body)
    if "artifacts" in body:  # v1
        artifacts = body["artifacts"]
        if not isinstance(artifacts, list) or not artifacts:
            raise _unparseable(body)
        out = []
        for art in artifacts:
            if not isinstance(art, dict) or not isinstance(art.get("base64"), str):
                raise _unparseable(body)
            if art.get("finishReason") == FILTERED:
                raise _filtered()
            if art.get("finishReason") == "ERROR":
                raise ProviderError(
                    "Stability reported a generation error", status=200, retryable=True, provider="stability"
                )
            out.append(art["base64"])
        return out
    if body.get("finish_reason") == FILTERED:
        raise _filtered()
    if not isinstance(body.get("image"), str) or not body["image"]:
        raise _unparseable(body)
    return [body["image"]]


def from_native(bodies: list[Any]) -> dict[str, Any]:
    """200 answers (one per call) -> OpenAI images response. Raises ProviderError."""
    return {"created": int(time.time()), "data": [{"b64_json": b} for body in bodies for b in _images(body)]}


# -------------------------------------------------------------------------------------------- errors
def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    """{"id","name","errors":[...]} (v2beta) or {"id","name","message"} (v1), or anything else."""
    message, code = resp.reason_phrase or "error", None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            message = "; ".join(str(e) for e in errors)
        elif body.get("message"):
            message = str(body["message"])
        code = str(body["name"]) if body.get("name") else None
    else:
        message = resp.text[:300].strip() or message
    if code in CONTENT_FILTER_NAMES:
        code = "content_filter"
    status = resp.status_code
    retry_after = parse_retry_after(resp.headers)
    if status == 429 and retry_after is None:
        retry_after = RATE_LIMIT_PENALTY_S
    return ProviderError(
        message,
        status=status,
        code=code,
        retryable=status == 429 or status >= 500,
        retry_after_s=retry_after,
        provider=provider,
    )


# ------------------------------------------------------------------------------------------- adapter
class StabilityAdapter(WireAdapter):
    name = "stability"
    kinds = frozenset({Kind.image})
    media = MediaRules()  # no chat, so no media rules apply
    default_base_url = DEFAULT_BASE_URL

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> list[WireRequest]:
        if kind is not Kind.image:
            raise InvalidJob(f"the stability adapter generates images only, not {kind}", type="routing_error")
        native = to_native(request)
        url = (target.base_url or DEFAULT_BASE_URL).rstrip("/") + native.path
        headers = {**target.headers, "accept": "application/json"}
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
        if native.multipart:
            # (None, value) parts are plain form fields: Stability insists on multipart even without a file
            return [
                WireRequest(url, headers, files=[(k, (None, str(v))) for k, v in body.items()])
                for body in native.bodies
            ]
        return [WireRequest(url, headers, json=body) for body in native.bodies]

    def error(self, response: httpx.Response) -> ProviderError:
        return error_from_response(response, self.name)

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        return ProviderResponse(
            response.status_code, body=from_native([body]), request_id=response.headers.get("x-request-id")
        )
