"""ElevenLabs text-to-speech.

Takes the OpenAI speech request the contract stores (model, input, voice, response_format, speed,
instructions), speaks `POST /v1/text-to-speech/{voice_id}?output_format=...` with `xi-api-key`, and gives
back the audio bytes. Names that differ between the two APIs (voices, models, formats) are data tables
below, never code, and the field mapping is BODY_PARAMS / QUERY_PARAMS (worker.providers.params). The
shared send path sends; a 200 that is empty or JSON/text instead of audio is an unparseable failure.
See ../shared/reference/providers.md section 7.1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from mmq.errors import InvalidJob, ProviderError, is_retryable, parse_retry_after, unparseable
from mmq.request_models import Kind
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest
from worker.providers.params import ParamTable, given, map_params, refuse_if, rename, unsupported
from worker.providers.protocol import WireAdapter

DEFAULT_BASE_URL = "https://api.elevenlabs.io"

# OpenAI voice name -> ElevenLabs voice id. EXAMPLES ONLY: these are ElevenLabs premade voices at the
# time of writing, picked by rough timbre; which voices an account may use differs, so configure this
# table for your account. A raw ElevenLabs voice id (VOICE_ID_PATTERN) is sent as given.
VOICES: dict[str, str] = {
    "alloy": "21m00Tcm4TlvDq8ikWAM",  # Rachel
    "ash": "pNInz6obpgDQGcFmaJgB",  # Adam
    "ballad": "TX3LPaxmHKxFdv7VOQHJ",  # Liam
    "coral": "XB0fDUnXU5powFXDhCwa",  # Charlotte
    "echo": "ErXwobaYiN019PkySvjV",  # Antoni
    "fable": "JBFqnCBsd6RMkjVDRZzb",  # George
    "onyx": "VR6AewLTigWG4xSOukaG",  # Arnold
    "nova": "EXAVITQu4vr4xnSDxMaL",  # Sarah
    "sage": "XrExE9yKIg1WjnnlVkGX",  # Matilda
    "shimmer": "MF3mGyEYCl7XYWbV9V6O",  # Elli
    "verse": "N2lVS1w4EtoT3dr4eOWO",  # Callum
    "marin": "pFZP5JQG7iQjIQuC4Bku",  # Lily
    "cedar": "nPczCjzI2devNBz1zQrb",  # Brian
}
VOICE_ID_PATTERN = re.compile(r"[A-Za-z0-9]{20}")

# OpenAI model -> ElevenLabs model_id; longest matching prefix wins (dated snapshots such as
# gpt-4o-mini-tts-2025-12-15 follow their family). Models starting with a NATIVE_MODEL_PREFIXES entry
# are ElevenLabs ids already and pass through.
MODELS: dict[str, str] = {
    "tts-1": "eleven_multilingual_v2",
    "tts-1-hd": "eleven_multilingual_v2",
    "gpt-4o-mini-tts": "eleven_multilingual_v2",
}
NATIVE_MODEL_PREFIXES = ("eleven_",)

# OpenAI response_format -> ElevenLabs output_format. wav/pcm at 24 kHz like OpenAI's pcm (44.1 kHz
# pcm/wav needs a Pro plan). aac and flac have no ElevenLabs equivalent: such a job is refused,
# never silently answered in another format.
OUTPUT_FORMATS: dict[str, str] = {
    "mp3": "mp3_44100_128",
    "opus": "opus_48000_128",
    "wav": "wav_24000",
    "pcm": "pcm_24000",
}
# The content type reported when the answer carries none (or a generic one).
CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
DEFAULT_RESPONSE_FORMAT = "mp3"  # OpenAI's default

# OpenAI parameters ElevenLabs cannot honour; dropping them silently would change what the caller gets.
UNSUPPORTED_PARAMS: dict[str, str] = {
    "instructions": "ElevenLabs text-to-speech has no equivalent of OpenAI's voice instructions",
    "stream_format": "batch jobs take the whole audio file; streaming formats are not supported",
}
# ElevenLabs-native fields a request may carry as extra parameters; forwarded as they are.
NATIVE_BODY_FIELDS = (
    "language_code",
    "seed",
    "previous_text",
    "next_text",
    "previous_request_ids",
    "next_request_ids",
    "apply_text_normalization",
    "pronunciation_dictionary_locators",
)
NATIVE_QUERY_FIELDS = ("enable_logging", "optimize_streaming_latency")

# Codes that mean "pay or fix the account first": never worth a retry, whatever the status.
NON_RETRYABLE_CODES = frozenset(
    {"quota_exceeded", "payment_required", "invalid_api_key", "needs_authorization"}
)
# 429 flavours (rate vs concurrency) and busy signals: all worth another try later.
RETRYABLE_CODES = frozenset(
    {"rate_limit_exceeded", "concurrent_limit_exceeded", "too_many_concurrent_requests", "system_busy"}
)


# ------------------------------------------------------------------------------------------ request
def voice_id(voice: Any) -> str:
    """OpenAI voice (name, raw ElevenLabs id, or {"id": ...}) -> ElevenLabs voice id."""
    if isinstance(voice, Mapping):
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise InvalidJob("voice: required")
    mapped = VOICES.get(voice.lower())
    if mapped:
        return mapped
    if VOICE_ID_PATTERN.fullmatch(voice):
        return voice
    raise InvalidJob(
        f"voice {voice!r}: no ElevenLabs voice is configured for it; use one of "
        f"{', '.join(sorted(VOICES))} or a 20-character ElevenLabs voice id"
    )


def model_id(model: Any) -> str:
    """OpenAI model -> ElevenLabs model_id (ElevenLabs ids pass through)."""
    if not isinstance(model, str) or not model:
        raise InvalidJob("model: required")
    if model.startswith(NATIVE_MODEL_PREFIXES):
        return model
    prefixes = [p for p in MODELS if model == p or model.startswith(p + "-")]
    if not prefixes:
        raise InvalidJob(
            f"model {model!r} has no ElevenLabs equivalent; use one of {', '.join(sorted(MODELS))} "
            "or an ElevenLabs model id (eleven_...)"
        )
    return MODELS[max(prefixes, key=len)]


def output_format(response_format: Any) -> str:
    fmt = response_format or DEFAULT_RESPONSE_FORMAT
    try:
        return OUTPUT_FORMATS[fmt]
    except KeyError:
        raise InvalidJob(
            f"response_format {fmt!r} is not available from ElevenLabs; "
            f"use one of {', '.join(OUTPUT_FORMATS)}"
        ) from None


def _text(text: Any) -> str:
    if not isinstance(text, str) or not text:
        raise InvalidJob("input: required")
    return text


def _query_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# OpenAI speech fields -> ElevenLabs JSON body fields (worker.providers.params); `voice` goes in the path.
BODY_PARAMS: ParamTable = {
    "instructions": unsupported(UNSUPPORTED_PARAMS["instructions"]),
    # "audio" is the whole file, which is what a batch job gets anyway
    "stream_format": refuse_if(
        lambda fmt: given(fmt) and fmt != "audio", UNSUPPORTED_PARAMS["stream_format"]
    ),
    "input": rename("text", _text, required=True),
    "model": rename("model_id", model_id, required=True),
    # speed wins over a voice_settings.speed; its range is left to ElevenLabs (its documented bounds
    # differ between sources), whose 4xx fails the job
    "speed": rename("voice_settings.speed", float),
    "voice_settings": rename("voice_settings", lambda s: s if isinstance(s, Mapping) and s else None),
    **{name: rename(name) for name in NATIVE_BODY_FIELDS},
}
# ... and -> query parameters.
QUERY_PARAMS: ParamTable = {
    "response_format": rename("output_format", output_format, default=lambda _: output_format(None)),
    **{name: rename(name, _query_value) for name in NATIVE_QUERY_FIELDS},
}


def to_native(request: Mapping[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """OpenAI speech request -> (voice id, query params, JSON body)."""
    body = map_params(BODY_PARAMS, request)
    query = map_params(QUERY_PARAMS, request)
    return voice_id(request.get("voice")), query, body


def speech_url(base_url: str, voice: str) -> str:
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}{'' if base.endswith('/v1') else '/v1'}/text-to-speech/{quote(voice, safe='')}"


# ------------------------------------------------------------------------------------------- errors
def _detail(body: Any) -> tuple[str | None, str | None]:
    """(message, code) from {"detail": {...}}, {"detail": "..."} or a 422 {"detail": [{loc, msg}]}."""
    if not isinstance(body, Mapping):
        return None, None
    detail = body.get("detail")
    if isinstance(detail, Mapping):
        code = detail.get("code") or detail.get("status") or detail.get("type")
        message = detail.get("message")
        return (str(message) if message else None), (str(code) if code else None)
    if isinstance(detail, str):
        return detail, None
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                where = ".".join(str(p) for p in item.get("loc") or [])
                parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return ("; ".join(parts) or None), "validation_error"
    return None, None


def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    try:
        message, code = _detail(resp.json())
    except ValueError:
        message, code = None, None
    if message is None:
        message = resp.text[:300].strip() or resp.reason_phrase or "error"
    retryable = (is_retryable(resp.status_code, code) or code in RETRYABLE_CODES) and (
        code not in NON_RETRYABLE_CODES
    )
    return ProviderError(
        message,
        status=resp.status_code,
        code=code,
        retryable=retryable,
        retry_after_s=parse_retry_after(resp.headers),
        provider=provider,
    )


# ------------------------------------------------------------------------------------------ adapter
class ElevenLabsAdapter(WireAdapter):
    name = "elevenlabs"
    kinds = frozenset({Kind.speech})
    media = MediaRules()  # speech takes no media
    default_base_url = DEFAULT_BASE_URL

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> WireRequest:
        if kind is not Kind.speech:
            raise InvalidJob(f"the elevenlabs adapter does speech only, not {kind}", type="routing_error")
        voice, query, body = to_native(request)
        headers = {"accept": "audio/*", **target.headers}
        if target.api_key:
            headers["xi-api-key"] = target.api_key
        return WireRequest(
            speech_url(target.base_url, voice), headers, params=query, json=body, expect="bytes"
        )

    def error(self, response: httpx.Response) -> ProviderError:
        return error_from_response(response, self.name)

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        # a JSON/HTML/text 200 is a proxy page or an API change, not audio
        if content_type.startswith(("application/json", "text/")):
            raise unparseable(
                self.name,
                None,
                response.status_code,
                f"HTTP {response.status_code} with {content_type} instead of audio: {response.text[:200]!r}",
            )
        if not content_type or content_type == "application/octet-stream":
            content_type = CONTENT_TYPES[request.get("response_format") or DEFAULT_RESPONSE_FORMAT]
        return ProviderResponse(
            response.status_code,
            content=body,
            content_type=content_type,
            request_id=response.headers.get("request-id") or response.headers.get("x-request-id"),
        )
