"""AWS Bedrock: vision chat (with documents) through Converse, image generation through InvokeModel.

Takes OpenAI-shaped requests and speaks Bedrock's rest-json (blobs are base64 strings in the body).
Reference: ../shared/reference/providers.md §5 and the cheat-sheet in §9.

Targets
- `base_url`: https://bedrock-runtime.{region}.amazonaws.com. The adapter's `default_base_url` is that
  template; the `{region}` placeholder (or an empty base_url) is filled from the target's region, so the
  router can hand the template over as is. A simulator or a VPC endpoint is given as a plain base_url.
- Region: Target header `x-mmq-aws-region` (consumed, never forwarded), else the region in a
  bedrock-runtime[-fips].{region}.amazonaws.com base_url, else us-east-1. It is also the SigV4 region.
- Credentials (`Target.api_key`), two forms:
    SigV4 (default):  "ACCESS_KEY_ID:SECRET_ACCESS_KEY" or "ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN"
                      (AWS key ids, secrets and session tokens never contain ':'). Requests are signed
                      with botocore's SigV4Auth, signing name "bedrock", over the exact bytes sent.
    Bedrock API key:  the key itself, with the Target header `x-mmq-aws-auth: bearer` (consumed); it is
                      sent as `Authorization: Bearer <key>`.
  e.g. a secrets-file entry {"bedrock-prod": {"api_key": "AKIA...:wJalr...",
  "headers": {"x-mmq-aws-region": "eu-central-1"}}}.

Chat (Converse, `POST {base}/model/{modelId}/converse`): system/developer messages become top-level
`system` blocks; user/assistant turns are merged so they alternate and must start with a user turn;
images become `image{format, source{bytes}}` with the format taken from the bytes; file parts become
`document{format, name, source{bytes}}`, the name derived from the filename and sanitised to Bedrock's
alphabet. Bedrock reads bytes only (S3 aside), so MediaRules says remote_urls=False: an http(s) URL that
still reaches the adapter is refused (InvalidJob), the worker's media stage should have inlined it.
OpenAI sampling parameters map through INFERENCE_CONFIG; OpenAI-only ones (seed, penalties, user) are
dropped, tools and n > 1 are refused.

Images (InvokeModel, `POST {base}/model/{modelId}/invoke`): the native body depends on the model family,
chosen by model-id prefix (IMAGE_FAMILIES): Amazon Titan / Nova Canvas (`numberOfImages` = n), Stability
SD3 / Stable Image (one image per call, n calls made in turn), Stability SDXL. Answers become the OpenAI
images response {created, data: [{b64_json}]}; mmq stores the bytes itself (worker/results.py), so
`response_format` needs no translation.

Errors: Bedrock's `x-amzn-ErrorType` header + {"message"} body -> ProviderError with the exception name as
code; ERRORS says which are worth a retry.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mmq.contract import Kind
from mmq.errors import (
    RETRYABLE_STATUSES,
    InvalidJob,
    ProviderError,
    is_retryable,
    parse_retry_after,
    unparseable,
)
from mmq.media import MediaError, base64_payload, sniff_base64
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target
from worker.providers.chat_shape import (
    SYSTEM_ROLES,
    content_blocks,
    not_inlined,
    refuse_openai_only,
    stop_sequences,
)
from worker.providers.stability import aspect_ratio, v1_dimensions

# ------------------------------------------------------------------------------------------ endpoints
DEFAULT_BASE_URL = "https://bedrock-runtime.{region}.amazonaws.com"
DEFAULT_REGION = "us-east-1"
REGION_HEADER = "x-mmq-aws-region"
AUTH_HEADER = "x-mmq-aws-auth"  # "sigv4" (default) | "bearer"
SIGNING_NAME = "bedrock"  # not bedrock-runtime (reference §5.1)
_HOST = re.compile(r"^bedrock-runtime(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")
# cross-region inference profiles prefix the model id with a geography
_PROFILE_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.")

# -------------------------------------------------------------------------------------------- media
IMAGE_FORMATS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
DOCUMENT_FORMATS: dict[str, str] = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
MAX_IMAGE_BYTES = 3_932_160  # 3.75 MB per image (Message.content limits, reference §5.2)
MAX_IMAGE_SIDE = 8000
MAX_IMAGES = 20  # per message; kept per request so merged turns can never exceed it
MAX_DOCUMENT_NAME = 200
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")


# --------------------------------------------------------------------------------------------- chat
def _temperature(value: Any) -> float:
    return min(float(value), 1.0)  # OpenAI allows up to 2, Converse up to 1: clamp, not fail


# OpenAI chat parameter -> (inferenceConfig field, converter). Earlier rows win for the same field
# (max_completion_tokens over the legacy max_tokens).
INFERENCE_CONFIG: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("max_completion_tokens", "maxTokens", int),
    ("max_tokens", "maxTokens", int),
    ("temperature", "temperature", _temperature),
    ("top_p", "topP", float),
    ("stop", "stopSequences", stop_sequences),
)
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}  # anything else reads as "stop"

# -------------------------------------------------------------------------------------------- images
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

# -------------------------------------------------------------------------------------------- errors
# exception name -> worth another try. Unknown names fall back to the HTTP status.
ERRORS: dict[str, bool] = {
    "ThrottlingException": True,
    "ModelNotReadyException": True,
    "ServiceUnavailableException": True,
    "InternalServerException": True,
    "ModelTimeoutException": True,
    "ServiceQuotaExceededException": True,  # a 400 that clears later (reference §5.3)
    "ValidationException": False,
    "AccessDeniedException": False,
    "ResourceNotFoundException": False,
    "UnrecognizedClientException": False,
    "InvalidSignatureException": False,
    "IncompleteSignatureException": False,
    "MissingAuthenticationTokenException": False,
    "ExpiredTokenException": False,
    "ModelErrorException": False,  # unless the model's own status says otherwise, see error_from_response
}
_CONTENT_FILTER_HINT = "content filters"  # Titan's 400 for a blocked prompt


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


def _not_inlined(url: str, where: str) -> InvalidJob:
    return not_inlined("bedrock", url, where, "Bedrock reads inline bytes only")


def _inline(url: str, where: str) -> tuple[str | None, str, str | None]:
    """(sniffed mime, base64 payload, declared mime) of a data: URL, its payload sent as given."""
    try:
        declared, payload = base64_payload(url)
        return sniff_base64(payload), payload, declared
    except MediaError as e:
        raise InvalidJob(f"{where}: {e}", type="invalid_media") from None


def _image_block(spec: Any, where: str) -> dict[str, Any]:
    url = spec.get("url") if isinstance(spec, Mapping) else spec
    if not isinstance(url, str) or not url:
        raise InvalidJob(f"{where}: image_url.url is required")
    if not url.startswith("data:"):
        raise _not_inlined(url, where)
    mime, payload, _ = _inline(url, where)
    # Bedrock rejects a format that disagrees with the bytes; the bytes decide, as everywhere in mmq
    if mime not in IMAGE_FORMATS:
        raise InvalidJob(
            f"{where}: Bedrock accepts {', '.join(IMAGE_FORMATS.values())} images, "
            f"not {mime or 'unknown data'}",
            type="invalid_media",
        )
    # detail has no Converse equivalent and is dropped
    return {"image": {"format": IMAGE_FORMATS[mime], "source": {"bytes": payload}}}


def document_name(filename: Any, index: int) -> str:
    """A Bedrock document name from a filename: extension dropped, only alphanumerics, single spaces,
    hyphens, parentheses and square brackets kept, at most 200 characters. Neutral fallback."""
    stem = str(filename or "").rsplit("/", 1)[-1]
    if "." in stem.strip(".") and not stem.startswith("."):
        stem = stem.rsplit(".", 1)[0]
    name = _NAME_BAD_CHARS.sub("-", stem)
    name = re.sub(r"\s+", " ", name)
    name = re.sub(r"-{2,}", "-", name).strip(" -")[:MAX_DOCUMENT_NAME].strip(" ")
    return name or f"document-{index}"


def _document_format(mime: str | None, declared: str | None, filename: Any) -> str | None:
    if mime == "application/pdf":
        return "pdf"
    if declared in DOCUMENT_FORMATS:
        return DOCUMENT_FORMATS[declared]
    ext = str(filename or "").rsplit(".", 1)[-1].lower() if "." in str(filename or "") else ""
    return ext if ext in DOCUMENT_FORMATS.values() else None


def _document_block(spec: Any, where: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise InvalidJob(f"{where}: file must be an object")
    url = spec.get("file_data")
    if not isinstance(url, str):
        raise InvalidJob(f"{where}: Bedrock needs inline file_data (OpenAI file_id means nothing there)")
    if not url.startswith("data:"):
        raise _not_inlined(url, where)
    mime, payload, declared = _inline(url, where)
    fmt = _document_format(mime, declared, spec.get("filename"))
    if fmt is None:
        raise InvalidJob(
            f"{where}: Bedrock documents are {', '.join(DOCUMENT_FORMATS.values())}, "
            f"not {mime or declared or 'unknown data'}",
            type="invalid_media",
        )
    name = base = document_name(spec.get("filename"), len(names) + 1)
    copy = 2
    while name in names:  # two files called report.pdf must still be told apart
        suffix = f" ({copy})"
        name, copy = base[: MAX_DOCUMENT_NAME - len(suffix)] + suffix, copy + 1
    names.add(name)
    return {"document": {"format": fmt, "name": name, "source": {"bytes": payload}}}


def _blocks(content: Any, where: str, names: set[str]) -> list[dict[str, Any]]:
    return content_blocks(
        content,
        where,
        "bedrock",
        text=lambda text: {"text": text},
        image=_image_block,
        file=lambda spec, pwhere: _document_block(spec, pwhere, names),
    )


def _conversation(messages: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating user/assistant messages starting with user)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        if message.get("tool_calls") or message.get("function_call") or role == "tool":
            raise InvalidJob(f"{where}: tool calls are not supported by the bedrock adapter")
        blocks = _blocks(message.get("content"), where, names)
        if role in SYSTEM_ROLES:
            if any("text" not in b for b in blocks):
                raise InvalidJob(f"{where}: a Bedrock system prompt can only hold text")
            system += blocks
            continue
        if role not in ("user", "assistant"):
            raise InvalidJob(f"{where}: role {role!r} is not supported by the bedrock adapter")
        if role == "assistant" and any("text" not in b for b in blocks):
            raise InvalidJob(f"{where}: Bedrock accepts images and documents in user messages only")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks  # Converse requires strict alternation
        else:
            turns.append({"role": role, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        raise InvalidJob("bedrock needs a conversation that starts with a non-empty user message")
    for turn in turns:
        has_doc = any("document" in b for b in turn["content"])
        if has_doc and not any("text" in b for b in turn["content"]):
            raise InvalidJob("Bedrock requires a text part in every message that carries a document")
    return system, turns


def _chat_body(request: dict[str, Any]) -> dict[str, Any]:
    refuse_openai_only(request, "bedrock")
    if (request.get("n") or 1) > 1:
        raise InvalidJob("n: Bedrock Converse returns one choice per request; send n=1")
    fmt = request.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, Mapping) else fmt
    if kind not in (None, "text"):
        raise InvalidJob(f"response_format {kind!r} is not supported by the bedrock adapter")
    system, turns = _conversation(request.get("messages") or [])
    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system
    config: dict[str, Any] = {}
    for param, field, convert in INFERENCE_CONFIG:
        if request.get(param) is not None and field not in config:
            config[field] = convert(request[param])
    if config:
        body["inferenceConfig"] = config
    return body


# ---------------------------------------------------------------------------------------- images
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


def _titan_bodies(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    n = int(request.get("n") or 1)
    if n > TITAN_MAX_IMAGES:
        raise InvalidJob(
            f"Titan / Nova Canvas return at most {TITAN_MAX_IMAGES} images per request; got n={n}"
        )
    params: dict[str, Any] = {"text": request["prompt"]}
    if request.get("negative_prompt"):
        params["negativeText"] = request["negative_prompt"]
    width, height = _size(request.get("size"), TITAN_DEFAULT_SIZE)
    config: dict[str, Any] = {"numberOfImages": n, "width": width, "height": height}
    quality = TITAN_QUALITY.get(str(request.get("quality")))
    if quality:
        config["quality"] = quality
    for name, field in (("cfg_scale", "cfgScale"), ("seed", "seed")):
        if request.get(name) is not None:
            config[field] = request[name]
    return [{"taskType": "TEXT_IMAGE", "textToImageParams": params, "imageGenerationConfig": config}]


def _stability3_bodies(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    fmt = request.get("output_format") or "png"
    if fmt not in STABILITY3_OUTPUT_FORMATS:
        raise InvalidJob(
            f"output_format {fmt!r}: Stability on Bedrock writes {sorted(STABILITY3_OUTPUT_FORMATS)}"
        )
    body: dict[str, Any] = {"prompt": request["prompt"], "mode": "text-to-image"}
    ratio = aspect_ratio(request.get("size"))
    if ratio:
        body["aspect_ratio"] = ratio
    body["output_format"] = fmt  # lower case as on Stability's own API; the case Bedrock wants is unverified
    if request.get("negative_prompt"):
        body["negative_prompt"] = request["negative_prompt"]
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
    width, height = v1_dimensions("stable-diffusion-xl-1024", request.get("size")) or SDXL_DEFAULT_SIZE
    body: dict[str, Any] = {"text_prompts": prompts, "width": width, "height": height}
    for name in ("cfg_scale", "steps", "seed", "style_preset", "sampler"):
        if request.get(name) is not None:
            body[name] = request[name]
    return [body for _ in range(int(request.get("n") or 1))]  # SDXL on Bedrock: one image per call


IMAGE_BODIES: dict[str, Callable[[Mapping[str, Any]], list[dict[str, Any]]]] = {
    "titan": _titan_bodies,
    "stability3": _stability3_bodies,
    "sdxl": _sdxl_bodies,
}


def to_native(kind: Kind, request: dict[str, Any]) -> NativeRequest:
    """OpenAI-shaped request -> the Bedrock operation and body(ies). Pure; raises InvalidJob."""
    model_id = _model_id(request.get("model"))
    if kind is Kind.chat:
        return NativeRequest("converse", model_id, [_chat_body(request)])
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
def _unparseable(body: Any) -> ProviderError:
    return unparseable("bedrock", body)


def _usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, Mapping):
        return None
    cached = int(usage.get("cacheReadInputTokens") or 0)
    # inputTokens leaves cache reads/writes out; OpenAI's prompt_tokens is the whole prompt
    prompt = int(usage.get("inputTokens") or 0) + cached + int(usage.get("cacheWriteInputTokens") or 0)
    completion = int(usage.get("outputTokens") or 0)
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": max(int(usage.get("totalTokens") or 0), prompt + completion),
    }
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def _chat_response(
    body: Mapping[str, Any], request: Mapping[str, Any], request_id: str | None
) -> dict[str, Any]:
    output = body.get("output")
    message = output.get("message") if isinstance(output, Mapping) else None
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(content, list):
        raise _unparseable(body)
    texts = [b["text"] for b in content if isinstance(b, Mapping) and isinstance(b.get("text"), str)]
    out: dict[str, Any] = {
        "id": f"chatcmpl-bedrock-{request_id or uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(texts), "refusal": None},
                "finish_reason": FINISH_REASONS.get(str(body.get("stopReason") or ""), "stop"),
                "logprobs": None,
            }
        ],
    }
    usage = _usage(body.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


def _filtered(why: str) -> ProviderError:
    return ProviderError(why, status=200, code="content_filter", retryable=False, provider="bedrock")


def _images(family: str, body: Mapping[str, Any]) -> list[str]:
    if family == "sdxl":
        artifacts = body.get("artifacts")
        if not isinstance(artifacts, list) or not artifacts:
            raise _unparseable(body)
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
        raise _unparseable(body)
    return images  # type: ignore[return-value]


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
            raise _unparseable(body)
    if kind is Kind.chat:
        return _chat_response(bodies[0], request, request_id)
    if family is None:
        raise _unparseable(bodies)
    return {
        "created": int(time.time()),
        "data": [{"b64_json": i} for b in bodies for i in _images(family, b)],
    }


# ========================================================================================= errors
def error_name(resp: httpx.Response, body: Any) -> str | None:
    """The exception name from x-amzn-ErrorType ("Name:uri") or the body's __type ("ns#Name")."""
    header = resp.headers.get("x-amzn-errortype")
    if header:
        return header.split(":", 1)[0].strip() or None
    if isinstance(body, Mapping) and isinstance(body.get("__type"), str):
        return body["__type"].rsplit("#", 1)[-1] or None
    return None


