"""POST /v1/messages: the Anthropic Messages dialect of the simulator.

Validates the way the real API does (x-api-key, anthropic-version, required max_tokens, user/assistant
alternation, image media types checked against the bytes, the 5 MB base64 cap, pixel limits) and answers
with the same real descriptions as /v1/chat/completions, in Anthropic's message shape. Every error,
the knob-injected ones included, uses Anthropic's {"type":"error","error":{...}} body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from datetime import UTC, datetime, timedelta

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.chat import PDF_PAGE, Received, describe_cached, image_bytes
from mmq.simulator.errors import ApiError, json_response
from mmq.simulator.guard import Handler, guarded
from mmq.simulator.parsing import estimate_tokens
from mmq.simulator.state import SimState

ANTHROPIC_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        "overloaded_error",
    }
)
# The type an error raised in OpenAI terms (shared helpers, the guard, knobs, scripted faults) gets here.
# Statuses are kept as raised, so a scripted 503 stays a 503.
TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
IMAGE_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
MAX_IMAGE_B64 = 5 * 1024 * 1024  # enforced on the base64 string, not the decoded bytes
MAX_SIDE = 8000
MAX_SIDE_MANY = 2000  # once a request carries more than MANY_IMAGES images
MANY_IMAGES = 20
MAX_IMAGES = 100
_ROLES = ("user", "assistant")
PATH = "/v1/messages"


def anthropic_error(status: int, type: str, message: str) -> ApiError:
    return ApiError(status, message, type=type)


def invalid(message: str) -> ApiError:
    return anthropic_error(400, "invalid_request_error", message)


def render_error(exc: ApiError) -> Response:
    kind = exc.type
    if kind not in ANTHROPIC_TYPES:
        # a scripted fault may name its Anthropic type in `code`; otherwise the status decides
        kind = str(exc.code) if exc.code in ANTHROPIC_TYPES else TYPE_BY_STATUS.get(exc.status, "api_error")
    body = {"type": "error", "error": {"type": kind, "message": exc.message}}
    return json_response(body, exc.status, exc.headers)


# -------------------------------------------------------------------------------------------- guard
def api_key(request: Request) -> str:
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        raise anthropic_error(401, "authentication_error", "x-api-key header is required")
    return key


def _rfc3339(seconds_from_now: float) -> str:
    when = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _with_limit_headers(endpoint: Handler) -> Handler:
    """The guard's x-ratelimit-* headers as anthropic-ratelimit-requests-* (reset is an RFC 3339 time);
    retry-after stays, retry-after-ms goes."""

    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        headers = response.headers
        if "x-ratelimit-limit-requests" not in headers:
            return response  # no limiter configured
        limit, remaining = headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]
        wait_ms = headers.get("retry-after-ms")  # sent on the limiter's own refusals only
        for name in ("limit", "remaining", "reset"):
            del headers[f"x-ratelimit-{name}-requests"]
        del headers["retry-after-ms"]
        # admitted: the window empties window_s from now; refused: the time a slot frees up
        reset = int(wait_ms) / 1000 if wait_ms else request.app.state.sim.config.window_s
        headers["anthropic-ratelimit-requests-limit"] = limit
        headers["anthropic-ratelimit-requests-remaining"] = remaining
        headers["anthropic-ratelimit-requests-reset"] = _rfc3339(reset)
        return response

    return wrapper


# ------------------------------------------------------------------------------------------ request
async def read_body(request: Request) -> dict[str, object]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise invalid("There was an error parsing the body of your request as JSON.") from None
    if not isinstance(body, dict):
        raise invalid("Input should be a valid dictionary")
    return body


def _int_field(body: dict[str, object], name: str, lo: int) -> int:
    value = body.get(name)
    if value is None:
        raise invalid(f"{name}: Field required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name}: Input should be a valid integer")
    if value < lo:
        raise invalid(f"{name}: Input should be greater than or equal to {lo}")
    return value


def _unit_float(body: dict[str, object], name: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise invalid(f"{name}: Input should be a number between 0 and 1")


def _system_tokens(system: object) -> int:
    if system is None:
        return 0
    if isinstance(system, str):
        return estimate_tokens(system)
    if isinstance(system, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in system
    ):
        return sum(estimate_tokens(b["text"]) for b in system)
    raise invalid("system: Input should be a valid string or a list of text blocks")


def _check_turns(messages: object) -> list[dict[str, object]]:
    if not isinstance(messages, list):
        raise invalid(
            "messages: Field required" if messages is None else "messages: Input should be a valid list"
        )
    if not messages:
        raise invalid("messages: at least one message is required")
    previous = None
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise invalid(f"messages.{i}: Input should be a valid dictionary")
        role = msg.get("role")
        if role not in _ROLES:
            # "system" lands here too: Anthropic takes the system prompt only as a top-level field
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise invalid('messages: first message must use the "user" role')
        if role == previous:
            raise invalid(
                f'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        previous = role
    return messages


def _b64(data: object, param: str) -> bytes:
    if not isinstance(data, str):
        raise invalid(f"{param}.data: Field required")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{param}.data: Invalid base64 data") from None


def image_tokens(width: int, height: int) -> int:
    """Anthropic's estimate, w*h/750, after its downsizing to a 1568 px long edge."""
    scale = min(1.0, 1568 / max(width, height))
    return max(1, math.ceil(width * scale * height * scale / 750))


