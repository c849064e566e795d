"""Anthropic adapter: golden native bodies, and the adapter against the simulator's Anthropic dialect."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from mmq.simulator.faults import Fault
from tests.conftest import data_url
from tests.worker.providers._sim import PDF, Sim, b64, file_part, image, image_part, mock, text, user
from worker.providers import REGISTRY
from worker.providers import anthropic as ant
from worker.providers.anthropic import AnthropicAdapter, from_native, to_native
from worker.providers.base import Target

MODEL = "claude-sonnet-test"


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **params}


# ------------------------------------------------------------------------------------ golden bodies
def test_golden_data_png() -> None:
    png = image((209, 42, 42))
    body = to_native(chat(user(text("What colour?"), image_part(data_url(png, "image/png")))))
    assert body == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What colour?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": b64(png)},
                    },
                ],
            }
        ],
    }


def test_golden_http_url_with_limits_and_stop() -> None:
    request = chat(
        user(text("Describe."), image_part("https://example.com/cat.jpg", detail="high")),
        max_completion_tokens=300,
        max_tokens=999,  # max_completion_tokens wins, as in OpenAI
        stop="END",
        user="u-42",
        seed=7,  # OpenAI-only, dropped
    )
    assert to_native(request) == {
        "model": MODEL,
        "max_tokens": 300,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe."},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-42"},
    }


def test_golden_pdf_and_text_documents() -> None:
    request = chat(
        user(
            text("Summarise both."),
            file_part(PDF, "application/pdf", "report.pdf"),
            file_part(b"plain notes\n", "text/plain"),
        ),
        max_tokens=100,
    )
    assert to_native(request) == {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Summarise both."},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
                        "title": "report.pdf",
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "plain notes\n"},
                    },
                ],
            }
        ],
    }


def test_golden_two_images_system_prompt_and_merged_turns() -> None:
    jpeg, webp = image((0, 0, 255), "JPEG"), image((255, 255, 0), "WEBP")
    request = chat(
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [text("Answer in English.")]},
        user(text("First:"), image_part(data_url(jpeg, "image/jpeg"))),
        {"role": "user", "content": "and second:"},
        user(image_part(data_url(webp, "image/webp"))),
        {"role": "assistant", "content": "Blue, then"},
        stop=["\n\n", "###"],
    )
    assert to_native(request) == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "First:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": b64(jpeg)},
                    },
                    {"type": "text", "text": "and second:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/webp", "data": b64(webp)},
                    },
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Blue, then"}]},
        ],
        "stop_sequences": ["\n\n", "###"],
    }


def test_media_type_follows_the_bytes() -> None:
    png = image((0, 255, 0))
    body = to_native(chat(user(image_part(data_url(png, "image/jpeg")))))
    assert body["messages"][0]["content"][0]["source"]["media_type"] == "image/png"


def test_sampling_params_forwarded_only_when_present_and_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "temperature" not in to_native(chat(user(text("hi"))))
    body = to_native(chat(user(text("hi")), temperature=1.5, top_p=0.9))
    assert (body["temperature"], body["top_p"]) == (1.0, 0.9)  # clamped to Anthropic's maximum
    monkeypatch.setattr(ant, "FORWARD_SAMPLING", False)
    body = to_native(chat(user(text("hi")), temperature=0.2, top_p=0.9))
    assert "temperature" not in body and "top_p" not in body


def test_default_max_tokens_is_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ant.DEFAULT_MAX_TOKENS, "claude-small", 1024)
    assert to_native({"model": "claude-small-1", "messages": [user(text("x"))]})["max_tokens"] == 1024
    assert to_native({"model": "claude-big-1", "messages": [user(text("x"))]})["max_tokens"] == 4096


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (chat(user(text("x")), tools=[{"type": "function", "function": {"name": "f"}}]), "tool calling"),
        (chat(user(text("x")), {"role": "assistant", "tool_calls": [{"id": "1"}]}), "tool calls"),
        (chat(user(text("x")), {"role": "tool", "content": "42", "tool_call_id": "1"}), "tool calls"),
        (chat({"role": "assistant", "content": "hi"}, user(text("x"))), "starts with a non-empty user"),
        (chat({"role": "system", "content": "only a system prompt"}), "starts with a non-empty user"),
        (chat(user({"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}})), "audio"),
        (chat(user({"type": "file", "file": {"file_id": "file-123"}})), "file_id"),
        (chat(user(image_part(data_url(image((1, 2, 3), "BMP"), "image/bmp")))), "image/bmp"),
        (chat(user(text("x")), n=2), "n=1"),
        (chat(user(text("x")), response_format={"type": "json_object"}), "json_object"),
    ],
)
def test_unsupported_requests_are_invalid_jobs(request_: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidJob, match=match):
        to_native(request_)


def test_from_native_golden() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x-20250101",
        "content": [
            {"type": "text", "text": "Hello, "},
            {"type": "thinking", "thinking": "..."},
            {"type": "text", "text": "world"},
        ],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 2,
            "cache_read_input_tokens": 3,
        },
    }
    out = from_native(body, {"model": MODEL})
    assert abs(out.pop("created") - time.time()) < 5
    assert out == {
        "id": "msg_1",
        "object": "chat.completion",
        "model": "claude-x-20250101",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world", "refusal": None},
                "finish_reason": "length",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 15,
            "completion_tokens": 5,
            "total_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 3},
        },
    }
    for native, openai in [("end_turn", "stop"), ("stop_sequence", "stop"), ("refusal", "content_filter")]:
        assert from_native({**body, "stop_reason": native}, {})["choices"][0]["finish_reason"] == openai


def test_messages_url_and_adapter_rules() -> None:
    assert ant.messages_url("https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert (
        ant.messages_url("https://proxy.example/anthropic/v1/")
        == "https://proxy.example/anthropic/v1/messages"
    )
    adapter = REGISTRY["anthropic"]
    assert adapter.name == "anthropic" and adapter.kinds == frozenset({Kind.chat})
    assert adapter.media.image_types == frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
    assert adapter.media.document_types == frozenset({"application/pdf", "text/plain"})
    assert (
        adapter.media.max_image_bytes is not None and adapter.media.max_image_bytes * 4 / 3 <= 5 * 1024 * 1024
    )


def test_ratelimit_reset_headers_give_retry_after() -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=30)).isoformat(timespec="seconds").replace("+00:00", "Z")
    resp = httpx.Response(
        429,
        json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        headers={
            "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": reset,
            "anthropic-ratelimit-requests-remaining": "7",
            "anthropic-ratelimit-requests-reset": "2000-01-01T00:00:00Z",  # not exhausted: ignored
        },
    )
    err = ant.error_from_response(resp, "anthropic")
    assert (err.status, err.code, err.retryable, err.message) == (429, "rate_limit_error", True, "slow down")
    assert err.retry_after_s is not None and 25 < err.retry_after_s <= 30
    resp = httpx.Response(413, text="<html>Request Entity Too Large</html>")
    err = ant.error_from_response(resp, "anthropic")
    assert (err.status, err.code, err.retryable) == (413, None, False)
    assert "Too Large" in err.message


# ------------------------------------------------------------------------- against the simulator
Call = Callable[..., Any]
TARGET = Target(name="sim", provider="anthropic", base_url="http://sim", api_key="sk-ant-test")


async def call(client: httpx.AsyncClient, request: dict[str, Any], target: Target = TARGET) -> Any:
    return await AnthropicAdapter().call(client, target, Kind.chat, request)


async def raw(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    sent = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", **headers}
    return await client.post(
        "http://sim/v1/messages", json=body, headers={k: v for k, v in sent.items() if v}
    )


@pytest.mark.parametrize(
    ("fmt", "mime", "rgb", "colour"),
    [
        ("PNG", "image/png", (209, 42, 42), "red"),
        ("GIF", "image/gif", (0, 0, 255), "blue"),
        ("JPEG", "image/jpeg", (40, 160, 40), "green"),
        ("WEBP", "image/webp", (255, 255, 0), "yellow"),
    ],
)
async def test_caption_names_the_colour(
    sim: Sim, fmt: str, mime: str, rgb: tuple[int, int, int], colour: str
) -> None:
    request = chat(
        {"role": "system", "content": "Be brief."},
        user(text("What colour is this?"), image_part(data_url(image(rgb, fmt), mime))),
    )
    resp = await call(sim, request)
    body = resp.body
    content = body["choices"][0]["message"]["content"]
    assert content.startswith(f"[mmq simulator] Image 1: 60x40 {fmt}, mostly {colour} (#")
    assert content.endswith("Prompt: What colour is this?")
    assert body["object"] == "chat.completion" and body["id"].startswith("msg_sim_")
    assert body["model"] == MODEL
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 3 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert resp.usage == usage and resp.status == 200
    assert resp.request_id and resp.request_id.startswith("sim-")


async def test_documents_url_image_and_length(sim: Sim) -> None:
    served = image((255, 165, 0))
    sim.app.state.sim.http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=served))
    )
    request = chat(
        user(
            text("Read these."),
            file_part(PDF, "application/pdf", "report.pdf"),
            file_part(b"hello notes", "text/plain", "notes.txt"),
            image_part("https://images.example/orange.png"),
        )
    )
    content = (await call(sim, request)).body["choices"][0]["message"]["content"]
    assert "File 1: PDF (report.pdf), about 2 pages." in content
    assert "File 2: plain text (notes.txt), 11 characters." in content
    assert "Image 1: 60x40 PNG, mostly orange" in content
    short = await call(sim, {**request, "max_tokens": 3})
    assert short.body["choices"][0]["finish_reason"] == "length"
    assert short.body["usage"]["completion_tokens"] == 3
    stopped = await call(sim, {**request, "stop": ["File 2"]})
    assert stopped.body["choices"][0]["finish_reason"] == "stop"
    assert "File 2" not in stopped.body["choices"][0]["message"]["content"]


async def test_rejection_missing_max_tokens(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ant.to_native
    monkeypatch.setattr(
        ant, "to_native", lambda request: {k: v for k, v in real(request).items() if k != "max_tokens"}
    )
    with pytest.raises(ProviderError) as info:
        await call(sim, chat(user(text("hi"))))
    err = info.value
    assert (err.status, err.code, err.retryable) == (400, "invalid_request_error", False)
    assert err.message == "max_tokens: Field required"


async def test_rejection_wrong_media_type(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ant, "_sniffed", lambda mime, data: mime)  # an adapter that trusts the label
    with pytest.raises(ProviderError) as info:
        await call(sim, chat(user(image_part(data_url(image((0, 0, 0)), "image/jpeg")))))
    err = info.value
    assert (err.status, err.code, err.retryable) == (400, "invalid_request_error", False)
    assert err.message == (
        "messages.0.content.0.image.source.base64: The image was specified using the image/jpeg media "
        "type, but the image appears to be a image/png image"
    )


async def test_rejection_missing_key(sim: Sim) -> None:
    keyless = Target(name="sim", provider="anthropic", base_url="http://sim")
    with pytest.raises(ProviderError) as info:
        await call(sim, chat(user(text("hi"))), keyless)
    err = info.value
    assert (err.status, err.code, err.retryable) == (401, "authentication_error", False)
    assert str(err) == "anthropic HTTP 401 (authentication_error): x-api-key header is required"


async def test_overloaded_529_is_retryable(sim: Sim) -> None:
    sim.faults.add(Fault(status=529, code="overloaded_error", message="Overloaded"))
    with pytest.raises(ProviderError) as info:
        await call(sim, chat(user(text("hi"))))
    err = info.value
    assert (err.status, err.code, err.retryable, err.message) == (529, "overloaded_error", True, "Overloaded")
    assert (await call(sim, chat(user(text("hi"))))).status == 200  # the fault was for one request


async def test_injected_errors_are_anthropic_shaped(make_sim: Callable[..., Sim]) -> None:
    client = make_sim(error_rate=1)
    resp = await raw(client, {"model": MODEL, "max_tokens": 5, "messages": [user(text("hi"))]})
    assert resp.status_code in (500, 503)
    assert resp.json() == {
        "type": "error",
        "error": {
            "type": "api_error" if resp.status_code == 500 else "overloaded_error",
            "message": "The server had an error while processing your request. (mmq simulator injected)",
        },
    }
    with pytest.raises(ProviderError) as info:
        await call(client, chat(user(text("hi"))))
    assert info.value.retryable


async def test_rate_limit_is_retryable_with_retry_after(
    make_sim: Callable[..., Sim],
) -> None:
    client = make_sim(requests_per_window=1, window_s=30)
    await call(client, chat(user(text("hi"))))
    with pytest.raises(ProviderError) as info:
        await call(client, chat(user(text("hi"))))
    err = info.value
    assert (err.status, err.code, err.retryable) == (429, "rate_limit_error", True)
    assert err.retry_after_s is not None and 0 < err.retry_after_s <= 30
    resp = await raw(client, {"model": MODEL, "max_tokens": 5, "messages": [user(text("hi"))]})
    assert resp.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert resp.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert resp.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert "x-ratelimit-limit-requests" not in resp.headers


@pytest.mark.parametrize(
    ("response", "why"),
    [
        (httpx.Response(200, text="<html>oops</html>"), "not JSON"),
        (httpx.Response(200, json={"type": "message", "content": None}), "no content list"),
        (httpx.Response(200, json=["not", "an", "object"]), "not an object"),
    ],
)
async def test_garbage_200_is_retryable_unparseable(response: httpx.Response, why: str) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: response)) as client:
        with pytest.raises(ProviderError) as info:
            await call(client, chat(user(text("hi"))))
    err = info.value
    assert (err.status, err.code, err.retryable) == (200, "unparseable_response", True), why


async def test_wire_headers_and_url() -> None:
    body = {"id": "msg_1", "model": MODEL, "content": [], "stop_reason": "end_turn", "usage": {}}
    client, seen = mock(lambda r: httpx.Response(200, json=body, headers={"request-id": "req_abc"}))
    target = Target(
        name="t",
        provider="anthropic",
        base_url="https://api.anthropic.com/",
        api_key="sk-ant-1",
        headers={"anthropic-beta": "files-api-2025-04-14"},
    )
    async with client:
        resp = await call(client, chat(user(text("hi"))), target)
    (sent,) = seen.requests
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-1"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "files-api-2025-04-14"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert resp.request_id == "req_abc"
    assert resp.body["choices"][0]["message"]["content"] == ""


# ---------------------------------------------------------------------- simulator's own validation
HI = [user(text("hi"))]


@pytest.mark.parametrize(
    ("body", "headers", "status", "kind", "message"),
    [
        (
            {"model": MODEL, "max_tokens": 5, "messages": HI},
            {"x-api-key": ""},
            401,
            "authentication_error",
            "x-api-key header is required",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": HI},
            {"anthropic-version": ""},
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        ),
        ({"model": MODEL, "messages": HI}, {}, 400, "invalid_request_error", "max_tokens: Field required"),
        ({"max_tokens": 5, "messages": HI}, {}, 400, "invalid_request_error", "model: Field required"),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "s"}, *HI]},
            {},
            400,
            "invalid_request_error",
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "assistant", "content": "a"}, *HI]},
            {},
            400,
            "invalid_request_error",
            'messages: first message must use the "user" role',
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [*HI, *HI]},
            {},
            400,
            "invalid_request_error",
            'messages: roles must alternate between "user" and "assistant", '
            'but found multiple "user" roles in a row',
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": HI, "temperature": 1.5},
            {},
            400,
            "invalid_request_error",
            "temperature: Input should be a number between 0 and 1",
        ),
    ],
)
async def test_simulator_validation(
    sim: Sim,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    kind: str,
    message: str,
) -> None:
    resp = await raw(sim, body, **headers)
    assert resp.status_code == status
    assert resp.json() == {"type": "error", "error": {"type": kind, "message": message}}


def _image_block(media_type: str, data: str) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        (
            [_image_block("image/bmp", b64(image((1, 1, 1), "BMP")))],
            "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
            "'image/gif' or 'image/webp'",
        ),
        (
            [_image_block("image/png", "A" * (5 * 1024 * 1024 + 4))],
            "messages.0.content.0.image.source.base64: "
            "image exceeds 5 MB maximum: 5242884 bytes > 5242880 bytes",
        ),
        (
            [_image_block("image/png", b64(image((1, 1, 1), size=(8001, 2))))],
            "messages.0.content.0.image.source.base64.data: At least one of the image dimensions exceed max "
            "allowed size: 8000 pixels",
        ),
        (
            [_image_block("image/png", b64(image((1, 1, 1), size=(2001, 2))))] * 21,
            "messages.0.content.0.image.source.base64.data: At least one of the image dimensions exceed max "
            "allowed size for many-image requests: 2000 pixels",
        ),
        (
            [_image_block("image/png", b64(b"not an image"))],
            "messages.0.content.0.image.source: Could not process image",
        ),
        (
            [
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": b64(b"nope")},
                }
            ],
            "messages.0.content.0.document.source.base64.data: The PDF specified was not valid.",
        ),
        (
            [{"type": "text", "text": ""}],
            "messages: text content blocks must be non-empty (messages.0.content.0.text)",
        ),
    ],
)
async def test_simulator_media_validation(sim: Sim, blocks: list[dict[str, Any]], message: str) -> None:
    resp = await raw(
        sim, {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": blocks}]}
    )
    assert resp.status_code == 400
    assert resp.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}


async def test_simulator_native_answer_shape(sim: Sim) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 50,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [user(text("hello there"))],
    }
    resp = await raw(sim, body)
    assert resp.status_code == 200
    answer = resp.json()
    assert answer == {
        "id": answer["id"],
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "[mmq simulator] You said: hello there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": answer["usage"],
    }
    assert answer["id"].startswith("msg_sim_")
    assert answer["usage"]["input_tokens"] > 0 and answer["usage"]["output_tokens"] > 0
    assert sim.app.state.stats.by_path["/v1/messages"] == 1
