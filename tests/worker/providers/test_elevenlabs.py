"""ElevenLabs adapter: the exact wire request, the name tables, and speech through the simulator's
ElevenLabs dialect that decodes back to the input text."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from mmq.simulator import decode_speech_wav
from mmq.simulator.faults import Fault
from tests.worker.providers._sim import Sim, mock
from worker.providers import REGISTRY
from worker.providers import elevenlabs as el
from worker.providers.base import Target
from worker.providers.elevenlabs import ElevenLabsAdapter

TARGET = Target(name="sim", provider="elevenlabs", base_url="http://sim", api_key="xi-test")
TEXT = "Hello from the simulator, ElevenLabs."


def speech(**params: Any) -> dict[str, Any]:
    return {"model": "tts-1", "input": TEXT, "voice": "alloy", **params}


async def call(client: httpx.AsyncClient, request: dict[str, Any], target: Target = TARGET) -> Any:
    return await ElevenLabsAdapter().call(client, target, Kind.speech, request)


def pcm_to_wav(pcm: bytes, rate: int = 16_000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ wire + tables
async def test_wire_request_is_exact() -> None:
    client, seen = mock(
        lambda r: httpx.Response(200, content=b"ID3audio", headers={"content-type": "audio/mpeg"})
    )
    target = Target(
        name="t",
        provider="elevenlabs",
        base_url="https://api.elevenlabs.io/",
        api_key="xi-key-1",
        headers={"x-extra": "1"},
    )
    async with client:
        resp = await call(client, speech(response_format="mp3", speed=1.1), target)
    (sent,) = seen.requests
    assert sent.method == "POST"
    assert (
        str(sent.url)
        == "https://api.elevenlabs.io/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM?output_format=mp3_44100_128"
    )
    assert sent.headers["xi-api-key"] == "xi-key-1"
    assert sent.headers["x-extra"] == "1"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert httpx.Response(200, content=sent.content).json() == {
        "text": TEXT,
        "model_id": "eleven_multilingual_v2",
        "voice_settings": {"speed": 1.1},
    }
    assert (resp.content, resp.content_type, resp.body, resp.text) == (b"ID3audio", "audio/mpeg", None, None)


def test_native_fields_pass_and_defaults() -> None:
    voice, query, body = el.to_native(
        {
            "model": "eleven_flash_v2_5",
            "input": "hi",
            "voice": {"id": "AbCdEfGhIjKlMnOpQrSt"},
            "seed": 7,
            "language_code": "de",
            "voice_settings": {"stability": 0.4},
            "enable_logging": False,
        }
    )
    assert voice == "AbCdEfGhIjKlMnOpQrSt"
    assert query == {"output_format": "mp3_44100_128", "enable_logging": "false"}  # OpenAI's default is mp3
    assert body == {
        "text": "hi",
        "model_id": "eleven_flash_v2_5",
        "voice_settings": {"stability": 0.4},
        "language_code": "de",
        "seed": 7,
    }
    assert el.speech_url("http://host/v1", "x y") == "http://host/v1/text-to-speech/x%20y"
    assert REGISTRY["elevenlabs"].default_base_url == "https://api.elevenlabs.io"  # type: ignore[attr-defined]


def test_voice_table() -> None:
    assert all(el.VOICE_ID_PATTERN.fullmatch(v) for v in el.VOICES.values())
    assert el.voice_id("Nova") == el.VOICES["nova"]
    assert el.voice_id("pNInz6obpgDQGcFmaJgB") == "pNInz6obpgDQGcFmaJgB"  # a raw id passes through
    with pytest.raises(InvalidJob, match="voice 'bob': no ElevenLabs voice is configured"):
        el.voice_id("bob")


@pytest.mark.parametrize(
    ("model", "native"),
    [
        ("tts-1", "eleven_multilingual_v2"),
        ("tts-1-hd", "eleven_multilingual_v2"),
        ("gpt-4o-mini-tts-2025-12-15", "eleven_multilingual_v2"),
        ("eleven_turbo_v2_5", "eleven_turbo_v2_5"),
    ],
)
def test_model_table(model: str, native: str) -> None:
    assert el.model_id(model) == native


@pytest.mark.parametrize(
    ("fmt", "native"),
    [("mp3", "mp3_44100_128"), ("opus", "opus_48000_128"), ("wav", "wav_24000"), ("pcm", "pcm_24000")],
)
def test_output_format_table(fmt: str, native: str) -> None:
    assert el.to_native(speech(response_format=fmt))[1]["output_format"] == native


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (speech(response_format="aac"), "response_format 'aac' is not available from ElevenLabs"),
        (speech(response_format="flac"), "response_format 'flac' is not available from ElevenLabs"),
        (speech(instructions="whisper it"), "instructions: ElevenLabs text-to-speech has no equivalent"),
        (speech(model="gpt-5-voice"), "model 'gpt-5-voice' has no ElevenLabs equivalent"),
    ],
)
def test_refusals_are_invalid_jobs(request_: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidJob, match=match):
        el.to_native(request_)


async def test_other_kinds_are_routing_errors() -> None:
    client, seen = mock(lambda r: httpx.Response(500))
    async with client:
        with pytest.raises(InvalidJob) as info:
            await ElevenLabsAdapter().call(client, TARGET, Kind.transcription, {})
    assert info.value.type == "routing_error" and not seen.requests


# ------------------------------------------------------------------------- against the simulator
async def test_speech_decodes_back_to_the_input(sim: Sim) -> None:
    resp = await call(sim, speech(response_format="wav", speed=1.0))
    assert resp.status == 200 and resp.content_type == "audio/wav"
    assert decode_speech_wav(resp.content) == TEXT
    assert resp.request_id


async def test_pcm_and_mp3_through_the_simulator(sim: Sim) -> None:
    pcm = await call(sim, speech(response_format="pcm", input="raw samples"))
    assert pcm.content_type == "audio/pcm" and not pcm.content.startswith(b"RIFF")
    assert decode_speech_wav(pcm_to_wav(pcm.content)) == "raw samples"
    # the simulator does not encode MP3: WAV bytes under the requested content type
    mp3 = await call(sim, speech(response_format="mp3", voice="echo", model="tts-1-hd"))
    assert mp3.content_type == "audio/mpeg"
    assert decode_speech_wav(mp3.content) == TEXT


async def test_missing_key_is_401_not_retryable(sim: Sim) -> None:
    keyless = Target(name="sim", provider="elevenlabs", base_url="http://sim")
    with pytest.raises(ProviderError) as info:
        await call(sim, speech(), keyless)
    err = info.value
    assert (err.status, err.code, err.retryable) == (401, "needs_authorization", False)
    assert "xi-api-key" in err.message
    # a Bearer token is no ElevenLabs key
    resp = await sim.post(
        "http://sim/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM",
        json={"text": "hi"},
        headers={"authorization": "Bearer k"},
    )
    assert resp.status_code == 401 and resp.json()["detail"]["status"] == "needs_authorization"


async def test_rate_limit_is_retryable_with_retry_after(
    make_sim: Callable[..., Sim],
) -> None:
    client = make_sim(requests_per_window=1, window_s=30)
    await call(client, speech())
    with pytest.raises(ProviderError) as info:
        await call(client, speech())
    err = info.value
    assert (err.status, err.code, err.retryable) == (429, "rate_limit_exceeded", True)
    assert err.retry_after_s is not None and 0 < err.retry_after_s <= 30


async def test_scripted_faults(sim: Sim) -> None:
    sim.faults.add(Fault(status=429, retry_after_s=7))
    sim.faults.add(Fault(status=503))
    sim.faults.add(Fault(status=401, code="quota_exceeded", message="You have insufficient quota"))
    sim.faults.add(Fault(status=429, code="quota_exceeded"))
    errors = []
    for _ in range(4):
        with pytest.raises(ProviderError) as info:
            await call(sim, speech())
        errors.append(info.value)
    assert [(e.status, e.code, e.retryable, e.retry_after_s) for e in errors] == [
        (429, "rate_limit_exceeded", True, 7.0),
        (503, "system_busy", True, None),
        (401, "quota_exceeded", False, None),
        (429, "quota_exceeded", False, None),  # pay first, do not hammer
    ]
    assert errors[2].message == "You have insufficient quota"
    assert (await call(sim, speech())).status == 200


async def test_injected_5xx_is_elevenlabs_shaped_and_retryable(
    make_sim: Callable[..., Sim],
) -> None:
    client = make_sim(error_rate=1)
    resp = await client.post(
        "http://sim/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM", json={"text": "hi"}, headers={"xi-api-key": "k"}
    )
    assert resp.status_code in (500, 503)
    assert set(resp.json()["detail"]) == {"type", "code", "message", "status", "request_id", "param"}
    with pytest.raises(ProviderError) as info:
        await call(client, speech())
    assert info.value.retryable


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={"audio": None}),
        httpx.Response(200, text="<html>maintenance</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b""),
    ],
)
async def test_garbage_200_is_retryable_unparseable(response: httpx.Response) -> None:
    client, _ = mock(lambda r: response)
    async with client:
        with pytest.raises(ProviderError) as info:
            await call(client, speech())
    assert (info.value.status, info.value.code, info.value.retryable) == (200, "unparseable_response", True)


async def test_octet_stream_answer_gets_the_format_content_type() -> None:
    client, _ = mock(
        lambda r: httpx.Response(
            200, content=b"OggS...", headers={"content-type": "application/octet-stream"}
        )
    )
    async with client:
        resp = await call(client, speech(response_format="opus"))
    assert resp.content_type == "audio/opus"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(400, json={"detail": "Voice not found"}), (400, None, False, "Voice not found")),
        (
            httpx.Response(
                422, json={"detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]}
            ),
            (422, "validation_error", False, "body.text: Field required"),
        ),
        (
            httpx.Response(
                429, json={"detail": {"status": "too_many_concurrent_requests", "message": "busy"}}
            ),
            (429, "too_many_concurrent_requests", True, "busy"),
        ),
        (httpx.Response(502, text="Bad gateway"), (502, None, True, "Bad gateway")),
    ],
)
def test_error_shapes(response: httpx.Response, expected: tuple[Any, ...]) -> None:
    err = el.error_from_response(response, "elevenlabs")
    assert (err.status, err.code, err.retryable, err.message) == expected


# ---------------------------------------------------------------------- simulator's own validation
@pytest.mark.parametrize(
    ("path", "body", "status", "check"),
    [
        (
            "21m00Tcm4TlvDq8ikWAM",
            {},
            422,
            lambda d: d[0]["loc"] == ["body", "text"] and d[0]["type"] == "missing",
        ),
        ("21m00Tcm4TlvDq8ikWAM", {"text": ""}, 422, lambda d: d[0]["type"] == "string_too_short"),
        (
            "21m00Tcm4TlvDq8ikWAM?output_format=mp3_1",
            {"text": "hi"},
            422,
            lambda d: d[0]["loc"] == ["query", "output_format"],
        ),
        ("21m00Tcm4TlvDq8ikWAM", {"text": "hi", "model_id": "nope"}, 400, lambda d: d["param"] == "model_id"),
        ("alloy", {"text": "hi"}, 400, lambda d: d["code"] == "voice_not_found"),
    ],
)
async def test_simulator_validation(
    sim: Sim, path: str, body: dict[str, Any], status: int, check: Callable[[Any], bool]
) -> None:
    resp = await sim.post(f"http://sim/v1/text-to-speech/{path}", json=body, headers={"xi-api-key": "k"})
    assert resp.status_code == status
    assert check(resp.json()["detail"])
    err = el.error_from_response(resp, "elevenlabs")  # the adapter reads every one of these as final
    assert (err.status, err.retryable) == (status, False) and err.message