async def _image(block: dict[str, object], param: str, got: Received, sim: SimState, many: bool) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{param}.source: Field required")
    declared = None
    if source.get("type") == "base64":
        declared = source.get("media_type")
        if declared not in IMAGE_MEDIA_TYPES.values():
            raise invalid(
                f"{param}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                "'image/gif' or 'image/webp'"
            )
        size = len(source["data"]) if isinstance(source.get("data"), str) else 0
        if size > MAX_IMAGE_B64:
            raise invalid(
                f"{param}.source.base64: image exceeds 5 MB maximum: {size} bytes > {MAX_IMAGE_B64} bytes"
            )
        data = _b64(source.get("data"), f"{param}.source.base64")
    elif source.get("type") == "url":
        if not isinstance(source.get("url"), str):
            raise invalid(f"{param}.source.url.url: Field required")
        data = await image_bytes(source["url"], f"{param}.source.url", sim)
    else:
        raise invalid(f"{param}.source: Input tag {source.get('type')!r} does not match 'base64' or 'url'")
    try:
        info = await describe_cached(data)
    except Image.DecompressionBombError:
        raise invalid(f"{param}.source: Could not process image: too many pixels") from None
    except Exception:  # any decoder failure on arbitrary bytes means "not an image we can read"
        raise invalid(f"{param}.source: Could not process image") from None
    actual = IMAGE_MEDIA_TYPES.get(str(info["format"]))
    if actual is None:
        raise invalid(f"{param}.source: Could not process image: {info['format']} is not supported")
    if declared is not None and declared != actual:
        raise invalid(
            f"{param}.source.base64: The image was specified using the {declared} media type, "
            f"but the image appears to be a {actual} image"
        )
    width, height = int(info["width"]), int(info["height"])  # type: ignore[call-overload]
    limit = MAX_SIDE_MANY if many else MAX_SIDE
    if max(width, height) > limit:
        many_txt = " for many-image requests" if many else ""
        raise invalid(
            f"{param}.source.base64.data: At least one of the image dimensions exceed max allowed size"
            f"{many_txt}: {limit} pixels"
        )
    got.images += 1
    r, g, b = info["dominant_rgb"]  # type: ignore[misc]
    subject = ""
    if "subject_rgb" in info:
        sr, sg, sb = info["subject_rgb"]  # type: ignore[misc]
        subject = f", with a {info['subject_colour']} subject (#{sr:02x}{sg:02x}{sb:02x})"
    got.sentences.append(
        f"Image {got.images}: {width}x{height} {info['format']}, "
        f"mostly {info['colour']} (#{r:02x}{g:02x}{b:02x}){subject}."
    )
    got.prompt_tokens += image_tokens(width, height)


async def _pdf_bytes(source: dict[str, object], param: str, sim: SimState) -> bytes:
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return await image_bytes(source["url"], f"{param}.source.url", sim)  # a plain download
    if source.get("media_type") != "application/pdf":
        raise invalid(f"{param}.source.base64.media_type: Input should be 'application/pdf'")
    return _b64(source.get("data"), f"{param}.source.base64")


async def _document(block: dict[str, object], param: str, got: Received, sim: SimState) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{param}.source: Field required")
    title = block.get("title")
    label = f" ({title})" if isinstance(title, str) and title else ""
    if source.get("type") == "text":
        if source.get("media_type") != "text/plain" or not isinstance(source.get("data"), str):
            raise invalid(f"{param}.source.text: media_type must be 'text/plain' and data a string")
        text = source["data"]
        got.files += 1
        got.sentences.append(f"File {got.files}: plain text{label}, {len(text)} characters.")
        got.prompt_tokens += estimate_tokens(text)
        return
    if source.get("type") not in ("base64", "url"):
        raise invalid(
            f"{param}.source: Input tag {source.get('type')!r} does not match 'base64', 'text' or 'url'"
        )
    data = await _pdf_bytes(source, param, sim)
    if not data.startswith(b"%PDF-"):
        raise invalid(f"{param}.source.base64.data: The PDF specified was not valid.")
    pages = max(1, len(PDF_PAGE.findall(data)))
    got.files += 1
    got.sentences.append(f"File {got.files}: PDF{label}, about {pages} page{'s' if pages != 1 else ''}.")
    got.prompt_tokens += 1500 * pages  # Anthropic bills each page as text plus an image


