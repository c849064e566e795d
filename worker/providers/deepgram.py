"""Deepgram pre-recorded transcription.

Takes the OpenAI transcription request the contract stores, speaks `POST /v1/listen?<query>` with the raw
audio bytes as the body and `Authorization: Token <key>`, and gives back OpenAI's answer in the format the
caller asked for: json, verbose_json (segments and words), text, srt or vtt. Subtitle cues are built here
from Deepgram's word and utterance timings (small pure functions below) and written by mmq.subtitles, the
same writer the front uses. Deepgram has no translation endpoint; a translation job sent here is
refused. The audio goes up as the raw body through the shared send path; a 200 without a usable
transcript (or with words/utterances mmq cannot time) is an unparseable failure.
See ../shared/reference/providers.md section 7.2.

OpenAI fields with no Deepgram equivalent, ignored on purpose (both are decoding hints that never change
the shape of the answer, so refusing them would only block fallback from OpenAI to Deepgram):
- `prompt`: Whisper's free-text context. Deepgram's `keyterm`/`keywords` boost a list of terms, a
  different thing; turning prose into boosted terms would change recognition unpredictably. A request may
  carry Deepgram's own `keyterm`/`keywords` as extra parameters instead (NATIVE_QUERY_FIELDS).
- `temperature`: Deepgram exposes no sampling temperature.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from mmq import subtitles
from mmq.errors import InvalidJob, ProviderError, is_retryable, parse_retry_after, unparseable
from mmq.request_models import Kind
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest
from worker.providers.protocol import WireAdapter

DEFAULT_BASE_URL = "https://api.deepgram.com"

# OpenAI model -> Deepgram model; longest matching prefix wins (dated snapshots follow their family).
# Models starting with a NATIVE_MODEL_PREFIXES entry are Deepgram names already and pass through
# (Deepgram defaults to its old `base` model when none is given, so one is always sent).
MODELS: dict[str, str] = {
    "whisper-1": "nova-3",
    "gpt-4o-transcribe": "nova-3",
    "gpt-4o-mini-transcribe": "nova-3",
}
NATIVE_MODEL_PREFIXES = ("nova", "enhanced", "base", "whisper-")
# Whisper answers punctuated and formatted text; Deepgram only does when asked.
FIXED_QUERY: tuple[tuple[str, str], ...] = (("punctuate", "true"), ("smart_format", "true"))
# Deepgram-native query parameters a request may carry as extra fields; forwarded as they are.
NATIVE_QUERY_FIELDS = ("keyterm", "keywords", "numerals", "profanity_filter", "redact", "tag", "mip_opt_out")
FORMATS = frozenset({"json", "text", "srt", "verbose_json", "vtt"})
TIMED_FORMATS = frozenset({"verbose_json", "srt", "vtt"})  # these need utterances
# ISO-639-1 -> the language name OpenAI's verbose_json reports; unknown codes are reported as given.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english",
    "es": "spanish",
    "fr": "french",
    "de": "german",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "fi": "finnish",
    "pl": "polish",
    "ru": "russian",
    "uk": "ukrainian",
    "tr": "turkish",
    "hi": "hindi",
    "ja": "japanese",
    "ko": "korean",
    "zh": "chinese",
}
# Subtitle cues built from words when Deepgram sent no utterances.
CUE_MAX_S = 7.0
CUE_MAX_WORDS = 14
SENTENCE_END = (".", "?", "!", "…")
# Deepgram's 422 means the upload arrived incomplete (connection cut): worth another try.
RETRYABLE_STATUSES = frozenset({422})
NON_RETRYABLE_CODES = frozenset({"INVALID_AUTH", "ASR_PAYMENT_REQUIRED", "INSUFFICIENT_PERMISSIONS"})

Cue = tuple[float, float, str]  # start s, end s, text


# ------------------------------------------------------------------------------------------ request
def deepgram_model(model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise InvalidJob("model: required")
    if model in MODELS:
        return MODELS[model]
    prefixes = [p for p in MODELS if model.startswith(p + "-")]
    if prefixes:
        return MODELS[max(prefixes, key=len)]
    if model.startswith(NATIVE_MODEL_PREFIXES):
        return model
    raise InvalidJob(
        f"model {model!r} has no Deepgram equivalent; use one of {', '.join(sorted(MODELS))} "
        "or a Deepgram model (nova-3, nova-2, ...)"
    )


def _param(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def to_query(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    """OpenAI transcription request -> Deepgram /v1/listen query (ordered, lists repeated)."""
    fmt = request.get("response_format") or "json"
    if fmt not in FORMATS:
        raise InvalidJob(f"response_format {fmt!r} is not supported; use one of {', '.join(sorted(FORMATS))}")
    query = [("model", deepgram_model(request.get("model")))]
    if request.get("language"):
        query.append(("language", str(request["language"])))
    else:
        query.append(("detect_language", "true"))  # Whisper detects the language when none is given
    query.extend(FIXED_QUERY)
    if fmt in TIMED_FORMATS:
        query.append(("utterances", "true"))
    for name in NATIVE_QUERY_FIELDS:
        value = request.get(name)
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        query.extend((name, _param(v)) for v in values)
    return query


def listen_url(base_url: str) -> str:
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return base + ("/listen" if base.endswith("/v1") else "/v1/listen")


# ----------------------------------------------------------------------------------- subtitle cues
def _word_text(word: Mapping[str, Any]) -> str:
    return str(word.get("punctuated_word") or word.get("word") or "")


def cues_from_words(
    words: Sequence[Mapping[str, Any]], max_s: float = CUE_MAX_S, max_words: int = CUE_MAX_WORDS
) -> list[Cue]:
    """Group timed words into cues, ending one at a sentence end or when it grows too long."""
    cues: list[Cue] = []
    current: list[Mapping[str, Any]] = []
    for word in words:
        if current and (len(current) >= max_words or float(word["end"]) - float(current[0]["start"]) > max_s):
            cues.append(_cue(current))
            current = []
        current.append(word)
        if _word_text(word).endswith(SENTENCE_END):
            cues.append(_cue(current))
            current = []
    if current:
        cues.append(_cue(current))
    return cues


def _cue(words: Sequence[Mapping[str, Any]]) -> Cue:
    return float(words[0]["start"]), float(words[-1]["end"]), " ".join(_word_text(w) for w in words)


def cues(body: Mapping[str, Any]) -> list[Cue]:
    """Timed text of channel 0: utterances when Deepgram sent them, else words grouped into cues, else the
    whole transcript over the whole duration."""
    results = body.get("results") or {}
    utterances = [u for u in results.get("utterances") or [] if int(u.get("channel") or 0) == 0]
    if utterances:
        return [(float(u["start"]), float(u["end"]), str(u.get("transcript") or "")) for u in utterances]
    alternative = _alternative(body)
    words = alternative.get("words") or []
    if words:
        return cues_from_words(words)
    text = str(alternative.get("transcript") or "")
    return [(0.0, _duration(body), text)] if text else []


# ----------------------------------------------------------------------------------------- response
def _alternative(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body["results"]["channels"][0]["alternatives"][0]


def _duration(body: Mapping[str, Any]) -> float:
    duration = (body.get("metadata") or {}).get("duration")
    if isinstance(duration, int | float):
        return float(duration)
    words = _alternative(body).get("words") or []
    return float(words[-1]["end"]) if words else 0.0


def _usable(body: Any) -> bool:
    try:
        return isinstance(_alternative(body).get("transcript"), str)
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


def _language(body: Mapping[str, Any], request: Mapping[str, Any]) -> str:
    code = request.get("language") or body["results"]["channels"][0].get("detected_language") or "en"
    code = str(code)
    return LANGUAGE_NAMES.get(code.split("-")[0].lower(), code)


def _segment(n: int, start: float, end: float, text: str, confidence: float | None) -> dict[str, Any]:
    # Whisper-only fields (tokens, temperature, compression_ratio, no_speech_prob) have no Deepgram
    # equivalent; neutral values keep the OpenAI shape parseable. avg_logprob comes from confidence.
    logprob = math.log(confidence) if confidence else 0.0
    return {
        "id": n,
        "seek": 0,
        "start": start,
        "end": end,
        "text": text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": round(logprob, 6),
        "compression_ratio": 1.0,
        "no_speech_prob": 0.0,
    }


def usage(body: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(_duration(body))}


def from_native(body: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any] | str:
    """Deepgram listen response -> OpenAI transcription answer: a dict for json/verbose_json, a string
    for text/srt/vtt."""
    fmt = request.get("response_format") or "json"
    alternative = _alternative(body)
    text = str(alternative["transcript"])
    if fmt == "text":
        return text
    if fmt == "srt":
        return subtitles.render_srt(cues(body))
    if fmt == "vtt":
        return subtitles.render_vtt(cues(body))
    if fmt == "json":
        return {"text": text, "usage": usage(body)}
    confidence = alternative.get("confidence")
    utterances = [u for u in (body["results"].get("utterances") or []) if int(u.get("channel") or 0) == 0]
    if utterances:
        segments = [
            _segment(
                n, float(u["start"]), float(u["end"]), str(u.get("transcript") or ""), u.get("confidence")
            )
            for n, u in enumerate(utterances)
        ]
    else:
        segments = [_segment(n, s, e, t, confidence) for n, (s, e, t) in enumerate(cues(body))]
    # Deepgram times every word anyway, so words come with or without timestamp_granularities
    words = [
        {"word": _word_text(w), "start": float(w["start"]), "end": float(w["end"])}
        for w in alternative.get("words") or []
    ]
    return {
        "task": "transcribe",
        "language": _language(body, request),
        "duration": _duration(body),
        "text": text,
        "segments": segments,
        "words": words,
        "usage": usage(body),
    }


# ------------------------------------------------------------------------------------------- errors
def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    """Deepgram errors: {"err_code", "err_msg", "request_id"} or {"category", "message", "details"}."""
    message, code = None, None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        code = body.get("err_code") or body.get("category")
        message = body.get("err_msg") or body.get("message")
        if body.get("details") and message:
            message = f"{message} ({body['details']})"
    if not message:
        message = resp.text[:300].strip() or resp.reason_phrase or "error"
    code = str(code) if code else None
    retryable = (is_retryable(resp.status_code, code) or resp.status_code in RETRYABLE_STATUSES) and (
        code not in NON_RETRYABLE_CODES
    )
    return ProviderError(
        str(message),
        status=resp.status_code,
        code=code,
        retryable=retryable,
        retry_after_s=parse_retry_after(resp.headers),
        provider=provider,
    )


# ------------------------------------------------------------------------------------------ adapter
class DeepgramAdapter(WireAdapter):
    name = "deepgram"
    kinds = frozenset({Kind.transcription})
    media = MediaRules()  # audio arrives as AudioInput; chat media rules do not apply
    default_base_url = DEFAULT_BASE_URL

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> WireRequest:
        if kind is Kind.translation:
            raise InvalidJob(
                "deepgram has no translation endpoint; route /v1/audio/translations jobs to a provider "
                "that translates (e.g. openai)",
                type="routing_error",
            )
        if kind is not Kind.transcription:
            raise InvalidJob(
                f"the deepgram adapter does transcription only, not {kind}", type="routing_error"
            )
        if audio is None:
            raise InvalidJob("transcription job without audio input", type="invalid_media")
        headers = {"content-type": audio.content_type or "application/octet-stream", **target.headers}
        if target.api_key:
            headers["authorization"] = f"Token {target.api_key}"
        return WireRequest(listen_url(target.base_url), headers, params=to_query(request), content=audio.data)

    def error(self, response: httpx.Response) -> ProviderError:
        return error_from_response(response, self.name)

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        if not _usable(body):
            raise unparseable(self.name, response.text, response.status_code)
        answer = from_native(body, request)  # words/utterances without usable timings: a shape error
        request_id = (
            response.headers.get("dg-request-id")
            or (body.get("metadata") or {}).get("request_id")
            or response.headers.get("x-request-id")
        )
        spent = usage(body)
        if isinstance(answer, str):
            return ProviderResponse(response.status_code, text=answer, request_id=request_id, usage=spent)
        return ProviderResponse(response.status_code, body=answer, request_id=request_id, usage=spent)
