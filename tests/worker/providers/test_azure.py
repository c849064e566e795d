"""Azure OpenAI adapter: the exact wire (URL forms, auth, consumed headers) against the simulator's Azure
dialect, the normalised answers for every kind, and Azure's errors (content filter, 429 hints)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from mmq.simulator import decode_speech_wav, encode_speech_wav
from mmq.simulator.faults import Fault
from tests.conftest import data_url
from tests.worker.providers._sim import Sim, decoded, form_fields, image, mock, refuse, wav_input
from worker.providers import REGISTRY
from worker.providers.azure import API_VERSIONS, AzureOpenAIAdapter, error_from_response
from worker.providers.base import Target

KEY = "azure-key-1"
DEPLOYMENT = "gpt-4o-prod"
GA = "2024-10-21"
TARGET = Target(name="az", provider="azure-openai", base_url="http://sim", api_key=KEY)
ADAPTER = AzureOpenAIAdapter()


def chat(text: str, *, image: bytes | None = None, model: str = DEPLOYMENT, **params: Any) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if image is not None:
        content.append({"type": "image_url", "image_url": {"url": data_url(image)}})
    return {"model": model, "messages": [{"role": "user", "content": content}], **params}


def assert_azure_headers(
    sent: httpx.Request, *, api_key: str | None = KEY, bearer: str | None = None
) -> None:
    assert sent.headers.get("api-key") == api_key
    assert sent.headers.get("authorization") == (f"Bearer {bearer}" if bearer else None)
    assert not [h for h in sent.headers if h.startswith("x-mmq-")]  # consumed, never forwarded


# ------------------------------------------------------------------------- every kind, deployments form
async def test_chat_deployments_form(sim: Sim) -> None:
    request = chat("What colour is this?", image=image((209, 42, 42)), max_completion_tokens=200)
    resp = await ADAPTER.call(sim, TARGET, Kind.chat, request)
    sent = sim.sent
    assert str(sent.url) == f"http://sim/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={GA}"
    assert_azure_headers(sent)
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == request  # the OpenAI body, `model` included, as the SDK sends it

    body = resp.body
    assert body is not None and resp.status == 200
    content = body["choices"][0]["message"]["content"]
    assert content.startswith("[mmq simulator] Image 1: 60x40 PNG, mostly red (#")
    assert content.endswith("Prompt: What colour is this?")
    assert body["object"] == "chat.completion" and body["model"] == DEPLOYMENT
    assert body["choices"][0]["finish_reason"] == "stop"
    # Azure's extras pass through untouched
    assert body["prompt_filter_results"][0]["content_filter_results"]["violence"] == {
        "filtered": False,
        "severity": "safe",
    }
    assert body["choices"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert resp.usage == body["usage"] and resp.usage["total_tokens"] > 0
    assert resp.request_id and resp.request_id.startswith("sim-")


async def test_image_with_api_version_header(sim: Sim) -> None:
    target = Target(
        name="az",
        provider="azure-openai",
        base_url="http://sim/",
        api_key=KEY,
        headers={"X-MMQ-Azure-Api-Version": "2025-04-01-preview", "x-trace": "t-1"},
    )
    request = {
        "model": "img-dep",
        "prompt": "a red bicycle",
        "size": "256x256",
        "response_format": "b64_json",
    }
    resp = await ADAPTER.call(sim, target, Kind.image, request)
    sent = sim.sent
    assert str(sent.url) == (
        "http://sim/openai/deployments/img-dep/images/generations?api-version=2025-04-01-preview"
    )
    assert_azure_headers(sent)
    assert sent.headers["x-trace"] == "t-1"  # the target's own headers still go out
    assert json.loads(sent.content) == request
    assert resp.body is not None
    (item,) = resp.body["data"]
    assert item["revised_prompt"] == "[mmq simulator] a red bicycle"
    img = decoded(item)
    assert (img.format, img.size) == ("PNG", (256, 256))


async def test_speech_decodes_back_to_its_input(sim: Sim) -> None:
    request = {"model": "tts-dep", "input": "Hello from Azure", "voice": "alloy", "response_format": "wav"}
    resp = await ADAPTER.call(sim, TARGET, Kind.speech, request)
    sent = sim.sent
    assert str(sent.url) == f"http://sim/openai/deployments/tts-dep/audio/speech?api-version={GA}"
    assert_azure_headers(sent)
    assert json.loads(sent.content) == request
    assert resp.content_type == "audio/wav" and resp.body is None
    assert decode_speech_wav(resp.content or b"") == "Hello from Azure"


@pytest.mark.parametrize("fmt", ["json", "text", "verbose_json", "srt"])
async def test_transcription(sim: Sim, fmt: str) -> None:
    request = {"file": "mmq-blob://x", "model": "whisper-dep", "language": "en", "response_format": fmt}
    resp = await ADAPTER.call(sim, TARGET, Kind.transcription, request, wav_input("the quick brown fox"))
    sent = sim.sent
    assert str(sent.url) == f"http://sim/openai/deployments/whisper-dep/audio/transcriptions?api-version={GA}"
    assert_azure_headers(sent)
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert form_fields(sent) == {
        "model": ["whisper-dep"],
        "language": ["en"],
        "response_format": [fmt],
        "file": ["speech.wav"],
    }
    if fmt == "text":
        assert resp.text == "the quick brown fox" and resp.body is None
    elif fmt == "srt":
        assert resp.text is not None and "the quick brown fox" in resp.text and "-->" in resp.text
    else:
        assert resp.body is not None and resp.body["text"] == "the quick brown fox"
        if fmt == "verbose_json":
            assert resp.body["segments"][0]["text"] == "the quick brown fox"


async def test_translation(sim: Sim) -> None:
    request = {"file": "mmq-blob://x", "model": "whisper-dep", "prompt": "names: Ana"}
    resp = await ADAPTER.call(sim, TARGET, Kind.translation, request, wav_input("hola mundo"))
    sent = sim.sent
    assert str(sent.url) == f"http://sim/openai/deployments/whisper-dep/audio/translations?api-version={GA}"
    assert form_fields(sent) == {"model": ["whisper-dep"], "prompt": ["names: Ana"], "file": ["speech.wav"]}
    assert resp.body == {"text": "[mmq simulator translation] hola mundo", "usage": resp.body["usage"]}


# --------------------------------------------------------------------------------- other URL forms
@pytest.mark.parametrize(
    ("base_url", "headers"),
    [
        ("http://sim/openai/v1", {}),
        ("http://sim/openai/v1/", {"x-mmq-azure-api-version": "v1"}),
        ("http://sim", {"x-mmq-azure-api-version": "v1"}),
        ("http://sim/openai", {"x-mmq-azure-api-version": "v1"}),
    ],
)
async def test_v1_form(sim: Sim, base_url: str, headers: dict[str, str]) -> None:
    target = Target(name="az", provider="azure-openai", base_url=base_url, api_key=KEY, headers=headers)
    request = chat("hi")
    resp = await ADAPTER.call(sim, target, Kind.chat, request)
    sent = sim.sent
    assert str(sent.url) == "http://sim/openai/v1/chat/completions"  # no api-version
    assert_azure_headers(sent)
    assert json.loads(sent.content)["model"] == DEPLOYMENT  # the v1 API reads the deployment from the body
    assert resp.body is not None and "prompt_filter_results" in resp.body  # answered by the Azure dialect
    assert sim.app.state.stats.by_path == {"/openai/v1/chat/completions (azure)": 1}


async def test_v1_form_every_kind(sim: Sim) -> None:
    target = Target(name="az", provider="azure-openai", base_url="http://sim/openai/v1", api_key=KEY)
    image = await ADAPTER.call(sim, target, Kind.image, {"model": "img", "prompt": "x", "size": "64x64"})
    assert str(sim.sent.url) == "http://sim/openai/v1/images/generations" and image.body is not None
    speech = {"model": "tts", "input": "v one", "voice": "alloy", "response_format": "wav"}
    spoken = await ADAPTER.call(sim, target, Kind.speech, speech)
    assert str(sim.sent.url) == "http://sim/openai/v1/audio/speech"
    assert decode_speech_wav(spoken.content or b"") == "v one"
    for kind, path in ((Kind.transcription, "transcriptions"), (Kind.translation, "translations")):
        heard = await ADAPTER.call(sim, target, kind, {"file": "f", "model": "wh"}, wav_input("v one"))
        assert str(sim.sent.url) == f"http://sim/openai/v1/audio/{path}"
        assert heard.body is not None and heard.body["text"].endswith("v one")


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        (
            "http://my-res.openai.azure.com",
            f"http://my-res.openai.azure.com/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={GA}",
        ),
        (
            "http://my-res.openai.azure.com/openai/v1",
            "http://my-res.openai.azure.com/openai/v1/chat/completions",
        ),
    ],
)
async def test_entra_bearer_token(sim: Sim, base_url: str, url: str) -> None:
    target = Target(
        name="az",
        provider="azure-openai",
        base_url=base_url,
        api_key="entra-token",
        headers={"x-mmq-azure-auth": "Bearer"},
    )
    resp = await ADAPTER.call(sim, target, Kind.chat, chat("hi"))
    assert str(sim.sent.url) == url
    assert_azure_headers(sim.sent, api_key=None, bearer="entra-token")
    # an azure host sends even bearer-only /openai/v1 requests to the Azure dialect, not Groq's
    assert resp.body is not None and "prompt_filter_results" in resp.body


async def test_deployment_pinned_in_base_url(sim: Sim) -> None:
    target = Target(
        name="az", provider="azure-openai", base_url="http://sim/openai/deployments/pinned", api_key=KEY
    )
    resp = await ADAPTER.call(sim, target, Kind.chat, chat("hi", model="gpt-4o"))
    assert str(sim.sent.url) == f"http://sim/openai/deployments/pinned/chat/completions?api-version={GA}"
    assert resp.status == 200


async def test_deployment_name_is_quoted_and_apim_request_id_read() -> None:
    body = {"id": "c", "object": "chat.completion", "choices": [], "usage": {"total_tokens": 1}}
    client, seen = mock(lambda r: httpx.Response(200, json=body, headers={"apim-request-id": "apim-1"}))
    async with client:
        resp = await ADAPTER.call(client, TARGET, Kind.chat, chat("hi", model="my dep/1"))
    assert (
        seen.requests[0].url.raw_path
        == f"/openai/deployments/my%20dep%2F1/chat/completions?api-version={GA}".encode()
    )
    assert resp.request_id == "apim-1"


@pytest.mark.parametrize(
    ("target", "request_", "kind", "code"),
    [
        (Target(name="az", provider="azure-openai", base_url="", api_key=KEY), chat("hi"), Kind.chat, None),
        (
            Target(
                name="az",
                provider="azure-openai",
                base_url="http://r/openai/v1",
                headers={"x-mmq-azure-api-version": GA},
            ),
            chat("hi"),
            Kind.chat,
            None,
        ),
        (
            Target(
                name="az", provider="azure-openai", base_url="http://r", headers={"x-mmq-azure-auth": "basic"}
            ),
            chat("hi"),
            Kind.chat,
            None,
        ),
        (TARGET, {"prompt": "a cat"}, Kind.image, "invalid_request"),  # no deployment to route to
        (
            Target(
                name="az",
                provider="azure-openai",
                base_url="http://r/openai/deployments/d",
                headers={"x-mmq-azure-api-version": "v1"},
            ),
            chat("hi"),
            Kind.chat,
            None,
        ),
    ],
    ids=["no-base-url", "dated-version-on-v1", "unknown-auth-mode", "no-model", "v1-with-pinned-deployment"],
)
async def test_misconfigured_targets_and_jobs_fail_before_sending(
    target: Target, request_: dict[str, Any], kind: Kind, code: str | None
) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        if code is None:
            with pytest.raises(ProviderError) as info:
                await ADAPTER.call(client, target, kind, request_)
            assert (info.value.code, info.value.retryable) == ("target_misconfigured", False)
        else:
            with pytest.raises(InvalidJob, match="deployment") as job:
                await ADAPTER.call(client, target, kind, request_)
            assert job.value.type == code


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kind", "request_"),
    [
        (Kind.chat, chat("please mmq-sim:block this")),
        (Kind.image, {"model": "img", "prompt": "mmq-sim:block"}),
    ],
)
async def test_content_filter_is_not_retryable(sim: Sim, kind: Kind, request_: dict[str, Any]) -> None:
    with pytest.raises(ProviderError) as info:
        await ADAPTER.call(sim, TARGET, kind, request_)
    err = info.value
    assert (err.status, err.code, err.retryable, err.provider) == (
        400,
        "content_filter",
        False,
        "azure-openai",
    )
    assert err.message.startswith("The response was filtered due to the prompt triggering")
    assert err.message.endswith("[filtered: violence]")


async def test_scripted_content_filter_fault_is_azure_shaped(sim: Sim) -> None:
    sim.faults.add(Fault(status=400, code="content_filter", message="blocked"))
    resp = await sim.post(
        f"http://sim/openai/deployments/d/chat/completions?api-version={GA}",
        headers={"api-key": KEY},
        json={},
    )
    error = resp.json()["error"]
    assert resp.status_code == 400 and "type" not in error
    assert (error["code"], error["param"], error["status"]) == ("content_filter", "prompt", 400)
    assert error["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert error["innererror"]["content_filter_result"]["violence"]["filtered"] is True


async def test_rate_limit_429_is_retryable_after_the_hint(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim(requests_per_window=1, window_s=30)
    await ADAPTER.call(sim, TARGET, Kind.chat, chat("hi"))
    with pytest.raises(ProviderError) as info:
        await ADAPTER.call(sim, TARGET, Kind.chat, chat("hi"))
    err = info.value
    assert (err.status, err.code, err.retryable) == (429, "429", True)
    assert err.retry_after_s is not None and 0 < err.retry_after_s <= 30
    assert "Please retry after" in err.message and f"API version {GA}" in err.message
    raw = await sim.post(
        f"http://sim/openai/deployments/d/chat/completions?api-version={GA}",
        headers={"api-key": KEY},
        json={},
    )
    assert raw.status_code == 429 and set(raw.json()["error"]) == {"code", "message"}
    assert int(raw.headers["retry-after"]) >= 1
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-requests" not in raw.headers  # Azure sends only the remaining counts


def azure_429(headers: dict[str, str], message: str = "Too many requests.") -> httpx.Response:
    return httpx.Response(429, json={"error": {"code": "429", "message": message}}, headers=headers)


@pytest.mark.parametrize(
    ("response", "wait"),
    [
        (azure_429({"retry-after-ms": "1500", "retry-after": "2"}), 1.5),
        (azure_429({"retry-after": "7"}), 7.0),
        (
            azure_429(
                {}, "Requests to the ChatCompletions_Create Operation ... Please retry after 6 seconds."
            ),
            6.0,
        ),
        (azure_429({}), None),
    ],
    ids=["retry-after-ms", "retry-after", "message", "none"],
)
def test_retry_hints(response: httpx.Response, wait: float | None) -> None:
    err = error_from_response(response, "azure-openai")
    assert (err.status, err.retryable, err.retry_after_s) == (429, True, wait)


def test_image_content_filter_spelling_is_normalised() -> None:
    body = {
        "error": {
            "code": "contentFilter",
            "message": "Your task failed as a result of our safety system.",
            "inner_error": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_results": {
                    "sexual": {"filtered": True, "severity": "high"},
                    "violence": {"filtered": False, "severity": "safe"},
                },
            },
        }
    }
    err = error_from_response(httpx.Response(400, json=body), "azure-openai")
    assert (err.code, err.retryable) == ("content_filter", False)
    assert err.message == "Your task failed as a result of our safety system. [filtered: sexual]"


async def test_openai_validation_errors_pass_through(sim: Sim) -> None:
    with pytest.raises(ProviderError) as info:
        await ADAPTER.call(sim, TARGET, Kind.image, {"model": "img", "prompt": "x", "size": "9x9"})
    assert (info.value.status, info.value.code, info.value.retryable) == (400, "invalid_value", False)


async def test_missing_key_is_401(sim: Sim) -> None:
    keyless = Target(name="az", provider="azure-openai", base_url="http://sim")
    with pytest.raises(ProviderError) as info:
        await ADAPTER.call(sim, keyless, Kind.chat, chat("hi"))
    err = info.value
    assert (err.status, err.code, err.retryable) == (401, "401", False)
    assert err.message.startswith("Access denied due to invalid subscription key")


# ------------------------------------------------------------------------ the simulator's own rules
@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        (
            "/openai/deployments/d/chat/completions",
            404,
            {"code": "404", "message": "Resource not found"},
        ),
        (
            "/openai/deployments/d/chat/completions?api-version=latest",
            400,
            {"code": "BadRequest", "message": "API version not supported"},
        ),
        (
            f"/openai/v1/chat/completions?api-version={GA}",
            400,
            {"code": "BadRequest", "message": "API version not supported"},
        ),
    ],
)
async def test_simulator_api_version_rules(sim: Sim, path: str, status: int, error: dict[str, str]) -> None:
    resp = await sim.post("http://sim" + path, headers={"api-key": KEY}, json=chat("hi"))
    assert (resp.status_code, resp.json()) == (status, {"error": error})


async def test_simulator_takes_the_model_from_the_deployment(sim: Sim) -> None:
    url = f"http://sim/openai/deployments/dep-7/chat/completions?api-version={GA}"
    body = {"messages": [{"role": "user", "content": "hi"}]}
    resp = await sim.post(url, headers={"api-key": KEY}, json=body)
    assert resp.status_code == 200 and resp.json()["model"] == "dep-7"
    url = f"http://sim/openai/deployments/dep-7/audio/transcriptions?api-version={GA}"
    files = {"file": ("a.wav", encode_speech_wav("no model field"), "audio/wav")}
    resp = await sim.post(url, headers={"api-key": KEY}, files=files, data={"response_format": "text"})
    assert (resp.status_code, resp.text) == (200, "no model field")


def test_registry_and_defaults() -> None:
    adapter = REGISTRY["azure-openai"]
    assert isinstance(adapter, AzureOpenAIAdapter) and adapter.name == "azure-openai"
    assert adapter.kinds == frozenset(Kind)
    assert getattr(adapter, "default_base_url", "unset") is None  # the router demands a custom_host
    assert set(API_VERSIONS) == set(Kind)