def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    message = resp.reason_phrase or "error"
    try:
        body = resp.json()
    except ValueError:
        body = None
        message = resp.text[:300].strip() or message
    if isinstance(body, Mapping):
        message = str(body.get("message") or body.get("Message") or message)
    name = error_name(resp, body)
    status = resp.status_code
    if name in ERRORS:
        retryable = ERRORS[name]
    else:
        retryable = is_retryable(status, None)
    if name == "ModelErrorException" and isinstance(body, Mapping):
        # the model's own failure: as retryable as the status the model gave
        retryable = body.get("originalStatusCode") in RETRYABLE_STATUSES
    code = name
    if name == "ValidationException" and _CONTENT_FILTER_HINT in message.lower():
        code = "content_filter"
    return ProviderError(
        message,
        status=status,
        code=code,
        retryable=retryable,
        retry_after_s=parse_retry_after(resp.headers),
        provider=provider,
    )


# ========================================================================================== auth
def parse_credentials(api_key: str) -> Credentials:
    """Target.api_key "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]" -> botocore Credentials.

    Raises ValueError (without echoing the key)."""
    parts = api_key.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError("expected ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]")
    return Credentials(parts[0], parts[1], parts[2] if len(parts) == 3 and parts[2] else None)


def sigv4_headers(
    url: str, headers: Mapping[str, str], body: bytes, credentials: Credentials, region: str
) -> dict[str, str]:
    """The headers that sign a POST of exactly `body` to `url`: Authorization, X-Amz-Date, the payload
    hash and, for session credentials, X-Amz-Security-Token. Every header in `headers` is signed."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(credentials, SIGNING_NAME, region).add_auth(request)
    return {k: v for k, v in request.headers.items() if k.lower() not in {h.lower() for h in headers}}


# ======================================================================================== adapter
class BedrockAdapter:
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
    default_base_url = DEFAULT_BASE_URL

    def _config_error(self, message: str) -> ProviderError:
        return ProviderError(message, code="target_misconfigured", retryable=False, provider=self.name)

    def region_for(self, target: Target) -> str:
        given = {k.lower(): v for k, v in target.headers.items()}
        if given.get(REGION_HEADER):
            return given[REGION_HEADER].strip()
        host = urlsplit(target.base_url or "").hostname or ""
        match = _HOST.match(host)
        return match["region"] if match else DEFAULT_REGION

    def base_url_for(self, target: Target) -> str:
        base = (target.base_url or DEFAULT_BASE_URL).rstrip("/")
        return base.replace("{region}", self.region_for(target))

    def endpoint(self, target: Target, model_id: str, operation: str) -> str:
        # the model id is percent-encoded once in the URL (":" -> %3A, "/" -> %2F); SigV4 encodes it again
        return f"{self.base_url_for(target)}/model/{quote(model_id, safe='')}/{operation}"

    def _headers(self, target: Target, url: str, body: bytes) -> dict[str, str]:
        auth = "sigv4"
        headers = {"content-type": "application/json", "accept": "application/json"}
        for key, value in target.headers.items():
            lower = key.lower()
            if lower == AUTH_HEADER:
                auth = value.strip().lower()
            elif lower != REGION_HEADER:
                headers[lower] = value
        if not target.api_key:
            raise self._config_error(f"bedrock target {target.name!r} has no credentials (api_key)")
        if auth == "bearer":
            return {**headers, "authorization": f"Bearer {target.api_key}"}
        if auth != "sigv4":
            raise self._config_error(f"{AUTH_HEADER} must be 'sigv4' or 'bearer', not {auth!r}")
        try:
            credentials = parse_credentials(target.api_key)
        except ValueError as e:
            raise self._config_error(
                f"bedrock target {target.name!r}: api_key {e} (or set {AUTH_HEADER}: bearer for an API key)"
            ) from None
        # the Host httpx will send is part of the signature, so sign with exactly that value
        headers["host"] = httpx.URL(url).netloc.decode("ascii")
        return {**headers, **sigv4_headers(url, headers, body, credentials, self.region_for(target))}

    async def call(
        self,
        client: httpx.AsyncClient,
        target: Target,
        kind: Kind,
        request: dict[str, Any],
        audio: AudioInput | None = None,
    ) -> ProviderResponse:
        native = to_native(kind, request)
        url = self.endpoint(target, native.model_id, native.operation)
        answers: list[Any] = []
        request_id: str | None = None
        for payload in native.bodies:  # one after the other: one job never bursts several calls at once
            body = _dumps(payload)
            resp = await client.post(url, headers=self._headers(target, url, body), content=body)
            if resp.status_code >= 400:
                raise error_from_response(resp, self.name)
            try:
                answers.append(resp.json())
            except ValueError:
                answers.append(resp.text)
            request_id = (
                resp.headers.get("x-amzn-requestid") or resp.headers.get("x-request-id") or request_id
            )
        try:
            out = from_native(kind, answers, request, native.family, request_id)
        except ProviderError as err:
            err.provider = self.name
            raise
        return ProviderResponse(200, body=out, request_id=request_id, usage=out.get("usage"))


def _dumps(payload: dict[str, Any]) -> bytes:
    # the bytes that are signed are the bytes that are sent
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
