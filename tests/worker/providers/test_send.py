"""The adapter protocol and the one shared send path (worker/providers/protocol.py, send.py).

First the send path's rules, on a small stand-in adapter: sign before sending, one exchange per wire
request, `error` on non-2xx, decoding per `expect`, an unusable 2xx as a retryable failure, several wire
requests sent in turn. Then every adapter in REGISTRY, for every kind it does: it implements translate /
parse / error, does not override `call`, and its `call` is one pass through the shared `send` with
exactly one HTTP exchange (against the simulator), and a non-2xx answer is read by its own `error`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from mmq.errors import ProviderError
from mmq.request_models import Kind
from tests.conftest import chat_body, data_url, png_bytes
from tests.worker.providers._sim import Sim, mock, wav_input
from worker.providers import REGISTRY
from worker.providers import send as send_module
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest
from worker.providers.protocol import WireAdapter

TARGET = Target("t", "echo", "https://provider.test")


class Echo(WireAdapter):
    """Sends the wire requests it is given and records what the send path hands back to it."""

    name = "echo"
    kinds = frozenset(Kind)
    media = MediaRules()

    def __init__(self, *wires: WireRequest, parse: Callable[[Any], Any] | None = None) -> None:
        self.wires = list(wires)
        self.parse_with = parse
        self.signed: list[str] = []
        self.parsed: list[Any] = []
        self.errors: list[int] = []

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> list[WireRequest]:
        return self.wires

    def sign(self, target: Target, wire: WireRequest) -> WireRequest:
        self.signed.append(wire.url)
        return replace(wire, headers={**wire.headers, "x-signed": str(len(self.signed))})

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        self.parsed.append(body)
        if self.parse_with is not None:
            body = self.parse_with(body)
        return ProviderResponse(
            response.status_code, body={"data": [body]}, request_id=response.headers.get("x-request-id")
        )

    def error(self, response: httpx.Response) -> ProviderError:
        self.errors.append(response.status_code)
        return ProviderError(
            "read by the adapter", status=response.status_code, code="echo", provider=self.name
        )


async def run(adapter: Echo, answer: Callable[[httpx.Request], httpx.Response], kind: Kind = Kind.chat):
    client, seen = mock(answer)
    async with client:
        resp = await adapter.call(client, TARGET, kind, {"model": "m"})
    return resp, seen.requests


# -------------------------------------------------------------------------------------- send's rules
async def test_one_signed_exchange_with_the_body_decoded_once() -> None:
    adapter = Echo(
        WireRequest("https://provider.test/v1/x", {"a": "1"}, params=[("q", "1"), ("q", "2")], json={"k": 1})
    )
    resp, sent = await run(
        adapter, lambda r: httpx.Response(200, json={"ok": True}, headers={"x-request-id": "r1"})
    )
    (req,) = sent
    assert str(req.url) == "https://provider.test/v1/x?q=1&q=2"
    assert req.headers["a"] == "1" and req.headers["x-signed"] == "1"  # signed just before it went out
    assert json.loads(req.content) == {"k": 1}
    assert adapter.parsed == [{"ok": True}] and adapter.errors == []
    assert resp.body == {"data": [{"ok": True}]} and resp.request_id == "r1"


async def test_multipart_form_and_raw_bodies_go_out_rendered() -> None:
    form = WireRequest(
        "https://provider.test/f",
        form={"model": "m", "tags[]": ["a", "b"]},
        files={"file": ("a.wav", b"RIFF", "audio/wav")},
    )
    raw = WireRequest("https://provider.test/r", {"content-type": "audio/wav"}, content=b"RIFFDATA")
    _, sent = await run(Echo(form), lambda r: httpx.Response(200, json={}))
    assert sent[0].headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="tags[]"' in sent[0].content and b'filename="a.wav"' in sent[0].content
    _, sent = await run(Echo(raw), lambda r: httpx.Response(200, json={}))
    assert sent[0].content == b"RIFFDATA"


@pytest.mark.parametrize("status", [302, 400, 429, 503])
async def test_a_non_2xx_answer_is_what_the_adapters_error_says(status: int) -> None:
    adapter = Echo(WireRequest("https://provider.test/x", json={}))
    with pytest.raises(ProviderError) as info:
        await run(adapter, lambda r: httpx.Response(status, json={"error": "no"}))
    assert (info.value.message, info.value.status, info.value.code) == ("read by the adapter", status, "echo")
    assert adapter.errors == [status] and adapter.parsed == []


@pytest.mark.parametrize(
    ("expect", "answer"),
    [
        ("json", httpx.Response(200, text="<html>proxy page</html>")),
        ("json", httpx.Response(200, content=b"")),
        ("bytes", httpx.Response(200, content=b"")),
    ],
)
async def test_a_2xx_that_does_not_decode_is_a_retryable_failure_never_parsed(
    expect: str, answer: httpx.Response
) -> None:
    adapter = Echo(WireRequest("https://provider.test/x", json={}, expect=expect))  # type: ignore[arg-type]
    with pytest.raises(ProviderError) as info:
        await run(adapter, lambda r: answer)
    err = info.value
    assert (err.status, err.code, err.retryable, err.provider) == (200, "unparseable_response", True, "echo")
    assert adapter.parsed == []


async def test_bytes_and_text_answers_reach_parse_as_such() -> None:
    adapter = Echo(WireRequest("https://provider.test/x", json={}, expect="bytes"))
    await run(adapter, lambda r: httpx.Response(200, content=b"\x00\x01audio"))
    adapter_text = Echo(WireRequest("https://provider.test/x", json={}, expect="text"))
    await run(adapter_text, lambda r: httpx.Response(200, text="1\n00:00:00,000 --> 00:00:01,000\nhi\n"))
    assert adapter.parsed == [b"\x00\x01audio"]
    assert adapter_text.parsed == ["1\n00:00:00,000 --> 00:00:01,000\nhi\n"]


async def test_a_parse_that_fails_on_the_bodys_shape_is_a_retryable_unparseable_failure() -> None:
    adapter = Echo(WireRequest("https://provider.test/x", json={}), parse=lambda body: body["choices"][0])
    with pytest.raises(ProviderError) as info:
        await run(adapter, lambda r: httpx.Response(200, json={"unexpected": 1}))
    err = info.value
    assert (err.status, err.code, err.retryable, err.provider) == (200, "unparseable_response", True, "echo")
    assert "unexpected" in err.message and isinstance(err.__cause__, KeyError)


async def test_a_provider_error_from_parse_gets_the_adapters_name_and_the_status() -> None:
    def blocked(body: Any) -> Any:
        raise ProviderError("prompt blocked", code="blocked", provider="inner")

    adapter = Echo(WireRequest("https://provider.test/x", json={}), parse=blocked)
    with pytest.raises(ProviderError) as info:
        await run(adapter, lambda r: httpx.Response(201, json={}))
    assert (info.value.provider, info.value.status, info.value.code, info.value.retryable) == (
        "echo",
        201,
        "blocked",
        False,
    )


async def test_several_wire_requests_go_one_after_the_other_and_are_combined() -> None:
    adapter = Echo(*(WireRequest(f"https://provider.test/{i}", json={"i": i}) for i in range(3)))
    answers = iter(range(3))

    def answer(request: httpx.Request) -> httpx.Response:
        i = next(answers)
        return httpx.Response(200, json={"image": i}, headers={"x-request-id": f"r{i}"} if i < 2 else {})

    resp, sent = await run(adapter, answer, Kind.image)
    assert [r.url.path for r in sent] == ["/0", "/1", "/2"]
    assert [r.headers["x-signed"] for r in sent] == ["1", "2", "3"]  # each signed just before its turn
    assert resp.body == {"data": [{"image": 0}, {"image": 1}, {"image": 2}]}
    assert resp.request_id == "r1"  # the last one an answer carried


async def test_the_first_failed_call_ends_a_several_call_job() -> None:
    adapter = Echo(*(WireRequest(f"https://provider.test/{i}", json={}) for i in range(3)))
    with pytest.raises(ProviderError):
        await run(adapter, lambda r: httpx.Response(200 if r.url.path == "/0" else 500, json={}), Kind.image)
    assert adapter.signed == ["https://provider.test/0", "https://provider.test/1"]
    assert adapter.errors == [500]


def test_a_wire_request_carries_one_body() -> None:
    with pytest.raises(ValueError, match="one body"):
        WireRequest("https://provider.test/x", json={}, content=b"x")
    with pytest.raises(ValueError, match="one body"):
        WireRequest("https://provider.test/x", form={"a": "b"}, json={})


# ------------------------------------------------------------------------- every adapter in REGISTRY
SIM_KEY = "sk-sim-provider"
CHAT = chat_body(data_url(png_bytes((20, 40, 200))))
SPOKEN = "the blue chair ships on monday"
MODELS: dict[Kind, dict[str, str]] = {
    Kind.chat: {
        "openai": "gpt-4o-mini",
        "openai-compatible": "llava",
        "azure-openai": "my-gpt4o-deployment",
        "anthropic": "claude-sonnet-4-5",
        "gemini": "gemini-2.5-flash",
        "vertex": "gemini-2.5-flash",
        "vertex-anthropic": "claude-sonnet-4-5@20250929",
        "groq": "meta-llama/llama-4-scout-17b-16e-instruct",
        "bedrock": "anthropic.claude-3-5-sonnet-20241022-v2:0",
    },
    Kind.image: {
        "openai": "gpt-image-1",
        "openai-compatible": "gpt-image-1",
        "azure-openai": "my-image-deployment",
        "gemini": "imagen-4.0-generate-001",
        "vertex": "imagen-4.0-generate-001",
        "stability": "stable-image-core",
        "bedrock": "amazon.titan-image-generator-v2:0",
    },
    Kind.speech: {
        "openai": "tts-1",
        "openai-compatible": "tts-1",
        "azure-openai": "tts",
        "elevenlabs": "tts-1",
    },
    Kind.transcription: {
        "openai": "whisper-1",
        "openai-compatible": "whisper-1",
        "azure-openai": "whisper",
        "groq": "whisper-large-v3",
        "deepgram": "nova-3",
    },
    Kind.translation: {
        "openai": "whisper-1",
        "openai-compatible": "whisper-1",
        "azure-openai": "whisper",
        "groq": "whisper-large-v3",
    },
}
CASES = sorted((provider, kind) for provider, adapter in REGISTRY.items() for kind in adapter.kinds)


def target(provider: str) -> Target:
    if provider == "bedrock":
        return Target("sim", provider, "http://sim", api_key="AKIDSIM:simsecret")
    headers = {}
    if provider in ("vertex", "vertex-anthropic"):
        headers = {"x-mmq-vertex-project": "sim-project", "x-mmq-vertex-location": "us-central1"}
    return Target("sim", provider, "http://sim", api_key=SIM_KEY, headers=headers)


def job(provider: str, kind: Kind) -> tuple[dict[str, Any], AudioInput | None]:
    model = MODELS[kind][provider]
    if kind is Kind.chat:
        return {**CHAT, "model": model}, None
    if kind is Kind.image:
        return {"model": model, "prompt": "a red lamp", "n": 1}, None
    if kind is Kind.speech:
        return {"model": model, "input": SPOKEN, "voice": "alloy"}, None
    return {"model": model}, wav_input(SPOKEN)


def test_every_kind_of_every_adapter_has_a_case_here() -> None:
    missing = [(p, k) for p, k in CASES if p not in MODELS[k]]
    assert not missing, f"add a model for {missing} to MODELS"


@pytest.mark.parametrize("provider", sorted(REGISTRY))
def test_every_adapter_implements_the_protocol_and_keeps_the_shared_call(provider: str) -> None:
    adapter = REGISTRY[provider]
    assert isinstance(adapter, WireAdapter)
    cls = type(adapter)
    for method in ("translate", "parse", "error"):
        assert getattr(cls, method) is not getattr(WireAdapter, method), f"{provider} lacks {method}"
    assert cls.call is WireAdapter.call, f"{provider} sends by itself instead of through send()"


@pytest.mark.parametrize(("provider", "kind"), CASES, ids=lambda v: str(v))
async def test_call_is_one_pass_through_send_and_one_exchange(
    provider: str, kind: Kind, make_sim: Callable[..., Sim], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = REGISTRY[provider]
    passes: list[str] = []
    real_send = send_module.send

    async def spy(client: Any, adapter_: Any, *args: Any) -> ProviderResponse:
        passes.append(adapter_.name)
        return await real_send(client, adapter_, *args)

    monkeypatch.setattr(send_module, "send", spy)
    sim = make_sim()
    request, audio = job(provider, kind)
    resp = await adapter.call(sim, target(provider), kind, request, audio)
    assert passes == [adapter.name]
    assert len(sim.recorder.requests) == 1
    assert resp.status == 200
    assert resp.body is not None or resp.content or resp.text


@pytest.mark.parametrize(("provider", "kind"), CASES, ids=lambda v: str(v))
async def test_a_non_2xx_is_read_by_the_adapters_own_error(
    provider: str, kind: Kind, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = REGISTRY[provider]
    cls = type(adapter)
    read: list[int] = []
    real_error = cls.error

    def error(self: Any, response: httpx.Response) -> ProviderError:
        read.append(response.status_code)
        return real_error(self, response)

    monkeypatch.setattr(cls, "error", error)
    client, seen = mock(lambda r: httpx.Response(503, json={"error": {"message": "busy"}}))
    request, audio = job(provider, kind)
    if kind is Kind.image:
        request["n"] = 2  # a several-call job (Stability, some Bedrock models) stops at the first failure
    async with client:
        with pytest.raises(ProviderError) as info:
            await adapter.call(client, target(provider), kind, request, audio)
    assert read == [503] and len(seen.requests) == 1
    assert (info.value.status, info.value.provider, info.value.retryable) == (503, adapter.name, True)
