"""Deepgram adapter: the exact wire request, subtitles built from timings, and transcription of simulator
speech through the simulator's Deepgram dialect in every OpenAI response format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from mmq.simulator import encode_speech_wav
from mmq.simulator.faults import Fault
from mmq.subtitles import render_srt, render_vtt
from tests.worker.providers._sim import Sim, mock
from worker.providers import REGISTRY
from worker.providers import deepgram as dg
from worker.providers.base import AudioInput, Target
from worker.providers.deepgram import DeepgramAdapter
from worker.providers.elevenlabs import ElevenLabsAdapter

TARGET = Target(name="sim", provider="deepgram", base_url="http://sim", api_key="dg-test")
TEXT = "Hello world."
WAV = encode_speech_wav(TEXT)
AUDIO = AudioInput(data=WAV, content_type="audio/wav", filename="speech.wav")
# simulator speech: 4 preamble symbols + 8 length nibbles, then 2 symbols of 20 ms per byte
HELLO = {"word": "Hello", "start": 0.24, "end": 0.44}
WORLD = {"word": "world.", "start": 0.48, "end": 0.72}
NATIVE_OK = {
    "metadata": {"request_id": "req-1", "duration": 1.5},
    "results": {"channels": [{"alternatives": [{"transcript": "hi", "confidence": 0.9, "words": []}]}]},
}


def transcription(**params: Any) -> dict[str, Any]:
    return {"file": "mmq-blob://x", "model": "whisper-1", **params}


async def call(
    client: httpx.AsyncClient,
    request: dict[str, Any],
    target: Target = TARGET,
    audio: AudioInput | None = AUDIO,
    kind: Kind = Kind.transcription,
) -> Any:
    return await DeepgramAdapter().call(client, target, kind, request, audio)


# ------------------------------------------------------------------------------------------- wire
async def test_wire_request_is_exact() -> None:
    client, seen = mock(lambda r: httpx.Response(200, json=NATIVE_OK, headers={"dg-request-id": "dg-1"}))
    target = Target(
        name="t",
        provider="deepgram",
        base_url="https://api.deepgram.com",
        api_key="dg-key",
        headers={"x-a": "1"},
    )
    async with client:
        resp = await call(client, transcription(language="en", prompt="ignored", temperature=0.2), target)
    (sent,) = seen.requests
    assert sent.method == "POST"
    assert (
        str(sent.url)
        == "https://api.deepgram.com/v1/listen?model=nova-3&language=en&punctuate=true&smart_format=true"
    )
    assert sent.headers["authorization"] == "Token dg-key"
    assert sent.headers["content-type"] == "audio/wav"
    assert sent.headers["x-a"] == "1"
    assert sent.content == WAV  # the raw audio, no multipart wrapping
    assert resp.body == {"text": "hi", "usage": {"type": "duration", "seconds": 2}}
    assert (resp.request_id, resp.usage) == ("dg-1", {"type": "duration", "seconds": 2})


def test_query_for_timed_formats_detection_and_native_fields() -> None:
    query = dg.to_query(transcription(model="nova-2-meeting", response_format="srt", keyterm=["mmq", "arq"]))
    assert query == [
        ("model", "nova-2-meeting"),
        ("detect_language", "true"),  # no language: detect it, as Whisper does
        ("punctuate", "true"),
        ("smart_format", "true"),
        ("utterances", "true"),
        ("keyterm", "mmq"),
        ("keyterm", "arq"),
    ]
    assert dg.listen_url("http://host/v1/") == "http://host/v1/listen"
    assert REGISTRY["deepgram"].default_base_url == "https://api.deepgram.com"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "native"),
    [
        ("whisper-1", "nova-3"),
        ("gpt-4o-mini-transcribe-2025-12-15", "nova-3"),
        ("nova-2", "nova-2"),
        ("base", "base"),
    ],
)
def test_model_table(model: str, native: str) -> None:
    assert dg.deepgram_model(model) == native


def test_unknown_model_is_refused() -> None:
    with pytest.raises(InvalidJob, match="model 'gpt-9-ears' has no Deepgram equivalent"):
        dg.to_query(transcription(model="gpt-9-ears"))


async def test_translation_is_refused_before_any_request() -> None:
    client, seen = mock(lambda r: httpx.Response(200, json=NATIVE_OK))
    async with client:
        with pytest.raises(InvalidJob, match="deepgram has no translation endpoint") as info:
            await call(client, transcription(), kind=Kind.translation)
    assert info.value.type == "routing_error" and not seen.requests
    assert Kind.translation not in REGISTRY["deepgram"].kinds


# ---------------------------------------------------------------------------------- pure subtitles
def test_srt_and_vtt_from_words_without_utterances() -> None:
    words = [
        {"word": "one", "punctuated_word": "One", "start": 0.0, "end": 0.4},
        {"word": "two", "punctuated_word": "two.", "start": 0.5, "end": 0.9},
        {"word": "three", "punctuated_word": "Three", "start": 1.2, "end": 1.6},
    ]
    cues = dg.cues_from_words(words)
    assert cues == [(0.0, 0.9, "One two."), (1.2, 1.6, "Three")]
    assert (
        render_srt(cues)
        == "1\n00:00:00,000 --> 00:00:00,900\nOne two.\n\n2\n00:00:01,200 --> 00:00:01,600\nThree\n\n"
    )
    assert render_vtt(cues) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:00.900\nOne two.\n\n00:00:01.200 --> 00:00:01.600\nThree\n\n"
    )
    assert render_srt([(3723.5, 3724.0, "a --> b\n\nc")]) == "1\n01:02:03,500 --> 01:02:04,000\na -> b\nc\n\n"
    many = [{"word": "w", "start": float(i), "end": i + 0.5} for i in range(20)]
    assert [len(c[2].split()) for c in dg.cues_from_words(many)] == [7, 7, 6]  # a cue spans 7 s at most


# ------------------------------------------------------------------------- against the simulator
async def test_json_is_the_exact_text(sim: Sim) -> None:
    resp = await call(sim, transcription())
    assert resp.body == {"text": TEXT, "usage": {"type": "duration", "seconds": 1}}
    assert resp.request_id and resp.text is None


async def test_verbose_json_has_timed_segments_and_words(sim: Sim) -> None:
    resp = await call(sim, transcription(response_format="verbose_json", timestamp_granularities=["word"]))
    body = resp.body
    assert (body["task"], body["language"], body["text"]) == ("transcribe", "english", TEXT)
    assert body["duration"] == pytest.approx(0.9)  # 45 symbols of 20 ms (the last is silence)
    assert body["words"] == [HELLO, WORLD]
    (segment,) = body["segments"]
    assert (segment["id"], segment["start"], segment["end"], segment["text"]) == (0, 0.24, 0.72, TEXT)
    assert {"seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"} <= set(
        segment
    )
    # one utterance per spoken line
    two = "First line.\nSecond line!"
    audio = AudioInput(encode_speech_wav(two), "audio/wav", "two.wav")
    body = (await call(sim, transcription(response_format="verbose_json", language="de"), audio=audio)).body
    assert body["text"] == two and body["language"] == "german"
    assert [s["text"] for s in body["segments"]] == ["First line.", "Second line!"]
    assert body["segments"][0]["end"] <= body["segments"][1]["start"]


async def test_text_srt_vtt(sim: Sim) -> None:
    text = await call(sim, transcription(response_format="text"))
    assert (text.text, text.body) == (TEXT, None)
    srt = await call(sim, transcription(response_format="srt"))
    assert srt.text == "1\n00:00:00,240 --> 00:00:00,720\nHello world.\n\n"
    vtt = await call(sim, transcription(response_format="vtt"))
    assert vtt.text == "WEBVTT\n\n00:00:00.240 --> 00:00:00.720\nHello world.\n\n"


async def test_elevenlabs_speech_transcribes_back(sim: Sim) -> None:
    spoken = "ElevenLabs in, Deepgram out: 42 words?"
    target = Target(name="el", provider="elevenlabs", base_url="http://sim", api_key="xi")
    speech = await ElevenLabsAdapter().call(
        sim,
        target,
        Kind.speech,
        {"model": "tts-1", "input": spoken, "voice": "nova", "response_format": "wav"},
    )
    audio = AudioInput(speech.content or b"", "audio/wav", "el.wav")
    assert (await call(sim, transcription(), audio=audio)).body["text"] == spoken


async def test_simulator_native_shape(sim: Sim) -> None:
    resp = await sim.post(
        "http://sim/v1/listen?model=nova-3&utterances=true&detect_language=true",
        content=WAV,
        headers={"authorization": "Token k", "content-type": "audio/wav"},
    )
    assert resp.status_code == 200 and resp.headers["dg-request-id"]
    body = resp.json()
    channel = body["results"]["channels"][0]
    alternative = channel["alternatives"][0]
    # neither punctuate nor smart_format: lower-case words without punctuation, as Deepgram answers
    assert alternative["transcript"] == "hello world"
    assert [(w["word"], w["start"], w["end"]) for w in alternative["words"]] == [
        ("hello", 0.24, 0.44),
        ("world", 0.48, 0.72),
    ]
    assert "punctuated_word" not in alternative["words"][0]
    assert channel["detected_language"] == "en"
    assert body["results"]["utterances"][0]["transcript"] == "hello world"
    assert body["metadata"]["request_id"] == resp.headers["dg-request-id"]
    assert body["metadata"]["duration"] == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("query", "content", "message"),
    [
        ("model=nova-9", WAV, "No such model/language/tier combination found."),
        (
            "model=nova-3",
            b"not audio at all",
            "Bad Request: failed to process audio: corrupt or unsupported data",
        ),
        ("model=nova-3", b"", "Bad Request: failed to process audio: corrupt or unsupported data"),
        ("punctuate=maybe", WAV, "Failed to deserialize query parameters"),
    ],
)
async def test_simulator_rejections(sim: Sim, query: str, content: bytes, message: str) -> None:
    resp = await sim.post(
        f"http://sim/v1/listen?{query}", content=content, headers={"authorization": "Token k"}
    )
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == {"err_code", "err_msg", "request_id"} and body["err_code"] == "Bad Request"
    assert body["err_msg"].startswith(message)
    err = dg.error_from_response(resp, "deepgram")
    assert (err.code, err.retryable) == ("Bad Request", False)


# ----------------------------------------------------------------------------------------- errors
async def test_missing_or_wrong_auth_is_401_not_retryable(sim: Sim) -> None:
    keyless = Target(name="sim", provider="deepgram", base_url="http://sim")
    with pytest.raises(ProviderError) as info:
        await call(sim, transcription(), keyless)
    err = info.value
    assert (err.status, err.code, err.retryable, err.message) == (
        401,
        "INVALID_AUTH",
        False,
        "Invalid credentials.",
    )
    resp = await sim.post("http://sim/v1/listen", content=WAV, headers={"authorization": "Basic abc"})
    assert resp.status_code == 401 and resp.json()["err_code"] == "INVALID_AUTH"


async def test_rate_limit_is_retryable_with_retry_after(
    make_sim: Callable[..., Sim],
) -> None:
    client = make_sim(requests_per_window=1, window_s=30)
    await call(client, transcription())
    with pytest.raises(ProviderError) as info:
        await call(client, transcription())
    err = info.value
    assert (err.status, err.code, err.retryable) == (429, "TOO_MANY_REQUESTS", True)
    assert err.retry_after_s is not None and 0 < err.retry_after_s <= 30


async def test_scripted_faults(sim: Sim) -> None:
    sim.faults.add(Fault(status=429, retry_after_s=7))
    sim.faults.add(Fault(status=502))
    sim.faults.add(
        Fault(status=402, code="ASR_PAYMENT_REQUIRED", message="Project does not have enough credits")
    )
    errors = []
    for _ in range(3):
        with pytest.raises(ProviderError) as info:
            await call(sim, transcription())
        errors.append(info.value)
    assert [(e.status, e.code, e.retryable, e.retry_after_s) for e in errors] == [
        (429, "TOO_MANY_REQUESTS", True, 7.0),
        (502, "INTERNAL_SERVER_ERROR", True, None),
        (402, "ASR_PAYMENT_REQUIRED", False, None),
    ]
    assert errors[2].message == "Project does not have enough credits"
    assert (await call(sim, transcription())).status == 200


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json={"metadata": {}, "results": {"channels": []}}),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"results": {"channels": [{"alternatives": [{"transcript": None}]}]}}),
    ],
)
async def test_garbage_200_is_retryable_unparseable(response: httpx.Response) -> None:
    client, _ = mock(lambda r: response)
    async with client:
        with pytest.raises(ProviderError) as info:
            await call(client, transcription(response_format="srt"))
    assert (info.value.status, info.value.code, info.value.retryable) == (200, "unparseable_response", True)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            httpx.Response(
                400, json={"category": "INVALID_JSON", "message": "Invalid JSON submitted.", "details": "x"}
            ),
            (400, "INVALID_JSON", False, "Invalid JSON submitted. (x)"),
        ),
        (httpx.Response(503, text="upstream down"), (503, None, True, "upstream down")),
        (
            httpx.Response(422, json={"err_code": "Unprocessable Entity", "err_msg": "audio incomplete"}),
            (422, "Unprocessable Entity", True, "audio incomplete"),  # an upload cut short: try again
        ),
    ],
)
def test_error_shapes(response: httpx.Response, expected: tuple[Any, ...]) -> None:
    err = dg.error_from_response(response, "deepgram")
    assert (err.status, err.code, err.retryable, err.message) == expected
