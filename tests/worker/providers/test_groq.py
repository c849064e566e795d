"""Groq adapter: the exact wire against the simulator's Groq dialect for chat, transcription and
translation, Groq's audio rules (refused, never silently dropped), and its rate-limit headers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from mmq.simulator import encode_speech_wav
from tests.conftest import data_url
from tests.worker.providers._sim import Sim, form_fields, image, mock, refuse, wav_input
from worker.providers import REGISTRY
from worker.providers.base import Target
from worker.providers.groq import GroqAdapter, error_from_response, parse_duration

KEY = "gsk_test"
VISION = "meta-llama/llama-4-scout-17b-16e-instruct"
TARGET = Target(name="groq", provider="groq", base_url="http://sim", api_key=KEY)
ADAPTER = GroqAdapter()


def image_part(data: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url(data)}}


def chat(text: str, *images: bytes, **params: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": text}, *(image_part(i) for i in images)]
    return {"model": VISION, "messages": [{"role": "user", "content": content}], **params}


def audio(model: str = "whisper-large-v3", **params: Any) -> dict[str, Any]:
    return {"file": "mmq-blob://a", "model": model, **params}


# ------------------------------------------------------------------------------------ every kind
@pytest.mark.parametrize("base_url", ["http://sim", "http://sim/openai/v1/"])
async def test_vision_chat(sim: Sim, base_url: str) -> None:
    target = Target(name="groq", provider="groq", base_url=base_url, api_key=KEY)
    request = chat("What colour?", image((0, 0, 255)), image((40, 160, 40)), temperature=0.2)
    resp = await ADAPTER.call(sim, target, Kind.chat, request)
    sent = sim.sent
    assert str(sent.url) == "http://sim/openai/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert "api-key" not in sent.headers
    assert json.loads(sent.content) == request
    body = resp.body
    assert body is not None and body["object"] == "chat.completion" and body["model"] == VISION
    content = body["choices"][0]["message"]["content"]
    assert "Image 1: 60x40 PNG, mostly blue" in content and "Image 2: 60x40 PNG, mostly green" in content
    assert resp.usage == body["usage"]
    assert resp.request_id and resp.request_id.startswith("sim-")
    assert sim.app.state.stats.by_path == {"/openai/v1/chat/completions": 1}


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({}, {}),
        ({"response_format": "text", "language": "en"}, {"response_format": ["text"], "language": ["en"]}),
        (
            {
                "response_format": "verbose_json",
                "timestamp_granularities": ["word", "segment"],
                "temperature": 0,
            },
            {
                "response_format": ["verbose_json"],
                "timestamp_granularities[]": ["word", "segment"],
                "temperature": ["0"],
            },
        ),
    ],
    ids=["json", "text", "verbose-words"],
)
async def test_transcription(sim: Sim, params: dict[str, Any], fields: dict[str, list[str]]) -> None:
    request = audio("whisper-large-v3-turbo", filename="speech.wav", stream=False, **params)
    resp = await ADAPTER.call(sim, TARGET, Kind.transcription, request, wav_input("jumps over the lazy dog"))
    sent = sim.sent
    assert str(sent.url) == "http://sim/openai/v1/audio/transcriptions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    # stream=false changes nothing and Groq does not take it: left out, like the worker's own fields
    assert form_fields(sent) == {"model": ["whisper-large-v3-turbo"], **fields, "file": ["speech.wav"]}
    if params.get("response_format") == "text":
        assert resp.text == "jumps over the lazy dog" and resp.body is None
        return
    assert resp.body is not None and resp.body["text"] == "jumps over the lazy dog"
    if params.get("response_format") == "verbose_json":
        assert [w["word"] for w in resp.body["words"]] == ["jumps", "over", "the", "lazy", "dog"]


async def test_translation(sim: Sim) -> None:
    request = audio(prompt="Proper nouns: Oslo", response_format="json")
    resp = await ADAPTER.call(sim, TARGET, Kind.translation, request, wav_input("god morgen"))
    sent = sim.sent
    assert str(sent.url) == "http://sim/openai/v1/audio/translations"
    assert form_fields(sent) == {
        "model": ["whisper-large-v3"],
        "prompt": ["Proper nouns: Oslo"],
        "response_format": ["json"],
        "file": ["speech.wav"],
    }
    assert resp.body is not None and resp.body["text"] == "[mmq simulator translation] god morgen"


# ------------------------------------------------------------------------ refused before sending
@pytest.mark.parametrize(
    ("kind", "request_", "match"),
    [
        (Kind.transcription, audio(response_format="srt"), "no srt/vtt"),
        (Kind.translation, audio(response_format="vtt"), "no srt/vtt"),
        (Kind.translation, audio("whisper-large-v3-turbo"), "cannot translate"),
        (Kind.translation, audio(language="de"), "language: Groq's audio translation endpoint"),
        (Kind.transcription, audio(include=["logprobs"]), "include: "),
        (Kind.transcription, audio(chunking_strategy="auto"), "chunking_strategy: "),
        (Kind.transcription, audio(stream=True), "stream: "),
        (Kind.transcription, audio(timestamp_granularities=["word"]), "needs response_format verbose_json"),
    ],
)
async def test_audio_params_groq_cannot_honour_are_refused(
    kind: Kind, request_: dict[str, Any], match: str
) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(InvalidJob, match=match):
            await ADAPTER.call(client, TARGET, kind, request_, wav_input("x"))


@pytest.mark.parametrize("kind", [Kind.image, Kind.speech])
async def test_kinds_groq_does_not_serve(kind: Kind) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(InvalidJob) as info:
            await ADAPTER.call(
                client, TARGET, kind, {"model": "m", "prompt": "p", "input": "i", "voice": "v"}
            )
    assert info.value.type == "routing_error"


# ------------------------------------------------------------------------------------------- errors
async def test_unknown_model_is_a_non_retryable_404(sim: Sim) -> None:
    with pytest.raises(ProviderError) as info:
        await ADAPTER.call(sim, TARGET, Kind.transcription, audio("whisper-1"), wav_input("x"))
    err = info.value
    assert (err.status, err.code, err.retryable, err.provider) == (404, "model_not_found", False, "groq")
    assert err.message == "The model `whisper-1` does not exist or you do not have access to it."


async def test_rate_limit_429_waits_for_retry_after(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim(requests_per_window=1, window_s=30)
    await ADAPTER.call(sim, TARGET, Kind.chat, chat("hi"))
    with pytest.raises(ProviderError) as info:
        await ADAPTER.call(sim, TARGET, Kind.chat, chat("hi"))
    err = info.value
    assert (err.status, err.code, err.retryable) == (429, "rate_limit_exceeded", True)
    assert (
        err.retry_after_s is not None
        and err.retry_after_s == int(err.retry_after_s)
        and err.retry_after_s >= 1
    )
    raw = await sim.post(
        "http://sim/openai/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"}, json={}
    )
    assert raw.status_code == 429
    assert "retry-after-ms" not in raw.headers and raw.headers["retry-after"]
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert parse_duration(raw.headers["x-ratelimit-reset-requests"]) is not None
    assert raw.json()["error"] == {
        "message": raw.json()["error"]["message"],
        "type": "requests",
        "code": "rate_limit_exceeded",
    }


def groq_429(headers: dict[str, str]) -> httpx.Response:
    body = {"error": {"message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded"}}
    return httpx.Response(429, json=body, headers=headers)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"x-ratelimit-reset-requests": "2m59.56s", "x-ratelimit-reset-tokens": "7.66s"}, 179.56),
        (
            {
                "x-ratelimit-remaining-requests": "14370",
                "x-ratelimit-reset-requests": "2m59.56s",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "7.66s",
            },
            7.66,
        ),
        ({"x-ratelimit-reset-tokens": "120ms"}, 0.12),
        ({"retry-after": "3", "x-ratelimit-reset-requests": "2m59.56s"}, 3.0),
        ({}, None),
    ],
    ids=["requests-reset", "exhausted-family", "tokens-only", "retry-after-wins", "none"],
)
def test_reset_headers_give_retry_after(headers: dict[str, str], wait: float | None) -> None:
    err = error_from_response(groq_429(headers), "groq")
    assert (err.status, err.retryable) == (429, True)
    assert err.retry_after_s == (pytest.approx(wait) if wait is not None else None)


def test_reset_headers_only_matter_on_429() -> None:
    body = {"error": {"message": "bad", "type": "invalid_request_error"}}
    resp = httpx.Response(400, json=body, headers={"x-ratelimit-reset-requests": "1s"})
    err = error_from_response(resp, "groq")
    assert (err.retryable, err.retry_after_s) == (False, None)


@pytest.mark.parametrize(("status", "retryable"), [(498, True), (503, True), (413, False), (400, False)])
def test_status_retryability(status: int, retryable: bool) -> None:
    err = error_from_response(httpx.Response(status, json={"error": {"message": "m"}}), "groq")
    assert err.retryable is retryable


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2m59.56s", 179.56),
        ("7.66s", 7.66),
        ("12ms", 0.012),
        ("1h2m3s", 3723.0),
        ("6m0s", 360.0),
        ("250us", 0.00025),
        ("4", 4.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_duration(value: str | None, seconds: float | None) -> None:
    assert parse_duration(value) == (pytest.approx(seconds) if seconds is not None else None)


async def test_request_id_falls_back_to_x_groq() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"id": "c", "object": "chat.completion", "choices": [], "x_groq": {"id": "req_01abc"}}
        return httpx.Response(200, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        resp = await ADAPTER.call(client, TARGET, Kind.chat, chat("hi"))
    assert resp.request_id == "req_01abc"


# ------------------------------------------------------------------------ the simulator's own rules
def groq_audio(
    path: str, *, fmt: str = "json", model: str = "whisper-large-v3", **extra: Any
) -> dict[str, Any]:
    return {
        "url": f"http://sim/openai/v1/audio/{path}",
        "headers": {"authorization": f"Bearer {KEY}"},
        "files": {"file": ("a.wav", encode_speech_wav("x"), "audio/wav")},
        "data": {"model": model, "response_format": fmt, **extra},
    }


@pytest.mark.parametrize(
    ("call", "status", "error"),
    [
        (
            groq_audio("transcriptions", fmt="srt"),
            400,
            {
                "message": "response_format must be one of json, text, verbose_json, got 'srt'.",
                "type": "invalid_request_error",
                "param": "response_format",
                "code": "invalid_value",
            },
        ),
        (
            groq_audio("translations", model="whisper-large-v3-turbo"),
            400,
            {
                "message": "`whisper-large-v3-turbo` does not support translations; use whisper-large-v3.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "invalid_value",
            },
        ),
        (
            groq_audio("transcriptions", **{"timestamp_granularities[]": "word"}),
            400,
            {
                "message": "timestamp_granularities requires response_format=verbose_json.",
                "type": "invalid_request_error",
                "param": "timestamp_granularities",
                "code": "invalid_value",
            },
        ),
        (
            groq_audio("transcriptions", model="whisper-1"),
            404,
            {
                "message": "The model `whisper-1` does not exist or you do not have access to it.",
                "type": "invalid_request_error",
                "code": "model_not_found",
            },
        ),
        (
            {"url": "http://sim/openai/v1/chat/completions", "json": chat("hi")},
            401,
            {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"},
        ),
        (
            {
                "url": "http://sim/openai/v1/chat/completions",
                "headers": {"authorization": f"Bearer {KEY}"},
                "json": chat("six", *[image((9, 9, 9))] * 6),
            },
            400,
            {
                "message": "Too many images provided. This model supports up to 5 images",
                "type": "invalid_request_error",
                "param": "messages",
            },
        ),
        (
            {
                "url": "http://sim/openai/v1/chat/completions",
                "headers": {"authorization": f"Bearer {KEY}"},
                "json": chat("two", n=2),
            },
            400,
            {
                "message": "'n' : number must be at most 1",
                "type": "invalid_request_error",
                "param": "n",
                "code": "invalid_value",
            },
        ),
        (
            {
                "url": "http://sim/openai/v1/chat/completions",
                "headers": {"authorization": f"Bearer {KEY}"},
                "json": chat("big", image((1, 2, 3)) + b"\0" * (4 * 1024 * 1024)),
            },
            413,
            {
                "message": "Request Entity Too Large",
                "type": "invalid_request_error",
                "code": "request_too_large",
            },
        ),
    ],
    ids=[
        "srt",
        "turbo-translation",
        "granularities-need-verbose",
        "unknown-model",
        "no-key",
        "six-images",
        "n",
        "4mb",
    ],
)
async def test_simulator_groq_rules(
    sim: Sim, call: dict[str, Any], status: int, error: dict[str, str]
) -> None:
    resp = await sim.post(**call)
    assert (resp.status_code, resp.json()) == (status, {"error": error})


async def test_shared_v1_paths_split_by_dialect(sim: Sim) -> None:
    """srt is Groq-illegal but Azure-legal: the api-key header decides which dialect answers."""
    call = groq_audio("transcriptions", fmt="srt")
    assert (await sim.post(**call)).status_code == 400
    call["headers"] = {"api-key": "azure-key"}
    resp = await sim.post(**call)
    assert resp.status_code == 200 and "-->" in resp.text
    assert sim.app.state.stats.by_path == {
        "/openai/v1/audio/transcriptions": 1,
        "/openai/v1/audio/transcriptions (azure)": 1,
    }


def test_registry_and_defaults() -> None:
    adapter = REGISTRY["groq"]
    assert isinstance(adapter, GroqAdapter) and adapter.name == "groq"
    assert adapter.kinds == frozenset({Kind.chat, Kind.transcription, Kind.translation})
    assert adapter.default_base_url == "https://api.groq.com/openai/v1"
    assert adapter.media.max_images == 5 and not adapter.media.document_types


@pytest.mark.parametrize("base_url", ["", "https://api.groq.com", "https://api.groq.com/openai/v1"])
async def test_public_endpoint(base_url: str) -> None:
    client, seen = mock(
        lambda r: httpx.Response(200, json={"id": "c", "object": "chat.completion", "choices": []})
    )
    target = Target(name="groq", provider="groq", base_url=base_url, api_key=KEY)
    async with client:
        await ADAPTER.call(client, target, Kind.chat, chat("hi"))
    assert str(seen.requests[0].url) == "https://api.groq.com/openai/v1/chat/completions"
