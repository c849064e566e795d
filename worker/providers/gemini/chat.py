"""Gemini chat: OpenAI chat completions <-> generateContent (`{model}:generateContent`).

The request side turns OpenAI messages into Gemini `contents` (roles user/model, same-role runs merged)
plus a `systemInstruction` and a `generationConfig` (the PARAMS table, worker.providers.params); the
response side turns candidates back into OpenAI choices. Both are pure, so golden tests can pin the
exact bodies.

Media: Gemini needs bytes (`inlineData`) or a `fileData.fileUri` it can read itself, so MediaRules
says remote_urls=False and the worker inlines http(s) media as data: URLs. `gs://` URIs are passed as
fileData; only Vertex reads them (MediaRules.gcs_uris: the media stage fails a gs:// part bound for an
AI Studio target before it gets here). GIF/BMP are not Gemini input types; the worker converts them
first. The media limits here (IMAGE_TYPES, DOCUMENT_TYPES, MAX_*) are also the adapter's MediaRules.
"""

from __future__ import annotations

import mimetypes
import time
import uuid
from typing import Any

from mmq.errors import InvalidJob, ProviderError
from mmq.media import MediaError, base64_payload, sniff, sniff_base64
from worker.providers.chat_shape import (
    SYSTEM_ROLES,
    content_blocks,
    not_inlined,
    openai_only,
    stop_sequences,
)
from worker.providers.gemini.errors import unparseable_body
from worker.providers.params import ParamTable, map_params, rename

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


# OpenAI chat fields -> generateContent fields (worker.providers.params): sampling goes into
# generationConfig; the earlier row wins for the same field (max_completion_tokens over the legacy
# max_tokens). Messages are translated by chat_body.
PARAMS: ParamTable = {
    **openai_only("gemini"),
    "temperature": rename("generationConfig.temperature"),
    "top_p": rename("generationConfig.topP"),
    "max_completion_tokens": rename("generationConfig.maxOutputTokens"),
    "max_tokens": rename("generationConfig.maxOutputTokens"),
    "stop": rename("generationConfig.stopSequences", stop_sequences),
    "n": rename("generationConfig.candidateCount"),
    "seed": rename("generationConfig.seed"),
    "presence_penalty": rename("generationConfig.presencePenalty"),
    "frequency_penalty": rename("generationConfig.frequencyPenalty"),
    "response_format": rename("generationConfig.responseMimeType", _response_mime),
}

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


# ======================================================================================= request
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


def chat_body(request: dict[str, Any]) -> dict[str, Any]:
    params = map_params(PARAMS, request)
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
    body.update(params)
    return body


# ======================================================================================= responses
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


def chat_response(body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
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
        raise unparseable_body(body)
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise unparseable_body(body)
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
