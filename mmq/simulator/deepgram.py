"""POST /v1/listen: the Deepgram pre-recorded dialect of the simulator.

Auth is `Authorization: Token <key>` (or `Bearer <token>`, as Deepgram takes for temporary tokens); any
value works and it becomes the guard's rate-limit identity. The body is the raw audio. Simulator speech
(speech.encode_speech_wav) is decoded back to its exact text; other audio transcribes to "" as silence
would. Words are timed from where their bytes sit in the tone stream (20 ms per nibble), so timings are
real positions in the audio.

Query parameters read: `model` (validated against MODELS; Deepgram's default is `base`), `language`,
`detect_language`, `punctuate`, `smart_format` (without either, the transcript is lower-case words without
punctuation, like Deepgram's), `utterances` (one utterance per line of the spoken text: the simulator's
speech has no pauses to split on). Other documented flags are accepted if they are booleans.

Errors use Deepgram's `{"err_code", "err_msg", "request_id"}` body, the guard's own included (auth, rate
limit, scripted faults, injected 5xx). The err_code values for 429 and 5xx are approximations.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
import wave
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.audio_formats import sniff_audio, wav_duration
from mmq.simulator.errors import ApiError, json_response
from mmq.simulator.guard import Handler, guarded
from mmq.simulator.speech import SAMPLE_RATE, SYMBOL_SAMPLES, decode_speech_wav

PATH = "/v1/listen"
MODELS = frozenset(
    {
        "base",
        "enhanced",
        "nova",
        "nova-2",
        "nova-2-general",
        "nova-2-meeting",
        "nova-2-phonecall",
        "nova-3",
        "nova-3-general",
        "nova-3-medical",
        "whisper-tiny",
        "whisper-base",
        "whisper-small",
        "whisper-medium",
        "whisper-large",
    }
)
DEFAULT_MODEL = "base"
BOOLEAN_PARAMS = (
    "punctuate",
    "smart_format",
    "utterances",
    "detect_language",
    "diarize",
    "numerals",
    "profanity_filter",
    "paragraphs",
    "multichannel",
    "filler_words",
    "mip_opt_out",
)
CONFIDENCE = 0.99  # the simulator's speech decodes exactly or not at all
# Symbol layout of simulator speech: 4 preamble symbols, then 2 per byte of (4-byte length, payload, crc).
_SYMBOL_S = SYMBOL_SAMPLES / SAMPLE_RATE
_FIRST_PAYLOAD_SYMBOL = 4 + 2 * 4
_INLINE_BYTES = 2 * SYMBOL_SAMPLES * 2 * 1000  # longer WAVs are decoded in a thread
# status -> err_code for errors raised in OpenAI terms (the guard, scripted faults, knobs)
ERR_CODES: dict[int, str] = {
    400: "Bad Request",
    401: "INVALID_AUTH",
    402: "ASR_PAYMENT_REQUIRED",
    403: "INSUFFICIENT_PERMISSIONS",
    404: "Not Found",
    429: "TOO_MANY_REQUESTS",
}
_OPENAI_CODES = frozenset({"invalid_api_key", "rate_limit_exceeded"})  # OpenAI's, renamed here
_CORRUPT = "Bad Request: failed to process audio: corrupt or unsupported data"


class DeepgramError(ApiError):
    """Rendered in Deepgram's shape; a subclass of ApiError so the shared guard renders it as it is."""

    def __init__(self, status: int, err_code: str, err_msg: str) -> None:
        self.request_id = str(uuid.uuid4())
        super().__init__(status, err_msg, code=err_code, headers={"dg-request-id": self.request_id})

    def body(self) -> dict[str, object]:
        return {"err_code": self.code, "err_msg": self.message, "request_id": self.request_id}


def bad_request(message: str) -> DeepgramError:
    return DeepgramError(400, "Bad Request", message)


# ------------------------------------------------------------------------------------------- handler
def _flags(request: Request) -> dict[str, bool]:
    flags: dict[str, bool] = {}
    for name in BOOLEAN_PARAMS:
        raw = request.query_params.get(name)
        if raw is None:
            continue
        if raw.lower() not in ("true", "false"):
            raise bad_request(f"Failed to deserialize query parameters: invalid value {raw!r} for `{name}`")
        flags[name] = raw.lower() == "true"
    return flags


def _plain(token: str) -> str:
    # Deepgram's `word`: lower case, no surrounding punctuation
    return re.sub(r"^\W+|\W+$", "", token).lower() or token.lower()


def timed_words(text: str, punctuated: bool) -> list[dict[str, object]]:
    """Deepgram words for simulator speech of `text`, timed by where their bytes are in the audio."""
    words: list[dict[str, object]] = []
    byte_pos, char_pos = 0, 0
    for match in re.finditer(r"\S+", text):
        byte_pos += len(text[char_pos : match.start()].encode())
        size = len(match.group().encode())
        start = (_FIRST_PAYLOAD_SYMBOL + 2 * byte_pos) * _SYMBOL_S
        end = (_FIRST_PAYLOAD_SYMBOL + 2 * (byte_pos + size)) * _SYMBOL_S
        word: dict[str, object] = {
            "word": _plain(match.group()),
            "start": round(start, 3),
            "end": round(end, 3),
            "confidence": CONFIDENCE,
        }
        if punctuated:
            word["punctuated_word"] = match.group()
        words.append(word)
        byte_pos += size
        char_pos = match.end()
    return words