def _count_images(messages: list[dict[str, object]]) -> int:
    return sum(
        1
        for msg in messages
        if isinstance(msg.get("content"), list)
        for block in msg["content"]  # type: ignore[union-attr]
        if isinstance(block, dict) and block.get("type") == "image"
    )


async def _read_turns(messages: list[dict[str, object]], sim: SimState) -> Received:
    got = Received()
    n_images = _count_images(messages)
    if n_images > MAX_IMAGES:
        raise invalid(f"messages: too many images in the request: {n_images} > {MAX_IMAGES}")
    for i, msg in enumerate(messages):
        content = msg.get("content")
        got.prompt_tokens += 3
        if isinstance(content, str):
            texts = [content]
        elif isinstance(content, list):
            texts = []
            for j, block in enumerate(content):
                kind = block.get("type") if isinstance(block, dict) else None
                param = f"messages.{i}.content.{j}.{kind}"
                if kind == "text":
                    if not isinstance(block.get("text"), str) or not block["text"]:
                        raise invalid(f"messages: text content blocks must be non-empty ({param})")
                    texts.append(block["text"])
                elif kind in ("image", "document") and msg["role"] != "user":
                    raise invalid(f"{param}: {kind} blocks are only allowed in user messages")
                elif kind == "image":
                    await _image(block, param, got, sim, many=n_images > MANY_IMAGES)
                elif kind == "document":
                    await _document(block, param, got, sim)
                else:
                    raise invalid(
                        f"messages.{i}.content.{j}: Input tag {kind!r} found using 'type' does not match "
                        "any of the expected tags: 'text', 'image', 'document'"
                    )
        else:
            raise invalid(f"messages.{i}.content: Input should be a valid string or list")
        text = " ".join(texts)
        got.prompt_tokens += estimate_tokens(text)
        if msg["role"] == "user" and text:
            got.last_user_text = text
    return got


def _stop_sequences(body: dict[str, object]) -> list[str]:
    stops = body.get("stop_sequences")
    if stops is None:
        return []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop_sequences: Input should be a valid list of strings")
    return stops


async def messages(request: Request) -> Response:
    if not request.headers.get("anthropic-version"):
        raise invalid("anthropic-version: header is required")
    body = await read_body(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: Field required")
    return await answer(request, body, model)


async def answer(request: Request, body: dict[str, object], model: str) -> Response:
    """A Messages body checked and answered (the model already read, from the body or the URL): shared
    with the Claude-on-Vertex dialect (mmq/simulator/vertex_anthropic.py), whose envelope differs."""
    max_tokens = _int_field(body, "max_tokens", 1)
    turns = _check_turns(body.get("messages"))
    prompt_tokens = _system_tokens(body.get("system"))
    stops = _stop_sequences(body)
    _unit_float(body, "temperature")
    _unit_float(body, "top_p")
    if body.get("stream"):
        raise invalid("stream: streaming is not supported by the mmq simulator")

    got = await _read_turns(turns, request.app.state.sim)
    prompt = got.last_user_text
    if got.sentences:
        text = "[mmq simulator] " + " ".join(got.sentences) + (f" Prompt: {prompt[:80]}" if prompt else "")
    else:
        text = f"[mmq simulator] You said: {prompt[:200]}"
    stop_reason, stop_sequence = "end_turn", None
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if hits:
        at, stop_sequence = min(hits)
        text, stop_reason = text[:at], "stop_sequence"
    output_tokens = estimate_tokens(text)
    if output_tokens > max_tokens:
        text, stop_reason, stop_sequence, output_tokens = (
            text[: max_tokens * 4],
            "max_tokens",
            None,
            max_tokens,
        )

    # deterministic id: the same request always gets the same message id
    digest = hashlib.sha256(await request.body()).hexdigest()[:24]
    return json_response(
        {
            "id": f"msg_sim_{digest}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {
                "input_tokens": got.prompt_tokens + prompt_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }
    )


def anthropic_routes() -> list[Route]:
    """POST /v1/messages, guarded with x-api-key auth and Anthropic-shaped errors and rate-limit headers."""
    endpoint = guarded(messages, PATH, key=api_key, render=render_error)
    return [Route(PATH, _with_limit_headers(endpoint), methods=["POST"])]
