"""OpenAI (and any OpenAI-compatible server): the request shapes are already native, so this adapter
is mostly about the wire: JSON vs multipart vs binary answers, and reading errors correctly."""

from __future__ import annotations

import json
from typing import Any

import httpx

from mmq.contract import Kind
from mmq.errors import ProviderError, is_retryable, parse_retry_after, ratelimit_reset_s
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target

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


class OpenAIAdapter:
    kinds = frozenset(PATHS)
    media = MediaRules(max_image_bytes=20 * 1024 * 1024, max_images=500, honours_detail=True)

    def __init__(self, name: str = "openai") -> None:
        self.name = name

    async def call(
        self,
        client: httpx.AsyncClient,
        target: Target,
        kind: Kind,
        request: dict[str, Any],
        audio: AudioInput | None = None,
    ) -> ProviderResponse:
        url = self._url(target, kind, request)
        headers = self._headers(target)
        if kind in (Kind.transcription, Kind.translation):
            if audio is None:
                raise ValueError("audio job without audio input")
            built = client.build_request(
                "POST",
                url,
                headers=headers,
                data=_form_fields(request),
                files={"file": (audio.filename, audio.data, audio.content_type)},
            )
            # The aiohttp transport iterates a streamed body synchronously; the audio is in memory
            # anyway, so render the multipart body to bytes first.
            await built.aread()
            resp = await client.send(built)
        else:
            resp = await client.post(url, headers=headers, json=request)
        if resp.status_code >= 400:
            raise self._error(resp)
        return self._parse(kind, request, resp)

    # Hooks for OpenAI dialects (Azure, Groq): where the request goes, how it authenticates, and how
    # errors read. Bodies, multipart and answers stay the same.
    def _url(self, target: Target, kind: Kind, request: dict[str, Any]) -> str:
        return target.base_url.rstrip("/") + PATHS[kind]

    def _headers(self, target: Target) -> dict[str, str]:
        headers = dict(target.headers)
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
        return headers

    def _error(self, resp: httpx.Response) -> ProviderError:
        return error_from_response(resp, self.name)

    def _parse(self, kind: Kind, request: dict[str, Any], resp: httpx.Response) -> ProviderResponse:
        request_id = resp.headers.get("x-request-id")
        content_type = resp.headers.get("content-type", "").split(";")[0].strip()
        if kind is Kind.speech:
            if not resp.content:
                raise ProviderError(
                    "empty audio body", status=resp.status_code, retryable=True, provider=self.name
                )
            return ProviderResponse(
                resp.status_code,
                content=resp.content,
                content_type=content_type or None,
                request_id=request_id,
            )
        if kind in (Kind.transcription, Kind.translation) and request.get("response_format") in (
            "text",
            "srt",
            "vtt",
        ):
            return ProviderResponse(resp.status_code, text=resp.text, request_id=request_id)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or REQUIRED_FIELD[kind] not in body:
            raise ProviderError(
                f"HTTP 200 with an unusable body: {resp.text[:200]!r}",
                status=resp.status_code,
                code="unparseable_response",
                retryable=True,
                provider=self.name,
            )
        return ProviderResponse(resp.status_code, body=body, request_id=request_id, usage=body.get("usage"))
