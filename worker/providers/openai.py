"""OpenAI (and any OpenAI-compatible server): the request shapes are already native, so this adapter
is mostly about the wire: JSON vs multipart vs binary answers, and reading errors correctly.

`translate` picks the path and the body form (JSON; multipart for audio uploads, lists as repeated
`name[]` fields as the OpenAI SDK sends them) and what the answer is (audio bytes for speech, plain
text for the text/srt/vtt transcription formats, JSON otherwise); the shared send path does the rest.
A JSON answer without the field a result needs (`choices`, `data`, `text`) is an unparseable failure.
Azure and Groq subclass this adapter and change only the URL, the auth and a few error readings."""

from __future__ import annotations

import json
from typing import Any

import httpx

from mmq.errors import ProviderError, is_retryable, parse_retry_after, ratelimit_reset_s, unparseable
from mmq.request_models import Kind
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest
from worker.providers.protocol import WireAdapter

PATHS: dict[Kind, str] = {
    Kind.chat: "/chat/completions",
    Kind.image: "/images/generations",
    Kind.speech: "/audio/speech",
    Kind.transcription: "/audio/transcriptions",
    Kind.translation: "/audio/translations",
}
# The field a well-formed JSON answer must carry; a 200 without it is a provider failure, not a result.
REQUIRED_FIELD: dict[Kind, str] = {
    Kind.chat: "choices",
    Kind.image: "data",
    Kind.transcription: "text",
    Kind.translation: "text",
}
_LOCAL_FIELDS = ("filename",)  # ours, never sent
AUDIO_KINDS = (Kind.transcription, Kind.translation)
TEXT_FORMATS = ("text", "srt", "vtt")  # transcription formats answered as plain text


def _text_answer(kind: Kind, request: dict[str, Any]) -> bool:
    return kind in AUDIO_KINDS and request.get("response_format") in TEXT_FORMATS


def _form_fields(request: dict[str, Any]) -> dict[str, str | list[str]]:
    """Multipart form fields the way the OpenAI SDK sends them (lists as repeated `name[]`)."""
    fields: dict[str, str | list[str]] = {}
    for name, value in request.items():
        if name == "file" or name in _LOCAL_FIELDS or value is None:
            continue
        if isinstance(value, list):
            fields[f"{name}[]"] = [str(v) for v in value]
        elif isinstance(value, dict):
            fields[name] = json.dumps(value)
        else:
            fields[name] = str(value)
    return fields


def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    message, code = resp.reason_phrase or "error", None
    try:
        err = resp.json().get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = err.get("code") or err.get("type")
        elif isinstance(err, str):
            message = err
    except (ValueError, AttributeError):
        text = resp.text[:300].strip()
        message = text or message
    retryable = is_retryable(resp.status_code, code)
    if resp.headers.get("x-should-retry") == "false":
        retryable = False
    retry_after = parse_retry_after(resp.headers)
    if retry_after is None and resp.status_code == 429:
        retry_after = ratelimit_reset_s(resp.headers)  # every worker then pauses until the reset
    return ProviderError(
        message,
        status=resp.status_code,
        code=str(code) if code else None,
        retryable=retryable,
        retry_after_s=retry_after,
        provider=provider,
    )


class OpenAIAdapter(WireAdapter):
    kinds = frozenset(PATHS)
    media = MediaRules(max_image_bytes=20 * 1024 * 1024, max_images=500, honours_detail=True)

    def __init__(self, name: str = "openai") -> None:
        self.name = name

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> WireRequest:
        url = self._url(target, kind, request)
        headers = self._headers(target)
        if kind in AUDIO_KINDS:
            if audio is None:
                raise ValueError("audio job without audio input")
            return WireRequest(
                url,
                headers,
                form=_form_fields(request),
                files={"file": (audio.filename, audio.data, audio.content_type)},
                expect="text" if _text_answer(kind, request) else "json",
            )
        return WireRequest(url, headers, json=request, expect="bytes" if kind is Kind.speech else "json")

    def error(self, response: httpx.Response) -> ProviderError:
        return error_from_response(response, self.name)

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        request_id = response.headers.get("x-request-id")
        if kind is Kind.speech:
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
            return ProviderResponse(
                response.status_code, content=body, content_type=content_type or None, request_id=request_id
            )
        if _text_answer(kind, request):
            return ProviderResponse(response.status_code, text=body, request_id=request_id)
        if not isinstance(body, dict) or REQUIRED_FIELD[kind] not in body:
            raise unparseable(self.name, response.text, response.status_code)
        return ProviderResponse(
            response.status_code, body=body, request_id=request_id, usage=body.get("usage")
        )

    # Hooks for OpenAI dialects (Azure, Groq): where the request goes and how it authenticates. Bodies,
    # multipart and answers stay the same; errors and parsing are overridden through the protocol.
    def _url(self, target: Target, kind: Kind, request: dict[str, Any]) -> str:
        return target.base_url.rstrip("/") + PATHS[kind]

    def _headers(self, target: Target) -> dict[str, str]:
        headers = dict(target.headers)
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
        return headers
