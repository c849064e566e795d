"""Google Gemini, on AI Studio (the Developer API) and on Vertex AI: vision chat and Imagen images.

Takes OpenAI-shaped requests and speaks Google's JSON (camelCase, as the google-genai SDK sends it; the
REST docs' snake_case forms are accepted by Google too). Reference: ../shared/reference/providers.md §4.

Targets
- AI Studio, provider "gemini": `base_url` https://generativelanguage.googleapis.com (a trailing /v1beta
  is tolerated), `Target.api_key` is sent as `x-goog-api-key` (never as `?key=`, which would put the
  secret in URLs and logs).
- Vertex AI, provider "vertex": `base_url` https://{location}-aiplatform.googleapis.com (or
  https://aiplatform.googleapis.com for the "global" location), `Target.api_key` is an OAuth2 access
  token sent as `Authorization: Bearer`; minting or refreshing it is not this adapter's job.
  The project and location travel as two Target headers that the adapter consumes and never forwards:
      x-mmq-vertex-project:  my-project    (required)
      x-mmq-vertex-location: us-central1   (optional if base_url is {location}-aiplatform.googleapis.com)
  e.g. a secrets-file entry {"vertex-prod": {"api_key": "<token>",
  "base_url": "https://us-central1-aiplatform.googleapis.com",
  "headers": {"x-mmq-vertex-project": "acme-ml", "x-mmq-vertex-location": "us-central1"}}}.
  The location is never guessed: it decides where the data is processed.

Media: Gemini needs bytes (`inlineData`) or a `fileData.fileUri` it can read itself, so MediaRules
says remote_urls=False and the worker inlines http(s) media as data: URLs. `gs://` URIs are passed as
fileData. GIF/BMP are not Gemini input types; the worker converts them first.

`to_native` / `from_native` are pure (no I/O) so golden tests can pin the exact wire bodies.
"""

from __future__ import annotations

import math
import mimetypes
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mmq.contract import Kind
from mmq.errors import RETRYABLE_STATUSES as RETRYABLE_HTTP
from mmq.errors import InvalidJob, ProviderError, parse_retry_after, unparseable
from mmq.media import MediaError, base64_payload, sniff, sniff_base64
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target
from worker.providers.chat_shape import (
    SYSTEM_ROLES,
    content_blocks,
    not_inlined,
    refuse_openai_only,
    stop_sequences,
)

# ------------------------------------------------------------------------------------------ endpoints
AI_STUDIO_BASE_URL = "https://generativelanguage.googleapis.com"
AI_STUDIO_API_VERSION = "v1beta"
VERTEX_API_VERSION = "v1"  # GA; the SDK itself uses v1beta1 (reference §4.1)
VERTEX_PROJECT_HEADER = "x-mmq-vertex-project"
VERTEX_LOCATION_HEADER = "x-mmq-vertex-location"
_VERTEX_HOST = re.compile(r"^(?:(?P<location>[a-z0-9-]+)-)?aiplatform\.googleapis\.com$")
_VERSION_SUFFIX = re.compile(r"/v1(?:beta1?)?$")  # base URLs copied from docs often end in a version
_MODEL_PREFIXES = ("publishers/google/models/", "models/")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# -------------------------------------------------------------------------------------------- media
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
DOCUMENT_TYPES = frozenset({"application/pdf", "text/plain"})
AUDIO_TYPES: dict[str, str] = {"wav": "audio/wav", "mp3": "audio/mp3"}  # OpenAI input_audio.format
# 20 MB per request including base64 is the documented floor (100 MB since 2026-01-12), so one raw
# image must stay under 3/4 of it, less room for the JSON around it.
INLINE_REQUEST_LIMIT = 20 * 1024 * 1024
MAX_INLINE_IMAGE_BYTES = 15 * 1024 * 1024
MAX_IMAGES = 3000  # Vertex, Gemini 1.5+ (reference §4.6)
_HEIF_BRANDS: dict[bytes, str] = {
    **dict.fromkeys((b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"), "image/heic"),
    **dict.fromkeys((b"mif1", b"msf1", b"heif"), "image/heif"),
}

# --------------------------------------------------------------------------------------------- chat
ROLES: dict[str, str] = {"user": "user", "assistant": "model"}


def _response_mime(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else value
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return "application/json"
    raise InvalidJob(f"response_format {kind!r} is not supported by the gemini adapter (use json_object)")


def _same(value: Any) -> Any:
    return value


# OpenAI chat parameter -> (generationConfig field, converter). Earlier rows win when two map to the
# same field (max_completion_tokens over the legacy max_tokens); a converter returning None drops it.
GENERATION_CONFIG: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("temperature", "temperature", _same),
    ("top_p", "topP", _same),
    ("max_completion_tokens", "maxOutputTokens", _same),
    ("max_tokens", "maxOutputTokens", _same),
    ("stop", "stopSequences", stop_sequences),
    ("n", "candidateCount", _same),
    ("seed", "seed", _same),
    ("presence_penalty", "presencePenalty", _same),
    ("frequency_penalty", "frequencyPenalty", _same),
    ("response_format", "responseMimeType", _response_mime),
)

FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
        ),
        "content_filter",
    ),
}  # anything else (OTHER, LANGUAGE, ...) reads as "stop"

