"""Claude on Vertex AI: the Anthropic translation in Vertex's envelope (rawPredict, model in the URL,
anthropic_version in the body, Google auth and place), its two error shapes, and the adapter against the
simulator's Claude-on-Vertex dialect."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from mmq.simulator.faults import Fault
from tests.conftest import data_url
from tests.worker.providers._sim import Sim, image, image_part, mock, text, user
from worker.providers import REGISTRY
from worker.providers import anthropic as ant
from worker.providers.base import Target
from worker.providers.vertex_anthropic import VertexAnthropicAdapter, to_native

MODEL = "claude-sonnet-4-5@20250929"
PLACE = {"x-mmq-vertex-project": "acme-ml", "x-mmq-vertex-location": "us-east5"}
TARGET = Target("sim", "vertex-anthropic", "http://sim", api_key="ya29.token", headers=PLACE)
SIM_PATH = f"/v1/projects/acme-ml/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict"


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **params}


async def call(client: httpx.AsyncClient, request: dict[str, Any], target: Target = TARGET) -> Any:
    return await REGISTRY["vertex-anthropic"].call(client, target, Kind.chat, request)


# ------------------------------------------------------------------------------------------ the wire
def test_body_is_the_anthropic_body_without_model_with_the_vertex_version() -> None:
    request = chat({"role": "system", "content": "Be brief."}, user(text("hi")), max_tokens=50, stop="END")
    suffix, body = to_native(request)
    assert suffix == f"{MODEL}:rawPredict"
    direct = ant.to_native(request)  # the same translation, not a copy of it
    assert body == {
        "anthropic_version": "vertex-2023-10-16",
        **{k: v for k, v in direct.items() if k != "model"},
    }
    assert "model" not in body


async def test_url_headers_and_auth_follow_vertex() -> None:
    answer = {"id": "msg_1", "model": MODEL, "content": [{"type": "text", "text": "ok"}], "usage": {}}
    client, seen = mock(lambda r: httpx.Response(200, json=answer))
    target = Target(
        "v",
        "vertex-anthropic",
        "https://us-east5-aiplatform.googleapis.com",
        api_key="ya29.token",
        headers={"x-mmq-vertex-project": "acme-ml", "x-extra": "1"},
    )
    resp = await call(client, chat(user(text("hi"))), target)
    [sent] = seen.requests
    assert str(sent.url) == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/acme-ml/locations/us-east5"
        f"/publishers/anthropic/models/{MODEL}:rawPredict"
    )
    assert sent.headers["authorization"] == "Bearer ya29.token" and sent.headers["x-extra"] == "1"
    assert "anthropic-version" not in sent.headers and "x-api-key" not in sent.headers
    assert not any(k.startswith("x-mmq-vertex") for k in sent.headers)  # routing headers are consumed
    assert json.loads(sent.content)["anthropic_version"] == "vertex-2023-10-16"
    assert resp.body["choices"][0]["message"]["content"] == "ok"


def test_global_location_uses_the_global_host() -> None:
    adapter = VertexAnthropicAdapter()
    target = Target(
        "v", "vertex-anthropic", "", headers={"x-mmq-vertex-project": "p", "x-mmq-vertex-location": "global"}
    )
    wire = adapter.translate(target, Kind.chat, chat(user(text("hi"))))
    assert wire.url.startswith(
        "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/anthropic/"
    )


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        ({"messages": [user(text("hi"))]}, "model is required"),
        (chat(user(text("hi"))) | {"model": "claude/../../x"}, "not a Vertex model id"),
        (chat(user(text("hi")), n=2), "one choice per request"),  # the Anthropic table's refusals apply
        (chat(user(text("hi")), tools=[{"type": "function"}]), "tool calling"),
    ],
)
def test_refusals_are_invalid_jobs(request_: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidJob, match=match):
        to_native(request_)


def test_resource_name_model_is_accepted() -> None:
    suffix, _ = to_native(chat(user(text("hi"))) | {"model": f"publishers/anthropic/models/{MODEL}"})
    assert suffix == f"{MODEL}:rawPredict"


def test_adapter_rules_and_registry() -> None:
    adapter = REGISTRY["vertex-anthropic"]
    assert isinstance(adapter, VertexAnthropicAdapter) and adapter.kinds == {Kind.chat}
    assert adapter.default_base_url is None  # the region is the customer's: never guessed
    assert adapter.media.remote_urls is False and not adapter.media.gcs_uris
    assert adapter.media.image_types == REGISTRY["anthropic"].media.image_types
    with pytest.raises(InvalidJob, match="chat only"):
        adapter.translate(TARGET, Kind.image, {"prompt": "p"})


def test_a_target_without_project_is_a_clear_misconfiguration() -> None:
    with pytest.raises(ProviderError, match="needs its project in the x-mmq-vertex-project header"):
        VertexAnthropicAdapter().translate(
            Target("v", "vertex-anthropic", "https://us-east5-aiplatform.googleapis.com"),
            Kind.chat,
            chat(user(text("hi"))),
        )


def test_errors_are_read_in_both_shapes() -> None:
    adapter = VertexAnthropicAdapter()
    model_says = httpx.Response(
        529, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    err = adapter.error(model_says)
    assert (err.status, err.code, err.retryable, err.provider) == (
        529,
        "overloaded_error",
        True,
        "vertex-anthropic",
    )
    quota = {
        "error": {
            "code": 429,
            "message": "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
        }
    }
    err = adapter.error(httpx.Response(429, json=quota))
    assert (err.status, err.code, err.retryable, err.retry_after_s) == (429, "RESOURCE_EXHAUSTED", True, 7.0)
    err = adapter.error(
        httpx.Response(404, json={"error": {"code": 404, "message": "no model", "status": "NOT_FOUND"}})
    )
    assert (err.code, err.retryable) == ("NOT_FOUND", False)


# ------------------------------------------------------------------------------ against the simulator
async def test_simulator_answers_in_the_openai_shape(sim: Sim) -> None:
    request = chat(user(text("What colour?"), image_part(data_url(image((0, 0, 255))))))
    resp = await call(sim, request)
    content = resp.body["choices"][0]["message"]["content"]
    assert content.startswith("[mmq simulator] Image 1: 60x40 PNG, mostly blue")
    assert resp.body["model"] == MODEL and resp.body["object"] == "chat.completion"
    assert sim.sent.url.path == SIM_PATH


async def test_simulator_refuses_the_direct_api_body(sim: Sim) -> None:
    bearer = {"authorization": "Bearer t"}
    direct = ant.to_native(chat(user(text("hi"))))  # model in the body, no anthropic_version
    resp = await sim.post(SIM_PATH, json=direct, headers=bearer)
    assert resp.status_code == 400
    assert resp.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "anthropic_version: Field required"},
    }
    resp = await sim.post(SIM_PATH, json={**direct, "anthropic_version": "2023-06-01"}, headers=bearer)
    assert resp.json()["error"]["message"] == "anthropic_version: Input should be 'vertex-2023-10-16'"
    resp = await sim.post(SIM_PATH, json={**direct, "anthropic_version": "vertex-2023-10-16"}, headers=bearer)
    assert "model: Extra inputs are not permitted" in resp.json()["error"]["message"]


async def test_simulator_front_end_errors_are_googles(sim: Sim) -> None:
    keyless = Target("sim", "vertex-anthropic", "http://sim", headers=PLACE)
    with pytest.raises(ProviderError) as info:
        await call(sim, chat(user(text("hi"))), keyless)
    assert (info.value.status, info.value.code, info.value.retryable) == (401, "UNAUTHENTICATED", False)
    sim.faults.add(Fault(status=503, message="busy"))
    with pytest.raises(ProviderError) as info:
        await call(sim, chat(user(text("hi"))))
    assert (info.value.status, info.value.code, info.value.retryable) == (503, "UNAVAILABLE", True)
    assert (await call(sim, chat(user(text("hi"))))).status == 200


async def test_simulator_model_refusals_stay_anthropic_shaped(
    sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ant.to_native
    monkeypatch.setattr(ant, "to_native", lambda r: {k: v for k, v in real(r).items() if k != "max_tokens"})
    with pytest.raises(ProviderError) as info:
        await call(sim, chat(user(text("hi"))))
    err = info.value
    assert (err.status, err.code, err.message) == (400, "invalid_request_error", "max_tokens: Field required")


async def test_simulator_rate_limit_is_retryable(make_sim: Callable[..., Sim]) -> None:
    client = make_sim(requests_per_window=1, window_s=30)
    await call(client, chat(user(text("hi"))))
    with pytest.raises(ProviderError) as info:
        await call(client, chat(user(text("hi"))))
    err = info.value
    assert (err.status, err.code, err.retryable) == (429, "RESOURCE_EXHAUSTED", True)
    assert err.retry_after_s is not None and 0 < err.retry_after_s <= 30