def _transcript(text: str, punctuated: bool) -> str:
    return text if punctuated else " ".join(_plain(t) for t in text.split())


def _utterances(text: str, words: list[dict[str, object]], punctuated: bool) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    taken = 0
    for line in text.splitlines():
        count = len(line.split())
        if not count:
            continue
        mine = words[taken : taken + count]
        taken += count
        out.append(
            {
                "start": mine[0]["start"],
                "end": mine[-1]["end"],
                "confidence": CONFIDENCE,
                "channel": 0,
                "transcript": _transcript(line.strip(), punctuated),
                "words": mine,
                "id": str(uuid.uuid4()),
            }
        )
    return out


async def _speech_text(data: bytes) -> tuple[float, str]:
    kind = sniff_audio(data)
    if kind is None:
        raise bad_request(_CORRUPT)
    if kind != "wav":
        return 0.0, ""  # the simulator cannot decode compressed audio; it hears nothing in it
    try:
        duration = wav_duration(data)
    except wave.Error:
        raise bad_request(_CORRUPT) from None
    text = (
        await asyncio.to_thread(decode_speech_wav, data)
        if len(data) > _INLINE_BYTES
        else decode_speech_wav(data)
    )
    return duration, text or ""


async def listen(request: Request) -> Response:
    model = request.query_params.get("model") or DEFAULT_MODEL
    if model not in MODELS:
        raise bad_request(
            "No such model/language/tier combination found. "
            f"(mmq simulator knows: {', '.join(sorted(MODELS))})"
        )
    flags = _flags(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        try:
            json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise bad_request(
                "Content-type was application/json, but we could not process the JSON payload."
            ) from None
        raise bad_request(
            "mmq simulator: remote audio URLs are not fetched; send the audio bytes as the body"
        )
    data = await request.body()
    if not data:
        raise bad_request(_CORRUPT)
    duration, text = await _speech_text(data)
    punctuated = flags.get("punctuate", False) or flags.get("smart_format", False)
    words = timed_words(text, punctuated)
    alternative = {
        "transcript": _transcript(text, punctuated),
        "confidence": CONFIDENCE if words else 0.0,
        "words": words,
    }
    channel: dict[str, object] = {"alternatives": [alternative]}
    if flags.get("detect_language") and not request.query_params.get("language"):
        channel["detected_language"] = "en"  # the simulator cannot tell languages apart
        channel["language_confidence"] = CONFIDENCE
    results: dict[str, object] = {"channels": [channel]}
    if flags.get("utterances"):
        results["utterances"] = _utterances(text, words, punctuated)
    request_id = str(uuid.uuid4())
    model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mmq-simulator/deepgram/{model}"))
    metadata = {
        "transaction_key": "deprecated",
        "request_id": request_id,
        "sha256": hashlib.sha256(data).hexdigest(),
        "created": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "duration": round(duration, 3),
        "channels": 1,
        "models": [model_uuid],
        "model_info": {model_uuid: {"name": model, "version": "mmq-simulator", "arch": model.split("-")[0]}},
    }
    return json_response({"metadata": metadata, "results": results}, headers={"dg-request-id": request_id})


# ------------------------------------------------------------------------------------ dialect + route
def deepgram_key(request: Request) -> str:
    """The guard's key reader: `Token <key>`, or `Bearer <token>` as for temporary tokens."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token.strip():
        raise DeepgramError(401, "INVALID_AUTH", "Invalid credentials.")
    return token.strip()


def _native_error(response: Response) -> Response:
    """Re-render an OpenAI-shaped error from the guard in Deepgram's shape."""
    try:
        error = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):
        return response  # already Deepgram's (or not JSON at all)
    if not isinstance(error, dict):
        return response
    status = response.status_code
    if status == 401 and error.get("code") in (None, "invalid_api_key"):
        err = DeepgramError(401, "INVALID_AUTH", "Invalid credentials.")  # a scripted 401, as a bad key
    else:
        code = error.get("code")
        if not code or code in _OPENAI_CODES:
            code = ERR_CODES.get(status, "INTERNAL_SERVER_ERROR" if status >= 500 else "Bad Request")
        err = DeepgramError(status, str(code), str(error.get("message") or ""))
    drop = ("content-length", "content-type")
    headers = {k: v for k, v in response.headers.items() if k not in drop}
    return json_response(err.body(), status, {**headers, **err.headers})


def _dialect(endpoint: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        return _native_error(response) if response.status_code >= 400 else response

    return wrapper


def deepgram_routes() -> list[Route]:
    """The Deepgram-dialect route, guarded like the OpenAI ones (stats count the path)."""
    return [Route(PATH, _dialect(guarded(listen, PATH, key=deepgram_key)), methods=["POST"])]
