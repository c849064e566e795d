"""POST /v1/audio/speech (text -> tone-coded WAV) and /v1/audio/{transcriptions,translations}."""

from __future__ import annotations

import asyncio
import math
import wave

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.audio_formats import (
    SUPPORTED_FORMATS_MESSAGE,
    sniff_audio,
    to_srt,
    to_vtt,
    wav_duration,
)
from mmq.simulator.errors import ApiError, bad_request, json_response
from mmq.simulator.parsing import missing, read_json, wrong_type
from mmq.simulator.speech import decode_speech_wav, encode_speech_wav

_SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
_TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
_MAX_UPLOAD = 25 * 1024 * 1024
_INLINE_CHARS = 1000  # longer texts are synthesised/decoded in a thread


async def speech(request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise missing("model")
    text = body.get("input")
    if text is None:
        raise missing("input")
    if not isinstance(text, str):
        raise wrong_type("input", "a string", text)
    if not 1 <= len(text) <= 4096:
        raise bad_request(
            f"Invalid 'input': string length {len(text)}; expected between 1 and 4096 characters.",
            "input",
            "string_above_max_length" if text else "empty_string",
        )
    voice = body.get("voice")
    if isinstance(voice, dict):
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise missing("voice")
    fmt = body.get("response_format") or "mp3"
    if fmt not in _SPEECH_FORMATS:
        raise bad_request(
            f"Invalid value: {fmt!r}. Supported values are: "
            + ", ".join(f"'{f}'" for f in _SPEECH_FORMATS)
            + ".",
            "response_format",
            "invalid_value",
        )
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise bad_request(
            "Invalid 'speed': expected a number between 0.25 and 4.0.", "speed", "invalid_value"
        )

    # speed is validated but not applied: the symbol timing must stay fixed for decoding
    if len(text) > _INLINE_CHARS:
        wav = await asyncio.to_thread(encode_speech_wav, text)
    else:
        wav = encode_speech_wav(text)
    if fmt == "pcm":
        # the wave module always writes the canonical 44-byte header, ending with the "data" chunk id+size
        assert wav[36:40] == b"data"
        pcm = wav[44:]
        return Response(
            pcm, media_type="audio/pcm", headers={"x-mmq-simulator-note": "pcm is 16 kHz mono s16le"}
        )
    headers = {} if fmt == "wav" else {"x-mmq-simulator-note": f"{fmt} not synthesised, WAV returned"}
    return Response(wav, media_type="audio/wav", headers=headers)


def _form_str(form: object, name: str) -> str | None:
    value = form.get(name)  # type: ignore[attr-defined]
    return value if isinstance(value, str) else None


async def _transcribe(request: Request, translate: bool) -> Response:
    try:
        form = await request.form(max_files=1, max_fields=100)
    except MultiPartException as exc:
        raise bad_request(f"Could not parse multipart form: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise missing("file")
        if not _form_str(form, "model"):
            raise missing("model")
        fmt = _form_str(form, "response_format") or "json"
        if fmt not in _TRANSCRIPT_FORMATS:
            raise bad_request(
                f"Invalid value: {fmt!r}. Supported values are: "
                + ", ".join(f"'{f}'" for f in _TRANSCRIPT_FORMATS)
                + ".",
                "response_format",
                "invalid_value",
            )
        data = await upload.read(_MAX_UPLOAD + 1)
        language = _form_str(form, "language")
        granularities = [g for g in form.getlist("timestamp_granularities[]") if isinstance(g, str)]
    finally:
        await form.close()
    if len(data) > _MAX_UPLOAD:
        raise ApiError(413, f"Maximum content size limit ({_MAX_UPLOAD}) exceeded.", param="file")

    kind = sniff_audio(data)
    if kind is None:
        raise bad_request(SUPPORTED_FORMATS_MESSAGE)
    duration, text = 0.0, None
    if kind == "wav":
        try:
            duration = wav_duration(data)
        except wave.Error:
            raise bad_request(
                "Audio file might be corrupted or unsupported", "file", "invalid_value"
            ) from None
        if len(data) > 2 * 320 * 2 * _INLINE_CHARS:
            text = await asyncio.to_thread(decode_speech_wav, data)
        else:
            text = decode_speech_wav(data)
    if text is None:
        text = f"[mmq simulator] {duration:.2f}s of audio, no simulator speech found"
    elif translate:
        text = "[mmq simulator translation] " + text
    return _render(text, duration, fmt, translate, language, granularities)


def _render(
    text: str, duration: float, fmt: str, translate: bool, language: str | None, granularities: list[str]
) -> Response:
    usage = {"type": "duration", "seconds": math.ceil(duration)}
    if fmt == "text":
        return Response(text, media_type="text/plain; charset=utf-8")
    if fmt == "srt":
        return Response(to_srt(text, duration), media_type="text/plain; charset=utf-8")
    if fmt == "vtt":
        return Response(to_vtt(text, duration), media_type="text/plain; charset=utf-8")
    if fmt == "json":
        return json_response({"text": text, "usage": usage})
    payload: dict[str, object] = {
        "task": "translate" if translate else "transcribe",
        "language": "english" if translate else (language or "english"),
        "duration": round(duration, 3),
        "text": text,
        "segments": [
            {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": round(duration, 3),
                "text": text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
        ],
        "usage": usage,
    }
    if "word" in granularities:
        words = text.split()
        step = duration / len(words) if words else 0.0
        payload["words"] = [
            {"word": w, "start": round(i * step, 3), "end": round((i + 1) * step, 3)}
            for i, w in enumerate(words)
        ]
    return json_response(payload)


async def transcriptions(request: Request) -> Response:
    return await _transcribe(request, translate=False)


async def translations(request: Request) -> Response:
    return await _transcribe(request, translate=True)
