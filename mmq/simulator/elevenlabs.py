"""POST /v1/text-to-speech/{voice_id}: the ElevenLabs dialect of the simulator.

Auth is `xi-api-key` (any value works; an `Authorization` header is not accepted in its place) and the key
becomes the guard's rate-limit identity. Validation follows the real API: `output_format` must be one of
ElevenLabs' values, the body needs a non-empty `text`, `model_id` must name a known model and the voice id
must look like one. Every error, the guard's own included (auth, rate limit, scripted faults, injected
5xx), uses ElevenLabs' `{"detail": {"type", "code", "message", "status", "request_id", "param"}}` body;
request-validation failures use the 422 `{"detail": [{"loc", "msg", "type"}]}` list. The type/code pairs
the guard's errors are given are approximations (ElevenLabs' full table was not verified).

The audio is simulator speech (speech.encode_speech_wav), so transcribing it gives back the exact text.
It is always 16 kHz mono 16-bit: the sample rate in `output_format` is validated, not applied (the speech
decoder needs 16 kHz). pcm_* returns the raw samples, wav_* the WAV file. The simulator does not encode
MP3, Opus or G.711: mp3_*/opus_*/ulaw_*/alaw_* return the WAV bytes under the requested content type, with
an x-mmq-simulator-note header saying so.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.errors import ApiError, json_response
from mmq.simulator.guard import Handler, guarded
from mmq.simulator.speech import encode_speech_wav

PATH = "/v1/text-to-speech/{voice_id}"
_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
OUTPUT_FORMATS: tuple[str, ...] = (
    *(
        f"mp3_{v}"
        for v in ("22050_32", "24000_48", "44100_32", "44100_64", "44100_96", "44100_128", "44100_192")
    ),
    *(f"opus_48000_{kbps}" for kbps in (32, 64, 96, 128, 192)),
    *(f"pcm_{rate}" for rate in _RATES),
    *(f"wav_{rate}" for rate in _RATES),
    "ulaw_8000",
    "alaw_8000",
)
DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"
MODELS = frozenset(
    {
        "eleven_v3",
        "eleven_multilingual_v2",
        "eleven_flash_v2_5",
        "eleven_turbo_v2_5",
        "eleven_flash_v2",
        "eleven_turbo_v2",
        "eleven_multilingual_v1",
        "eleven_monolingual_v1",
    }
)
DEFAULT_MODEL = "eleven_multilingual_v2"
MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "pcm": "audio/pcm",
    "wav": "audio/wav",
    "ulaw": "audio/basic",
    "alaw": "audio/x-alaw-basic",
}
_VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")
_WAV_HEADER = 44  # the wave module always writes the canonical header, ending with the data chunk
_INLINE_CHARS = 1000  # longer texts are synthesised in a thread
# status -> (type, code) for errors raised in OpenAI terms (the guard, scripted faults, knobs)
DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("validation_error", "invalid_parameters"),
    401: ("authentication_error", "needs_authorization"),
    402: ("billing_error", "payment_required"),
    403: ("authorization_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    422: ("validation_error", "invalid_parameters"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    503: ("service_unavailable", "system_busy"),
}
_SERVER_ERROR = ("internal_error", "internal_server_error")
_MISSING_KEY = (
    "Neither authorization header nor xi-api-key received, please provide one. (mmq simulator: any key works)"
)


class ElevenLabsError(ApiError):
    """Rendered in ElevenLabs' shape; a subclass of ApiError so the shared guard renders it as it is."""

    def __init__(self, status: int, detail: object, headers: Mapping[str, str] | None = None) -> None:
        message = detail.get("message") if isinstance(detail, dict) else json.dumps(detail)
        super().__init__(status, str(message), headers=headers)
        self.detail = detail

    def body(self) -> dict[str, object]:
        return {"detail": self.detail}


def el_error(status: int, type_: str, code: str, message: str, param: str | None = None) -> ElevenLabsError:
    detail = {
        "type": type_,
        "code": code,
        "message": message,
        "status": code,  # the legacy field older clients still read
        "request_id": uuid.uuid4().hex,
        "param": param,
    }
    return ElevenLabsError(status, detail)


def validation_error(loc: list[str], msg: str, type_: str, value: object = None) -> ElevenLabsError:
    """The 422 of request validation: a list of {loc, msg, type, input}."""
    return ElevenLabsError(422, [{"type": type_, "loc": loc, "msg": msg, "input": value}])


# ------------------------------------------------------------------------------------------- handler
async def _read_body(request: Request) -> dict[str, object]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise validation_error(["body"], "JSON decode error", "json_invalid") from None
    if not isinstance(body, dict):
        raise validation_error(["body"], "Input should be a valid dictionary", "model_attributes_type", body)
    return body