# -------------------------------------------------------------------------------------------- Imagen
IMAGEN_MODEL_PREFIX = "imagen-"
DEFAULT_IMAGE_MODEL = "imagen-4.0-generate-001"  # model IDs are UNVERIFIED in the reference
IMAGEN_MAX_SAMPLES = 4  # sampleCount cap, UNVERIFIED in the reference
# Imagen aspect ratios (width / height); an OpenAI WxH size maps to the nearest one.
ASPECT_RATIOS: dict[str, float] = {"1:1": 1.0, "3:4": 3 / 4, "4:3": 4 / 3, "9:16": 9 / 16, "16:9": 16 / 9}
IMAGEN_MIME_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg"}  # OpenAI output_format

# -------------------------------------------------------------------------------------------- errors
RETRYABLE_GOOGLE_STATUSES = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"})
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")


# ================================================================================== request: chat
def _model_id(model: Any) -> str:
    if not isinstance(model, str):
        raise InvalidJob("model is required")
    for prefix in _MODEL_PREFIXES:
        if model.startswith(prefix):
            model = model[len(prefix) :]
    if not _MODEL_ID.match(model):
        raise InvalidJob(f"model {model!r} is not a Gemini model id (e.g. gemini-2.5-flash)")
    return model


def _sniff_mime(data: bytes) -> str | None:
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[data[8:12]]
    return sniff(data)


def _inline(url: str, where: str) -> tuple[str | None, str]:
    """(MIME type, base64 payload) of a data: URL. The bytes decide the type, as everywhere in mmq;
    the declared type only covers what cannot be sniffed (text/plain)."""
    try:  # the head is enough to sniff; the caller's base64 is sent as is, not re-encoded
        declared, payload = base64_payload(url)
        return sniff_base64(payload, _sniff_mime) or declared, payload
    except MediaError as e:
        raise InvalidJob(f"{where}: {e}", type="invalid_media") from None


def _gs_part(uri: str, mime: str | None, where: str) -> dict[str, Any]:
    mime = mime or mimetypes.guess_type(uri)[0]
    if not mime:
        raise InvalidJob(f"{where}: cannot tell the MIME type of {uri}; give the object a file extension")
    return {"fileData": {"mimeType": mime, "fileUri": uri}}


def _not_inlined(url: str, where: str) -> InvalidJob:
    return not_inlined("gemini", url, where, "Gemini reads only inline bytes or gs:// / Files API URIs")


def _image_part(spec: Any, where: str) -> dict[str, Any]:
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise InvalidJob(f"{where}: image_url.url is required")
    if url.startswith("gs://"):
        return _gs_part(url, None, where)
    if not url.startswith("data:"):
        raise _not_inlined(url, where)
    mime, payload = _inline(url, where)
    if mime not in IMAGE_TYPES:
        raise InvalidJob(
            f"{where}: {mime or 'unknown data'} is not an image type Gemini accepts ({sorted(IMAGE_TYPES)})",
            type="invalid_media",
        )
    # detail has no per-image equivalent (Gemini's mediaResolution is request-wide), so it is dropped
    return {"inlineData": {"mimeType": mime, "data": payload}}


