"""Groq: OpenAI-compatible vision chat and Whisper transcription/translation.

Groq serves the OpenAI paths under https://api.groq.com/openai/v1 with `Authorization: Bearer`, so this
adapter is worker.providers.openai with Groq's base URL, Groq's audio rules (in `translate`), Groq's
498 (in `error`) and Groq's request id in the body (in `parse`).
Reference: ../shared/reference/providers.md §7.3 (audio) and §1 (the OpenAI shapes).

- Chat (vision models, e.g. meta-llama/llama-4-scout-17b-16e-instruct) is forwarded as is: Groq refuses
  what it does not support itself (a 400 is not a silent drop).
- Transcription (whisper-large-v3, whisper-large-v3-turbo) and translation (whisper-large-v3 only):
  Groq takes fewer form fields than OpenAI and answers only json, text or verbose_json. A field Groq
  does not take would be ignored or refused there, so the job is refused here with a message saying
  why, except fields whose value changes nothing (stream=false), which are left out. No srt/vtt: ask
  for verbose_json and build subtitles from its segments.
- No image generation or speech (Groq's TTS is outside the reference).
- A 429 without retry-after is retried when Groq's x-ratelimit-reset-* header says the window frees up
  (Go durations such as "2m59.56s").
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from mmq.errors import InvalidJob, ProviderError
from mmq.errors import parse_go_duration as parse_duration  # noqa: F401  (its tests import it here)
from mmq.request_models import Kind
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest
from worker.providers.openai import PATHS, OpenAIAdapter
from worker.providers.openai import error_from_response as openai_error

DEFAULT_BASE_URL = "https://api.groq.com/openai/v1"
_API_PATH = "/openai/v1"  # the Groq SDK's base_url is the bare host; the OpenAI paths live under this
AUDIO_KINDS = (Kind.transcription, Kind.translation)
# Form fields Groq's audio endpoints take (groq==1.7.0 transcription/translation_create_params), less
# `file` (the multipart upload) and `url` (mmq always uploads the bytes).
AUDIO_FIELDS: dict[Kind, frozenset[str]] = {
    Kind.transcription: frozenset(
        {"model", "language", "prompt", "response_format", "temperature", "timestamp_granularities"}
    ),
    Kind.translation: frozenset({"model", "prompt", "response_format", "temperature"}),
}
RESPONSE_FORMATS = ("json", "text", "verbose_json")
NO_TRANSLATION_MODELS = frozenset({"whisper-large-v3-turbo"})
# OpenAI fields Groq does not take, at the one value that makes no difference: left out, not refused.
HARMLESS_VALUES: dict[str, object] = {"stream": False}
_WORKER_FIELDS = frozenset({"file", "filename"})  # the worker's own; openai._form_fields never sends them
# 498 is Groq's "flex tier capacity exceeded": a busy signal, worth another try (UNVERIFIED in the
# reference; pg:console.groq.com/docs/errors).
RETRYABLE_STATUSES = frozenset({498})


# --------------------------------------------------------------------------------------------- audio
def audio_request(kind: Kind, request: dict[str, Any]) -> dict[str, Any]:
    """The transcription/translation request Groq gets; raises InvalidJob for what Groq cannot honour."""
    allowed = AUDIO_FIELDS[kind]
    out: dict[str, Any] = {}
    for name, value in request.items():
        if value is None or name in _WORKER_FIELDS or name in allowed:
            out[name] = value
        elif name in HARMLESS_VALUES and value == HARMLESS_VALUES[name]:
            continue
        else:
            raise InvalidJob(
                f"{name}: Groq's audio {kind} endpoint does not take this parameter "
                f"(it takes {', '.join(sorted(allowed))})"
            )
    fmt = out.get("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise InvalidJob(
            f"response_format {fmt!r}: Groq answers only {', '.join(RESPONSE_FORMATS)} (no srt/vtt); "
            "ask for verbose_json and build subtitles from its segments"
        )
    if out.get("timestamp_granularities") and fmt != "verbose_json":
        raise InvalidJob("timestamp_granularities needs response_format verbose_json")
    if kind is Kind.translation and out.get("model") in NO_TRANSLATION_MODELS:
        raise InvalidJob(f"model {out['model']!r} cannot translate on Groq; use whisper-large-v3")
    return out


# -------------------------------------------------------------------------------------------- errors
def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    """OpenAI's {"error": {...}} mapping (reset headers included) plus Groq's 498."""
    err = openai_error(resp, provider)
    if resp.status_code in RETRYABLE_STATUSES and resp.headers.get("x-should-retry") != "false":
        err.retryable = True
    return err


# ------------------------------------------------------------------------------------------- adapter
class GroqAdapter(OpenAIAdapter):
    kinds = frozenset({Kind.chat, *AUDIO_KINDS})
    default_base_url = DEFAULT_BASE_URL
    # Groq vision (pg:console.groq.com/docs/vision, not in the reference): at most 5 images a request,
    # a request with base64 images at most 4 MB (so raw bytes under 3/4 of it), image URLs up to 20 MB.
    # No PDF file parts.
    media = MediaRules(
        max_image_bytes=3 * 1024 * 1024,
        max_images=5,
        document_types=frozenset(),
        remote_urls=True,
    )

    def __init__(self, name: str = "groq") -> None:
        super().__init__(name)

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> WireRequest:
        if kind not in self.kinds:
            raise InvalidJob(
                f"the groq adapter does chat, transcription and translation, not {kind}", type="routing_error"
            )
        if kind in AUDIO_KINDS:
            request = audio_request(kind, request)
        return super().translate(target, kind, request, audio)

    def _url(self, target: Target, kind: Kind, request: dict[str, Any]) -> str:
        base = (target.base_url or DEFAULT_BASE_URL).rstrip("/")
        if urlsplit(base).path in ("", "/"):
            base += _API_PATH
        return base + PATHS[kind]

    def error(self, response: httpx.Response) -> ProviderError:
        return error_from_response(response, self.name)

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        out = super().parse(kind, request, response, body)
        if out.request_id is None and out.body is not None:
            x_groq = out.body.get("x_groq")  # Groq repeats its request id in the body
            if isinstance(x_groq, dict) and isinstance(x_groq.get("id"), str):
                out.request_id = x_groq["id"]
        return out