def _check_body(body: dict[str, object]) -> tuple[str, str]:
    text = body.get("text")
    if text is None:
        raise validation_error(["body", "text"], "Field required", "missing")
    if not isinstance(text, str):
        raise validation_error(["body", "text"], "Input should be a valid string", "string_type", text)
    if not text.strip():
        raise validation_error(
            ["body", "text"], "String should have at least 1 character", "string_too_short", text
        )
    model = body.get("model_id", DEFAULT_MODEL)
    if not isinstance(model, str):
        raise validation_error(["body", "model_id"], "Input should be a valid string", "string_type", model)
    if model not in MODELS:
        raise el_error(
            400,
            "validation_error",
            "invalid_parameters",
            f"A model with model ID {model!r} does not exist.",
            "model_id",
        )
    settings = body.get("voice_settings")
    if settings is not None:
        if not isinstance(settings, dict):
            raise validation_error(
                ["body", "voice_settings"],
                "Input should be a valid dictionary",
                "model_attributes_type",
                settings,
            )
        speed = settings.get("speed")
        if speed is not None and (isinstance(speed, bool) or not isinstance(speed, int | float)):
            raise validation_error(
                ["body", "voice_settings", "speed"], "Input should be a valid number", "float_type", speed
            )
    return text, model


async def text_to_speech(request: Request) -> Response:
    fmt = request.query_params.get("output_format") or DEFAULT_OUTPUT_FORMAT
    if fmt not in OUTPUT_FORMATS:
        raise validation_error(
            ["query", "output_format"],
            "Input should be " + ", ".join(f"'{f}'" for f in OUTPUT_FORMATS),
            "enum",
            fmt,
        )
    text, _model = _check_body(await _read_body(request))
    voice = request.path_params["voice_id"]
    if not _VOICE_ID.fullmatch(voice):
        raise el_error(
            400,
            "validation_error",
            "voice_not_found",
            f"A voice with voice_id {voice!r} was not found.",
            "voice_id",
        )
    # speed is validated but not applied: the symbol timing must stay fixed for decoding
    wav = (
        await asyncio.to_thread(encode_speech_wav, text)
        if len(text) > _INLINE_CHARS
        else encode_speech_wav(text)
    )
    family, _, rate = fmt.partition("_")
    headers = {"request-id": uuid.uuid4().hex}
    if family == "pcm":
        assert wav[36:40] == b"data"
        data = wav[_WAV_HEADER:]
        headers["x-mmq-simulator-note"] = "pcm is 16 kHz mono s16le whatever rate output_format names"
    else:
        data = wav
        if family != "wav":
            headers["x-mmq-simulator-note"] = f"{family} not encoded by the simulator: WAV bytes returned"
        elif rate != "16000":
            headers["x-mmq-simulator-note"] = "wav is 16 kHz mono s16le whatever rate output_format names"
    return Response(data, media_type=MEDIA_TYPES[family], headers=headers)


# ------------------------------------------------------------------------------------ dialect + route
def xi_api_key(request: Request) -> str:
    """The guard's key reader: only xi-api-key counts, an Authorization header is not read."""
    key = request.headers.get("xi-api-key", "").strip()
    if not key:
        raise el_error(401, *DEFAULTS[401], _MISSING_KEY)
    return key


def _native_error(response: Response) -> Response:
    """Re-render an OpenAI-shaped error from the guard in ElevenLabs' shape."""
    try:
        error = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):
        return response  # already ElevenLabs' (or not JSON at all)
    if not isinstance(error, dict):
        return response
    status = response.status_code
    type_, code = DEFAULTS.get(
        status, _SERVER_ERROR if status >= 500 else ("validation_error", "invalid_parameters")
    )
    message = str(error.get("message") or "")
    if status == 401 and error.get("code") in (None, "invalid_api_key"):
        message = _MISSING_KEY  # a scripted 401 reads like the missing-key answer
    elif error.get("code"):
        code = str(error["code"])  # a scripted fault's code, e.g. quota_exceeded
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    err = el_error(status, type_, code, message)
    return json_response(err.body(), status, headers)


def _dialect(endpoint: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        return _native_error(response) if response.status_code >= 400 else response

    return wrapper


def elevenlabs_routes() -> list[Route]:
    """The ElevenLabs-dialect route, guarded like the OpenAI ones (stats count the path template)."""
    return [Route(PATH, _dialect(guarded(text_to_speech, PATH, key=xi_api_key)), methods=["POST"])]