def _file_part(spec: Any, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise InvalidJob(f"{where}: file must be an object")
    url = spec.get("file_data")
    if not isinstance(url, str):
        raise InvalidJob(f"{where}: only inline files (file.file_data) can go to Gemini, not file_id")
    if url.startswith("gs://"):
        name = spec.get("filename")
        return _gs_part(url, mimetypes.guess_type(name)[0] if isinstance(name, str) else None, where)
    if not url.startswith("data:"):
        raise _not_inlined(url, where)
    mime, payload = _inline(url, where)
    if mime not in DOCUMENT_TYPES:
        raise InvalidJob(
            f"{where}: {mime or 'unknown data'} is not a document type Gemini accepts "
            f"({sorted(DOCUMENT_TYPES)})",
            type="invalid_media",
        )
    return {"inlineData": {"mimeType": mime, "data": payload}}


def _audio_part(spec: Any, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict) or spec.get("format") not in AUDIO_TYPES:
        raise InvalidJob(f"{where}: input_audio needs data and a format in {sorted(AUDIO_TYPES)}")
    return {"inlineData": {"mimeType": AUDIO_TYPES[spec["format"]], "data": spec["data"]}}


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    return content_blocks(
        content,
        where,
        "gemini",
        text=lambda text: {"text": text},
        image=_image_part,
        file=_file_part,
        audio=_audio_part,
    )


def _chat_body(request: dict[str, Any]) -> dict[str, Any]:
    refuse_openai_only(request, "gemini")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    for i, message in enumerate(request.get("messages") or []):
        where = f"messages[{i}]"
        role = message.get("role")
        parts = _parts(message.get("content"), where)
        if role in SYSTEM_ROLES:
            if any("text" not in p for p in parts):
                raise InvalidJob(f"{where}: a Gemini system instruction can only hold text")
            system += parts
            continue
        if role not in ROLES:
            raise InvalidJob(f"{where}: role {role!r} is not supported by the gemini adapter")
        if message.get("tool_calls"):
            raise InvalidJob(f"{where}: tool calls are not supported by the gemini adapter")
        if not parts:
            continue
        gemini_role = ROLES[role]
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"] += parts  # Gemini wants turns to alternate; merge same-role runs
        else:
            contents.append({"role": gemini_role, "parts": parts})
    if not contents:
        raise InvalidJob("the request has no user or assistant content to send")
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config: dict[str, Any] = {}
    for param, field, convert in GENERATION_CONFIG:
        value = request.get(param)
        if value is None or field in config:
            continue
        converted = convert(value)
        if converted is not None:
            config[field] = converted
    if config:
        body["generationConfig"] = config
    return body


# ================================================================================= request: Imagen
def aspect_ratio(size: str | None) -> str | None:
    """The Imagen aspect ratio nearest to an OpenAI WxH size (None for auto / unset)."""
    if not size or size == "auto":
        return None
    w, _, h = size.partition("x")
    ratio = math.log(int(w) / int(h))
    return min(ASPECT_RATIOS, key=lambda name: abs(math.log(ASPECT_RATIOS[name]) - ratio))


def _image_body(request: dict[str, Any]) -> dict[str, Any]:
    n = request.get("n") or 1
    if n > IMAGEN_MAX_SAMPLES:
        raise InvalidJob(f"Imagen returns at most {IMAGEN_MAX_SAMPLES} images per request; got n={n}")
    params: dict[str, Any] = {"sampleCount": n, "includeRaiReason": True}  # say why an image was dropped
    ratio = aspect_ratio(request.get("size"))
    if ratio:
        params["aspectRatio"] = ratio
    fmt = request.get("output_format")
    if fmt is not None:
        if fmt not in IMAGEN_MIME_TYPES:
            raise InvalidJob(f"output_format {fmt!r}: Imagen writes {sorted(IMAGEN_MIME_TYPES)}")
        params["outputOptions"] = {"mimeType": IMAGEN_MIME_TYPES[fmt]}
    # response_format is moot (Imagen always answers with bytes); quality/style have no equivalent
    return {"instances": [{"prompt": request["prompt"]}], "parameters": params}


def to_native(kind: Kind, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """OpenAI-shaped request -> ("{model}:{method}", Gemini JSON body). Raises InvalidJob."""
    if kind is Kind.chat:
        return f"{_model_id(request.get('model'))}:generateContent", _chat_body(request)
    if kind is Kind.image:
        model = _model_id(request.get("model") or DEFAULT_IMAGE_MODEL)
        if not model.startswith(IMAGEN_MODEL_PREFIX):
            raise InvalidJob(f"image model {model!r}: the gemini adapter generates images with Imagen models")
        return f"{model}:predict", _image_body(request)
    raise InvalidJob(f"the gemini adapter does not handle {kind} jobs")


# ======================================================================================= responses
def _unparseable(body: Any) -> ProviderError:
    return unparseable("gemini", body)


def _usage(meta: Any) -> dict[str, Any] | None:
    if not isinstance(meta, dict):
        return None
    prompt = int(meta.get("promptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    # thinking is billed as output, as OpenAI counts reasoning tokens inside completion_tokens
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(meta.get("totalTokenCount") or prompt + completion),
    }
    if meta.get("cachedContentTokenCount"):
        usage["prompt_tokens_details"] = {"cached_tokens": int(meta["cachedContentTokenCount"])}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def _choice(index: int, candidate: dict[str, Any]) -> dict[str, Any]:
    content = candidate.get("content") or {}
    parts = content.get("parts") if isinstance(content, dict) else None
    texts = [
        p["text"]
        for p in parts or []
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    ]
    return {
        "index": candidate.get("index", index),
        "message": {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None},
        "finish_reason": FINISH_REASONS.get(candidate.get("finishReason") or "STOP", "stop"),
        "logprobs": None,
    }


def _chat_response(body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    candidates = body.get("candidates")
    if not candidates:
        feedback = body.get("promptFeedback")
        reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
        if reason:
            message = feedback.get("blockReasonMessage") or ""
            raise ProviderError(
                f"prompt blocked by Gemini: blockReason={reason}" + (f" ({message})" if message else ""),
                status=200,
                code="blocked",
                retryable=False,
                provider="gemini",
            )
        raise _unparseable(body)
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise _unparseable(body)
    out: dict[str, Any] = {
        "id": f"chatcmpl-gemini-{body.get('responseId') or uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("modelVersion") or request.get("model"),
        "choices": [_choice(i, c) for i, c in enumerate(candidates)],
    }
    usage = _usage(body.get("usageMetadata"))
    if usage is not None:
        out["usage"] = usage
    return out


def _image_response(body: dict[str, Any]) -> dict[str, Any]:
    predictions = body.get("predictions", [])
    if not isinstance(predictions, list):
        raise _unparseable(body)
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


def from_native(kind: Kind, body: Any, request: dict[str, Any]) -> dict[str, Any]:
    """A 200 Gemini/Imagen body -> the OpenAI response shape. Raises ProviderError for blocked prompts
    (not retryable) and unusable bodies (retryable)."""
    if not isinstance(body, dict):
        raise _unparseable(body)
    if kind is Kind.chat:
        return _chat_response(body, request)
    if kind is Kind.image:
        return _image_response(body)
    raise InvalidJob(f"the gemini adapter does not handle {kind} jobs")


# ========================================================================================== errors
def retry_delay_s(details: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo entry ("12s", "1.5s", or {seconds, nanos})."""
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or detail.get("@type") != _RETRY_INFO:
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and (match := _DURATION.match(delay)):
            return float(match[1])
        if isinstance(delay, dict):
            return float(delay.get("seconds") or 0) + float(delay.get("nanos") or 0) / 1e9
    return None


def _daily_quota(details: Any) -> bool:
    # a per-day quota will not clear within any retry budget: fail (or fall back) now
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == _QUOTA_FAILURE:
            for violation in detail.get("violations") or []:
                if isinstance(violation, dict) and "PerDay" in str(violation.get("quotaId", "")):
                    return True
    return False


def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    """Google's {"error": {"code", "message", "status", "details"}} (or any non-JSON body)."""
    message, status_name, details = resp.reason_phrase or "error", None, None
    try:
        body = resp.json()
        if isinstance(body, list) and body:  # some Google front ends wrap the error in a list
            body = body[0]
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            status_name = err.get("status") if isinstance(err.get("status"), str) else None
            details = err.get("details")
    except ValueError:
        message = resp.text[:300].strip() or message
    retryable = resp.status_code in RETRYABLE_HTTP or status_name in RETRYABLE_GOOGLE_STATUSES
    if _daily_quota(details):
        retryable, message = False, message + " (daily quota: retrying today will not help)"
    retry_after = parse_retry_after(resp.headers)
    if retry_after is None:
        retry_after = retry_delay_s(details)
    return ProviderError(
        message,
        status=resp.status_code,
        code=status_name,
        retryable=retryable,
        retry_after_s=retry_after,
        provider=provider,
    )


# ========================================================================================= adapter
def _base_url(configured: str, default: str) -> str:
    base = (configured or default).rstrip("/")
    return _VERSION_SUFFIX.sub("", base)


class GeminiAdapter:
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
        # Vertex's host names its region, which decides where data is processed: never guessed
        self.default_base_url = None if vertex else "https://generativelanguage.googleapis.com"

    def _config_error(self, message: str) -> ProviderError:
        return ProviderError(message, code="target_misconfigured", retryable=False, provider=self.name)

    def _vertex_place(self, target: Target) -> tuple[str, str, str]:
        """(base URL, project, location) for a Vertex target."""
        given = {k.lower(): v for k, v in target.headers.items()}
        project = given.get(VERTEX_PROJECT_HEADER)
        if not project:
            raise self._config_error(
                f"Vertex target {target.name!r} needs its project in the {VERTEX_PROJECT_HEADER} header"
            )
        location = given.get(VERTEX_LOCATION_HEADER)
        host = urlsplit(target.base_url).hostname or ""
        if not location and (match := _VERTEX_HOST.match(host)):
            location = match["location"] or "global"
        if not location:
            raise self._config_error(
                f"Vertex target {target.name!r} needs its location in the {VERTEX_LOCATION_HEADER} header "
                "(or a {location}-aiplatform.googleapis.com base_url)"
            )
        default = (
            "https://aiplatform.googleapis.com"
            if location == "global"
            else f"https://{location}-aiplatform.googleapis.com"
        )
        return _base_url(target.base_url, default), project, location

    def endpoint(self, target: Target, suffix: str) -> tuple[str, dict[str, str]]:
        """URL and headers for "{model}:{method}"; the Vertex routing headers are consumed here."""
        headers = {
            k: v
            for k, v in target.headers.items()
            if k.lower() not in (VERTEX_PROJECT_HEADER, VERTEX_LOCATION_HEADER)
        }
        if self.vertex:
            base, project, location = self._vertex_place(target)
            url = (
                f"{base}/{VERTEX_API_VERSION}/projects/{quote(project, safe='')}"
                f"/locations/{quote(location, safe='')}/publishers/google/models/{suffix}"
            )
            if target.api_key:
                headers["authorization"] = f"Bearer {target.api_key}"
        else:
            url = f"{_base_url(target.base_url, AI_STUDIO_BASE_URL)}/{AI_STUDIO_API_VERSION}/models/{suffix}"
            if target.api_key:
                headers["x-goog-api-key"] = target.api_key
        return url, headers

    async def call(
        self,
        client: httpx.AsyncClient,
        target: Target,
        kind: Kind,
        request: dict[str, Any],
        audio: AudioInput | None = None,
    ) -> ProviderResponse:
        suffix, body = to_native(kind, request)
        url, headers = self.endpoint(target, suffix)
        resp = await client.post(url, headers=headers, json=body)
        if resp.status_code >= 400:
            raise error_from_response(resp, self.name)
        try:
            native = resp.json()
        except ValueError:
            native = resp.text
        try:
            out = from_native(kind, native, request)
        except ProviderError as err:
            err.provider, err.status = self.name, resp.status_code
            raise
        return ProviderResponse(
            resp.status_code,
            body=out,
            request_id=resp.headers.get("x-request-id") or native.get("responseId"),
            usage=out.get("usage"),
        )
