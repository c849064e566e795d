"""The simulator's Stability AI dialect: v2beta Stable Image (ultra / core / sd3) and v1 text-to-image.

Routes (built by `stability_routes()`, each wrapped in guard.guarded like the OpenAI routes):
    POST /v2beta/stable-image/generate/{ultra|core|sd3}     multipart/form-data (reference §6.1)
    POST /v1/generation/{engine_id}/text-to-image           JSON (reference §6.2)
Auth: `Authorization: Bearer <key>`, any key; it is the guard's rate-limit identity.

Validation follows the reference: v2beta needs multipart even without a file, `prompt` (≤10000 chars),
`aspect_ratio` / `output_format` / sd3 `model` from their lists, `seed` in 0..4294967294; v1 needs
`text_prompts`, width/height multiples of 64 and ≥128 (SDXL-1024: nine sizes only), samples 1..10,
cfg_scale 0..35, steps 10..150. Answers carry real images (PNG, or JPEG/WEBP on v2beta) of the size the
aspect ratio or width/height asks for. `Accept: application/json` gives JSON with base64; `image/*` (v2beta
default) the raw bytes with finish-reason / seed headers. A prompt containing "mmq-sim:block" comes back
with finish reason CONTENT_FILTERED, as Stability returns a blurred image.

Errors use Stability's shapes: v2beta {"id","name","errors":[...]}, v1 {"id","name","message"}. The
guard's own answers (auth, rate limit, injected faults) are re-rendered in them too.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
from collections.abc import Mapping

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.errors import NativeError, json_response
from mmq.simulator.guard import Handler, guarded
from mmq.simulator.images import _render

BLOCK_TRIGGER = "mmq-sim:block"
# aspect ratio -> rendered size (about one megapixel, sides multiples of 64, as Stability's outputs)
ASPECT_SIZES: dict[str, tuple[int, int]] = {
    "21:9": (1536, 640),
    "16:9": (1344, 768),
    "3:2": (1216, 832),
    "5:4": (1088, 896),
    "1:1": (1024, 1024),
    "4:5": (896, 1088),
    "2:3": (832, 1216),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
V2_ENDPOINTS = frozenset({"ultra", "core", "sd3"})
SD3_MODELS = frozenset({"sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3", "sd3-turbo"})
V2_OUTPUT_FORMATS: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
V2_FIELDS = frozenset(
    {"prompt", "negative_prompt", "aspect_ratio", "seed", "output_format", "style_preset", "model", "mode"}
)
MAX_PROMPT = 10000
MAX_SEED_V2 = 4294967294
MAX_SEED_V1 = 4294967295
SDXL_SIZES = frozenset(
    {
        (1024, 1024),
        (1152, 896),
        (1216, 832),
        (1344, 768),
        (1536, 640),
        (640, 1536),
        (768, 1344),
        (832, 1216),
        (896, 1152),
    }
)
# v1 engine id -> (default size, the only sizes it accepts or None for "multiples of 64")
V1_ENGINES: dict[str, tuple[tuple[int, int], frozenset[tuple[int, int]] | None]] = {
    "stable-diffusion-xl-1024-v1-0": ((1024, 1024), SDXL_SIZES),
    "stable-diffusion-v1-6": ((512, 512), None),
}
V1_FIELDS = frozenset(
    {
        "text_prompts",
        "height",
        "width",
        "cfg_scale",
        "clip_guidance_preset",
        "sampler",
        "samples",
        "seed",
        "steps",
        "style_preset",
        "extras",
    }
)
V1_SAMPLERS = frozenset(
    {
        "DDIM",
        "DDPM",
        "K_DPMPP_2M",
        "K_DPMPP_2S_ANCESTRAL",
        "K_DPM_2",
        "K_DPM_2_ANCESTRAL",
        "K_EULER",
        "K_EULER_ANCESTRAL",
        "K_HEUN",
        "K_LMS",
    }
)
V1_CLIP_PRESETS = frozenset({"FAST_BLUE", "FAST_GREEN", "NONE", "SIMPLE", "SLOW", "SLOWER", "SLOWEST"})
MAX_V1_PROMPT = 2000

NAMES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "payload_too_large",
    422: "invalid_parameters",
    429: "rate_limit_exceeded",
    500: "internal_error",
    503: "service_unavailable",
}


class StabilityError(NativeError):
    """Raised in a handler; rendered in the v2beta error shape, or the v1 one if `v1`."""

    def __init__(
        self,
        status: int,
        message: str,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        v1: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.name = name or NAMES.get(status, "error")
        self.headers = dict(headers or {})
        self.v1 = v1

    def response(self) -> Response:
        body: dict[str, object] = {"id": uuid.uuid4().hex, "name": self.name}
        if self.v1:
            body["message"] = self.message
        else:
            body["errors"] = [self.message]
        return json_response(body, self.status, self.headers)


def _bad(message: str) -> StabilityError:
    return StabilityError(400, message)


def _bad_v1(message: str) -> StabilityError:
    return StabilityError(400, message, v1=True)


# ------------------------------------------------------------------------------------------- images
def encode_as(png: bytes, mime: str) -> bytes:
    """A rendered PNG re-encoded as JPEG or WEBP (PNG is returned as is)."""
    if mime == "image/png":
        return png
    with Image.open(io.BytesIO(png)) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG" if mime == "image/jpeg" else "WEBP", quality=85)
    return buf.getvalue()


def random_seed(request: Request, limit: int = MAX_SEED_V2) -> int:
    """The seed Stability picks when none (or 0) was asked for. From the simulator's seeded RNG, so a run
    replays exactly, while n calls with one body still give n different images, as with a real model."""
    return request.app.state.sim.rng.randint(1, limit)


async def render(prompt: str, seed: int, width: int, height: int, mime: str = "image/png") -> bytes:
    png = await _render(prompt, seed, width, height)  # the seed picks the colour, like a real seed
    return png if mime == "image/png" else await asyncio.to_thread(encode_as, png, mime)


# -------------------------------------------------------------------------------------------- v2beta
def _int_field(value: str, name: str, lo: int, hi: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _bad(f"{name}: must be an integer") from None
    if not lo <= number <= hi:
        raise _bad(f"{name}: must be between {lo} and {hi}")
    return number


async def _form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _bad("content-type: must be multipart/form-data")
    form = await request.form()
    fields: dict[str, str] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            raise _bad(f"{name}: expected a text field, got a file (the mmq simulator does text-to-image)")
        if name not in V2_FIELDS:
            continue  # unknown form fields are ignored
        fields[name] = value
    return fields


async def generate_v2(request: Request) -> Response:
    endpoint = request.path_params["endpoint"]
    if endpoint not in V2_ENDPOINTS:
        raise StabilityError(404, f"{request.url.path} not found")
    form = await _form(request)
    prompt = form.get("prompt", "")
    if not prompt.strip():
        raise _bad("prompt: is required and cannot be empty")
    if len(prompt) > MAX_PROMPT:
        raise _bad(f"prompt: must be at most {MAX_PROMPT} characters")
    if len(form.get("negative_prompt", "")) > MAX_PROMPT:
        raise _bad(f"negative_prompt: must be at most {MAX_PROMPT} characters")
    ratio = form.get("aspect_ratio", "1:1")
    if ratio not in ASPECT_SIZES:
        raise _bad(f"aspect_ratio: must be one of {', '.join(ASPECT_SIZES)}")
    fmt = form.get("output_format", "png")
    if fmt not in V2_OUTPUT_FORMATS:
        raise _bad(f"output_format: must be one of {', '.join(V2_OUTPUT_FORMATS)}")
    if endpoint == "sd3":
        model = form.get("model", "sd3.5-large")
        if model not in SD3_MODELS:
            raise _bad(f"model: must be one of {', '.join(sorted(SD3_MODELS))}")
        if form.get("mode", "text-to-image") != "text-to-image":
            raise _bad("mode: the mmq simulator only does text-to-image")
    seed = _int_field(form["seed"], "seed", 0, MAX_SEED_V2) if "seed" in form else 0
    seed = seed or random_seed(request)
    width, height = ASPECT_SIZES[ratio]
    mime = V2_OUTPUT_FORMATS[fmt]
    data = await render(prompt, seed, width, height, mime)
    finish = "CONTENT_FILTERED" if BLOCK_TRIGGER in prompt else "SUCCESS"
    if "application/json" in request.headers.get("accept", ""):
        body = {"image": base64.b64encode(data).decode("ascii"), "finish_reason": finish, "seed": seed}
        raw = json.dumps(body, separators=(",", ":")).encode()
        return Response(raw, media_type=f"application/json; type={mime}")
    return Response(data, media_type=mime, headers={"finish-reason": finish, "seed": str(seed)})


# ------------------------------------------------------------------------------------------------ v1
def _number(body: Mapping[str, object], name: str, lo: float, hi: float, integer: bool) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise _bad_v1(f"{name}: must be {'an integer' if integer else 'a number'}")
    if not lo <= value <= hi:
        raise _bad_v1(f"{name}: must be between {lo:g} and {hi:g}")
    return value


def _v1_size(body: Mapping[str, object], engine: str) -> tuple[int, int]:
    default, allowed = V1_ENGINES[engine]
    width = _number(body, "width", 128, 16384, True) or default[0]
    height = _number(body, "height", 128, 16384, True) or default[1]
    for name, side in (("width", width), ("height", height)):
        if side % 64:
            raise _bad_v1(f"{name}: must be a multiple of 64 (got {side:g})")
    if allowed is not None and (width, height) not in allowed:
        sizes = ", ".join(f"{w}x{h}" for w, h in sorted(allowed))
        raise _bad_v1(f"for {engine}, the allowed dimensions are {sizes}; got {width:g}x{height:g}")
    return int(width), int(height)


def _v1_prompts(body: Mapping[str, object]) -> str:
    prompts = body.get("text_prompts")
    if not isinstance(prompts, list) or not prompts:
        raise _bad_v1("text_prompts: is required and must hold at least one prompt")
    positive: list[str] = []
    for i, item in enumerate(prompts):
        text = item.get("text") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise _bad_v1(f"text_prompts[{i}].text: is required")
        if len(text) > MAX_V1_PROMPT:
            raise _bad_v1(f"text_prompts[{i}].text: must be at most {MAX_V1_PROMPT} characters")
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise _bad_v1(f"text_prompts[{i}].weight: must be a number")
        if weight > 0:
            positive.append(text)
    if not positive:
        raise _bad_v1("text_prompts: at least one prompt needs a positive weight")
    return " ".join(positive)


async def generate_v1(request: Request) -> Response:
    engine = request.path_params["engine_id"]
    if engine not in V1_ENGINES:
        raise StabilityError(404, f"engine: {engine} not found", v1=True)
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise _bad_v1("body: could not parse the JSON body") from None
    if not isinstance(body, dict):
        raise _bad_v1("body: expected a JSON object")
    unknown = sorted(set(body) - V1_FIELDS)
    if unknown:
        raise _bad_v1(f"{unknown[0]}: is not a known parameter")
    prompt = _v1_prompts(body)
    width, height = _v1_size(body, engine)
    samples = int(_number(body, "samples", 1, 10, True) or 1)
    _number(body, "cfg_scale", 0, 35, False)
    _number(body, "steps", 10, 150, True)
    seed = int(_number(body, "seed", 0, MAX_SEED_V1, True) or 0) or random_seed(request, MAX_SEED_V1)
    if body.get("sampler") is not None and body["sampler"] not in V1_SAMPLERS:
        raise _bad_v1(f"sampler: must be one of {', '.join(sorted(V1_SAMPLERS))}")
    preset = body.get("clip_guidance_preset")
    if preset is not None and preset not in V1_CLIP_PRESETS:
        raise _bad_v1(f"clip_guidance_preset: must be one of {', '.join(sorted(V1_CLIP_PRESETS))}")
    finish = "CONTENT_FILTERED" if BLOCK_TRIGGER in prompt else "SUCCESS"
    seeds = [(seed + i - 1) % MAX_SEED_V1 + 1 for i in range(samples)]
    images = await asyncio.gather(*(render(prompt, s, width, height) for s in seeds))
    accept = request.headers.get("accept", "application/json")
    if accept.startswith("image/png"):
        if samples != 1:
            raise _bad_v1("accept: image/png returns one image; set samples to 1")
        return Response(
            images[0], media_type="image/png", headers={"finish-reason": finish, "seed": str(seed)}
        )
    artifacts = [
        {"base64": base64.b64encode(png).decode("ascii"), "seed": s, "finishReason": finish}
        for png, s in zip(images, seeds, strict=True)
    ]
    return json_response({"artifacts": artifacts})


# ---------------------------------------------------------------------------------- dialect + routes
def _to_stability(response: Response, v1: bool) -> Response:
    """Re-render an OpenAI-shaped error from the guard in Stability's shape."""
    try:
        error = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):
        return response  # already Stability's (no "error" key) or not JSON
    if not isinstance(error, dict):
        return response
    status = response.status_code
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    message = str(error.get("message") or "")
    code = error.get("code")
    name = code if isinstance(code, str) and code and " " not in code else None  # a scripted fault's code
    if status == 401:
        message = "authorization: missing or invalid API key (mmq simulator: any bearer key works)"
        name = "unauthorized"
    return StabilityError(status, message, name, headers, v1=v1).response()


def _dialect(endpoint: Handler, v1: bool) -> Handler:
    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        return _to_stability(response, v1) if response.status_code >= 400 else response

    return wrapper


_V2_PATH = "/v2beta/stable-image/generate/{endpoint}"
_V1_PATH = "/v1/generation/{engine_id}/text-to-image"


def stability_routes() -> list[Route]:
    """The Stability-dialect routes, guarded like the OpenAI ones (stats count each path template)."""
    return [
        Route(
            _V2_PATH,
            _dialect(guarded(generate_v2, _V2_PATH), False),
            methods=["POST"],
        ),
        Route(
            _V1_PATH,
            _dialect(guarded(generate_v1, _V1_PATH), True),
            methods=["POST"],
        ),
    ]
