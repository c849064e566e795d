"""Gemini / Vertex adapter: golden native bodies, response and error mapping, and the adapter against the
simulator's Google dialect."""

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
from tests.worker.providers._sim import PDF, Sim, b64, decoded, image, image_part, text, user
from worker.providers import REGISTRY
from worker.providers.base import Target
from worker.providers.gemini import GeminiAdapter, from_native, to_native
from worker.providers.gemini.errors import error_from_response, retry_delay_s
from worker.providers.gemini.images import aspect_ratio

MODEL = "gemini-2.5-flash"
IMAGEN = "imagen-4.0-generate-001"
VERTEX_HEADERS = {"x-mmq-vertex-project": "acme-ml", "x-mmq-vertex-location": "europe-west4"}


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **params}


RED = image((220, 20, 20))
BLUE = image((20, 40, 230), "JPEG")


# ---------------------------------------------------------------------------------------- golden bodies
def test_golden_vision_data_png_and_generation_config() -> None:
    request = chat(
        user(text("What colour is this?"), image_part(data_url(RED, "image/png"))),
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        max_completion_tokens=100,
        stop="END",
        n=2,
        seed=7,
        response_format={"type": "json_object"},
        user="someone",  # OpenAI-only and harmless: dropped
    )
    suffix, body = to_native(Kind.chat, request)
    assert suffix == f"{MODEL}:generateContent"
    assert body == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "What colour is this?"},
                    {"inlineData": {"mimeType": "image/png", "data": b64(RED)}},
                ],
            }
        ],
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "maxOutputTokens": 100,  # max_completion_tokens wins over the legacy max_tokens
            "stopSequences": ["END"],
            "candidateCount": 2,
            "seed": 7,
            "responseMimeType": "application/json",
        },
    }


def test_golden_gs_uri_goes_as_file_data_and_http_url_is_refused() -> None:
    request = chat(user(text("Describe."), image_part("gs://bucket/shots/cat.webp")))
    _, body = to_native(Kind.chat, request)
    assert body == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Describe."},
                    {"fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/shots/cat.webp"}},
                ],
            }
        ]
    }
    with pytest.raises(InvalidJob, match=r"should have been inlined as a data: URL") as exc:
        to_native(Kind.chat, chat(user(image_part("https://example.com/cat.png"))))
    assert exc.value.type == "invalid_media"
    with pytest.raises(InvalidJob, match="MIME type of gs://bucket/noext"):
        to_native(Kind.chat, chat(user(image_part("gs://bucket/noext"))))


def test_golden_pdf_file_part_and_gs_pdf() -> None:
    pdf = {"type": "file", "file": {"file_data": data_url(PDF, "application/pdf"), "filename": "a.pdf"}}
    gs_pdf = {"type": "file", "file": {"file_data": "gs://docs/report", "filename": "report.pdf"}}
    _, body = to_native(Kind.chat, chat(user(text("Summarise both."), pdf, gs_pdf)))
    assert body["contents"][0]["parts"] == [
        {"text": "Summarise both."},
        {"inlineData": {"mimeType": "application/pdf", "data": b64(PDF)}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://docs/report"}},
    ]


def test_golden_two_images_system_prompt_and_roles() -> None:
    request = chat(
        {"role": "system", "content": "You are a product photographer."},
        {"role": "developer", "content": [text("Answer in one line.")]},
        user(text("Compare these."), image_part(data_url(RED, "image/png"))),
        user(image_part(data_url(BLUE, "image/jpeg"))),  # same-role turns merge
        {"role": "assistant", "content": "One is red, one is blue."},
        {"role": "user", "content": "Which is warmer?"},
    )
    _, body = to_native(Kind.chat, request)
    assert body == {
        "systemInstruction": {
            "parts": [{"text": "You are a product photographer."}, {"text": "Answer in one line."}]
        },
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Compare these."},
                    {"inlineData": {"mimeType": "image/png", "data": b64(RED)}},
                    {"inlineData": {"mimeType": "image/jpeg", "data": b64(BLUE)}},
                ],
            },
            {"role": "model", "parts": [{"text": "One is red, one is blue."}]},
            {"role": "user", "parts": [{"text": "Which is warmer?"}]},
        ],
    }


def test_request_refusals() -> None:
    gif = image((1, 2, 3), "GIF")
    with pytest.raises(InvalidJob, match="image/gif is not an image type Gemini accepts"):
        to_native(Kind.chat, chat(user(image_part(data_url(gif, "image/gif")))))
    # the bytes decide the type, not the declared one
    _, body = to_native(Kind.chat, chat(user(image_part(data_url(BLUE, "image/png")))))
    assert body["contents"][0]["parts"][0]["inlineData"]["mimeType"] == "image/jpeg"
    with pytest.raises(InvalidJob, match="tools"):
        to_native(Kind.chat, chat(user(text("hi")), tools=[{"type": "function"}]))
    with pytest.raises(InvalidJob, match="json_schema"):
        to_native(Kind.chat, chat(user(text("hi")), response_format={"type": "json_schema"}))
    with pytest.raises(InvalidJob, match="system instruction can only hold text"):
        to_native(Kind.chat, chat({"role": "system", "content": [image_part(data_url(RED, "image/png"))]}))
    with pytest.raises(InvalidJob, match="no user or assistant content"):
        to_native(Kind.chat, chat({"role": "system", "content": "alone"}))


def test_golden_imagen_predict() -> None:
    suffix, body = to_native(
        Kind.image,
        {"model": IMAGEN, "prompt": "a red bicycle", "n": 2, "size": "1792x1024", "output_format": "jpeg"},
    )
    assert suffix == f"{IMAGEN}:predict"
    assert body == {
        "instances": [{"prompt": "a red bicycle"}],
        "parameters": {
            "sampleCount": 2,
            "includeRaiReason": True,
            "aspectRatio": "16:9",
            "outputOptions": {"mimeType": "image/jpeg"},
        },
    }
    assert to_native(Kind.image, {"prompt": "x"})[0] == f"{IMAGEN}:predict"  # default model
    sizes = {"1024x1024": "1:1", "1024x1792": "9:16", "1536x1024": "4:3", "1024x1536": "3:4", "auto": None}
    assert {s: aspect_ratio(s) for s in sizes} == sizes
    with pytest.raises(InvalidJob, match="at most 4"):
        to_native(Kind.image, {"model": IMAGEN, "prompt": "x", "n": 5})
    with pytest.raises(InvalidJob, match="Imagen"):
        to_native(Kind.image, {"model": "dall-e-3", "prompt": "x"})


# ------------------------------------------------------------------------------------------- responses
def test_from_native_chat_maps_candidates_finish_reasons_and_usage() -> None:
    body = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Red"}, {"text": "."}]}, "finishReason": "STOP"},
            {"content": {"parts": [{"text": "R"}]}, "finishReason": "MAX_TOKENS", "index": 1},
            {"finishReason": "SAFETY", "index": 2},
        ],
        "usageMetadata": {
            "promptTokenCount": 300,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 7,
            "totalTokenCount": 312,
        },
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "abc",
    }
    out = from_native(Kind.chat, body, chat(user(text("x"))))
    assert out["object"] == "chat.completion" and out["id"] == "chatcmpl-gemini-abc"
    assert out["model"] == "gemini-2.5-flash-001"
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "Red.", "stop"),
        (1, "R", "length"),
        (2, None, "content_filter"),
    ]
    assert out["usage"] == {
        "prompt_tokens": 300,
        "completion_tokens": 12,
        "total_tokens": 312,
        "completion_tokens_details": {"reasoning_tokens": 7},
    }


def test_from_native_blocked_and_garbage() -> None:
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {}}
    with pytest.raises(ProviderError) as exc:
        from_native(Kind.chat, blocked, {})
    assert exc.value.code == "blocked" and not exc.value.retryable and "PROHIBITED_CONTENT" in str(exc.value)
    for garbage in ("<html>oops</html>", [], {}, {"candidates": "nope"}):
        with pytest.raises(ProviderError) as exc:
            from_native(Kind.chat, garbage, {})
        assert exc.value.code == "unparseable_response" and exc.value.retryable
    with pytest.raises(ProviderError) as exc:
        from_native(Kind.image, {"predictions": [{"raiFilteredReason": "celebrity"}]}, {})
    assert exc.value.code == "blocked" and "celebrity" in exc.value.message and not exc.value.retryable
    with pytest.raises(ProviderError) as exc:
        from_native(Kind.image, {"predictions": "x"}, {})
    assert exc.value.code == "unparseable_response"
    out = from_native(
        Kind.image, {"predictions": [{"bytesBase64Encoded": "QUJD", "mimeType": "image/png"}]}, {}
    )
    assert out["data"] == [{"b64_json": "QUJD"}]


# ---------------------------------------------------------------------------------------------- errors
def google_error(
    status: int, name: str, details: list[Any] | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    error: dict[str, Any] = {"code": status, "message": f"{name} happened", "status": name}
    if details is not None:
        error["details"] = details
    return httpx.Response(status, json={"error": error}, headers=headers)


def retry_info(delay: Any) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def test_error_mapping() -> None:
    err = error_from_response(google_error(429, "RESOURCE_EXHAUSTED", [retry_info("12s")]), "gemini")
    assert (err.status, err.code, err.retryable, err.retry_after_s) == (429, "RESOURCE_EXHAUSTED", True, 12.0)
    assert err.message == "RESOURCE_EXHAUSTED happened"
    assert retry_delay_s([retry_info("1.5s")]) == 1.5
    assert retry_delay_s([retry_info("3.700s")]) == 3.7
    assert retry_delay_s([retry_info({"seconds": 2, "nanos": 500_000_000})]) == 2.5
    assert retry_delay_s([{"@type": "other"}]) is None
    # a Retry-After header wins over RetryInfo
    err = error_from_response(
        google_error(503, "UNAVAILABLE", [retry_info("12s")], {"retry-after": "3"}), "vertex"
    )
    assert (err.retryable, err.retry_after_s, err.provider) == (True, 3.0, "vertex")
    assert error_from_response(google_error(500, "INTERNAL"), "gemini").retryable
    bad = error_from_response(google_error(400, "INVALID_ARGUMENT"), "gemini")
    assert (bad.code, bad.retryable, bad.retry_after_s) == ("INVALID_ARGUMENT", False, None)
    assert not error_from_response(google_error(403, "PERMISSION_DENIED"), "gemini").retryable
    daily = {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
    }
    err = error_from_response(google_error(429, "RESOURCE_EXHAUSTED", [daily, retry_info("40s")]), "gemini")
    assert not err.retryable and "daily quota" in err.message
    html = error_from_response(httpx.Response(502, text="<html>Bad Gateway</html>"), "gemini")
    assert (html.retryable, html.code, html.message) == (True, None, "<html>Bad Gateway</html>")


# ------------------------------------------------------------------------------------------- endpoints
def test_endpoints_and_vertex_convention() -> None:
    studio = GeminiAdapter()
    url, headers = studio.endpoint(
        Target("g", "gemini", "https://generativelanguage.googleapis.com/v1beta/", api_key="k1"), "m:x"
    )
    assert url == "https://generativelanguage.googleapis.com/v1beta/models/m:x"
    assert headers == {"x-goog-api-key": "k1"}

    vertex = GeminiAdapter(name="vertex", vertex=True)
    target = Target("v", "vertex", "", api_key="tok", headers={**VERTEX_HEADERS, "x-extra": "1"})
    url, headers = vertex.endpoint(target, "m:x")
    assert url == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-ml/locations/europe-west4"
        "/publishers/google/models/m:x"
    )
    assert headers == {"x-extra": "1", "authorization": "Bearer tok"}  # routing headers consumed
    # the location may come from a regional host; "global" from the bare host
    project_only = {"x-mmq-vertex-project": "p"}
    regional = Target("v", "vertex", "https://us-east5-aiplatform.googleapis.com", headers=project_only)
    assert "/locations/us-east5/" in vertex.endpoint(regional, "m:x")[0]
    bare = Target("v", "vertex", "https://aiplatform.googleapis.com", headers={"X-MMQ-Vertex-Project": "p"})
    assert vertex.endpoint(bare, "m:x")[0].startswith("https://aiplatform.googleapis.com/v1/projects/p/")
    with pytest.raises(ProviderError, match="x-mmq-vertex-project") as exc:
        vertex.endpoint(Target("v", "vertex", "http://sim"), "m:x")
    assert exc.value.code == "target_misconfigured" and not exc.value.retryable
    with pytest.raises(ProviderError, match="x-mmq-vertex-location"):
        vertex.endpoint(Target("v", "vertex", "http://sim", headers={"x-mmq-vertex-project": "p"}), "m:x")


def test_registry_and_media_rules() -> None:
    assert isinstance(REGISTRY["gemini"], GeminiAdapter) and not REGISTRY["gemini"].vertex
    assert isinstance(REGISTRY["vertex"], GeminiAdapter) and REGISTRY["vertex"].vertex
    assert REGISTRY["vertex"].name == "vertex"
    media = REGISTRY["gemini"].media
    assert "image/gif" not in media.image_types and "image/heic" in media.image_types
    assert media.document_types == {"application/pdf", "text/plain"} and not media.remote_urls


# ------------------------------------------------------------------------------------ against simulator
STUDIO = Target("gemini-test", "gemini", "http://sim", api_key="AIza-test")
VERTEX = Target("vertex-test", "vertex", "http://sim", api_key="ya29.test", headers=VERTEX_HEADERS)


@pytest.mark.parametrize("provider,target", [("gemini", STUDIO), ("vertex", VERTEX)])
async def test_vision_chat_against_simulator(sim: Sim, provider: str, target: Target) -> None:
    request = chat(
        {"role": "system", "content": "Be brief."},
        user(text("What colour is the product?"), image_part(data_url(RED, "image/png"))),
        max_completion_tokens=200,
    )
    resp = await REGISTRY[provider].call(sim, target, Kind.chat, request)
    assert resp.status == 200 and resp.request_id
    body = resp.body
    assert body is not None and body["object"] == "chat.completion" and body["model"] == MODEL
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    assert "60x40 PNG, mostly red" in choice["message"]["content"]
    assert (
        resp.usage is not None and resp.usage["prompt_tokens"] > 258 and resp.usage["completion_tokens"] > 0
    )
    path = (
        "/v1beta/models/{model}:generateContent"
        if provider == "gemini"
        else "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent"
    )
    assert sim.app.state.stats.by_path == {path: 1}


async def test_two_images_pdf_gs_and_candidates_against_simulator(
    sim: Sim,
) -> None:
    pdf = {"type": "file", "file": {"file_data": data_url(PDF, "application/pdf")}}
    request = chat(
        {"role": "system", "content": "Compare."},
        user(
            text("Two shots and a spec sheet."),
            image_part(data_url(RED, "image/png")),
            image_part(data_url(BLUE, "image/jpeg")),
            pdf,
            image_part("gs://bucket/extra.png"),
        ),
        n=2,
    )
    resp = await REGISTRY["gemini"].call(sim, STUDIO, Kind.chat, request)
    assert resp.body is not None
    contents = [c["message"]["content"] for c in resp.body["choices"]]
    assert len(contents) == 2 and contents[0] == contents[1]
    assert "Image 1: 60x40 PNG, mostly red" in contents[0]
    assert "Image 2: 60x40 JPEG, mostly blue" in contents[0]
    assert "PDF, about 2 pages" in contents[0] and "gs://bucket/extra.png (image/png)" in contents[0]


async def test_max_tokens_and_blocked_prompt_against_simulator(sim: Sim) -> None:
    resp = await REGISTRY["gemini"].call(
        sim, STUDIO, Kind.chat, chat(user(text("hello " * 50)), max_tokens=3)
    )
    assert resp.body is not None and resp.body["choices"][0]["finish_reason"] == "length"
    with pytest.raises(ProviderError) as exc:
        await REGISTRY["vertex"].call(sim, VERTEX, Kind.chat, chat(user(text("please mmq-sim:block"))))
    assert (exc.value.code, exc.value.retryable, exc.value.status, exc.value.provider) == (
        "blocked",
        False,
        200,
        "vertex",
    )


@pytest.mark.parametrize("provider,target", [("gemini", STUDIO), ("vertex", VERTEX)])
async def test_imagen_against_simulator(make_sim: Callable[..., Sim], provider: str, target: Target) -> None:
    request = {"model": IMAGEN, "prompt": "a teal teapot", "n": 2, "size": "1024x1024"}
    resp = await REGISTRY[provider].call(make_sim(), target, Kind.image, request)
    assert resp.body is not None
    assert len(resp.body["data"]) == 2
    for item in resp.body["data"]:
        img = decoded(item)
        assert (img.format, img.size) == ("PNG", (1024, 1024))
    with pytest.raises(ProviderError) as exc:
        await REGISTRY[provider].call(
            make_sim(), target, Kind.image, {"model": IMAGEN, "prompt": "mmq-sim:block"}
        )
    assert exc.value.code == "blocked" and not exc.value.retryable


async def test_imagen_jpeg_wide_against_simulator(sim: Sim) -> None:
    request = {"model": IMAGEN, "prompt": "a dune", "size": "1792x1024", "output_format": "jpeg"}
    resp = await REGISTRY["gemini"].call(sim, STUDIO, Kind.image, request)
    assert resp.body is not None
    img = decoded(resp.body["data"][0])
    assert (img.format, img.size) == ("JPEG", (1408, 768))


async def test_rate_limit_and_injected_faults_come_back_as_google_errors(
    make_sim: Callable[..., Sim],
) -> None:
    client = make_sim(requests_per_window=1, window_s=30)
    adapter = REGISTRY["gemini"]
    request = chat(user(text("hi")))
    await adapter.call(client, STUDIO, Kind.chat, request)
    with pytest.raises(ProviderError) as exc:
        await adapter.call(client, STUDIO, Kind.chat, request)
    err = exc.value
    assert (err.status, err.code, err.retryable) == (429, "RESOURCE_EXHAUSTED", True)
    assert err.retry_after_s is not None and 25 < err.retry_after_s <= 30  # from RetryInfo, no header

    client = make_sim()
    client.faults.add(Fault(status=503, retry_after_s=12))
    with pytest.raises(ProviderError) as exc:
        await adapter.call(client, STUDIO, Kind.chat, request)
    assert (exc.value.status, exc.value.code, exc.value.retryable, exc.value.retry_after_s) == (
        503,
        "UNAVAILABLE",
        True,
        12.0,
    )
    with pytest.raises(ProviderError) as exc:
        await adapter.call(client, STUDIO, Kind.chat, chat(user(text("hi")), model="imagen-3.0-generate-002"))
    assert (exc.value.status, exc.value.code, exc.value.retryable) == (404, "NOT_FOUND", False)


# ------------------------------------------------------------------------------- simulator validation
def gen_body(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": list(parts)}]}


def inline(data: bytes, mime: str, snake: bool = False) -> dict[str, Any]:
    if snake:
        return {"inline_data": {"mime_type": mime, "data": b64(data)}}
    return {"inlineData": {"mimeType": mime, "data": b64(data)}}


STUDIO_PATH = f"/v1beta/models/{MODEL}:generateContent"
VERTEX_PATH = f"/v1/projects/p/locations/us-central1/publishers/google/models/{MODEL}:generateContent"


async def test_simulator_auth_in_google_shape(sim: Sim) -> None:
    body = gen_body({"text": "hi"})
    resp = await sim.post(STUDIO_PATH, json=body)
    assert resp.status_code == 403 and resp.json()["error"]["status"] == "PERMISSION_DENIED"
    assert resp.json()["error"]["code"] == 403
    resp = await sim.post(VERTEX_PATH, json=body, headers={"x-goog-api-key": "k"})
    assert resp.status_code == 401 and resp.json()["error"]["status"] == "UNAUTHENTICATED"
    assert (await sim.post(STUDIO_PATH + "?key=k", json=body)).status_code == 200
    assert (await sim.post(STUDIO_PATH, json=body, headers={"x-goog-api-key": "k"})).status_code == 200
    ok = await sim.post(VERTEX_PATH, json=body, headers={"authorization": "Bearer t"})
    assert ok.status_code == 200 and ok.json()["candidates"][0]["content"]["role"] == "model"


@pytest.mark.parametrize(
    "body,needle",
    [
        ({}, "contents is not specified"),
        ({"contents": []}, "contents is not specified"),
        (gen_body(), "parts must not be empty"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({**gen_body({"text": "x"}), "temprature": 1}, 'Unknown name "temprature"'),
        (gen_body(inline(RED, "image/jpeg")), "mime_type is image/jpeg but the bytes are image/png"),
        (gen_body(inline(image((0, 0, 0), "GIF"), "image/gif")), "Unsupported MIME type: image/gif"),
        (gen_body(inline(PDF, "image/png")), "Unable to process input image"),
        (gen_body({"inlineData": {"mimeType": "image/png", "data": "%%%"}}), "Base64 decoding failed"),
        (gen_body({"inlineData": {"data": b64(RED)}}), "mime_type is not specified"),
        ({**gen_body({"text": "x"}), "generationConfig": {"candidateCount": 0}}, "candidate_count"),
        (
            {**gen_body({"text": "x"}), "generationConfig": {"responseMimeType": "image/png"}},
            "Unsupported mime",
        ),
    ],
)
async def test_simulator_rejects_like_google(sim: Sim, body: dict[str, Any], needle: str) -> None:
    resp = await sim.post(STUDIO_PATH, json=body, headers={"x-goog-api-key": "k"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400 and needle in error["message"]


async def test_simulator_snake_case_json_and_payload_limit(sim: Sim) -> None:
    headers = {"x-goog-api-key": "k"}
    body = {
        **gen_body({"text": "colour?"}, inline(RED, "image/png", snake=True)),
        "system_instruction": {"parts": [{"text": "terse"}]},
        "generation_config": {"response_mime_type": "application/json", "max_output_tokens": 500},
    }
    resp = await sim.post(STUDIO_PATH, json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    answer = json.loads(resp.json()["candidates"][0]["content"]["parts"][0]["text"])
    assert "mostly red" in answer["description"]
    big = {
        "contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "A" * (21 * 1024 * 1024)}}]}]
    }
    resp = await sim.post(STUDIO_PATH, json=big, headers=headers)
    assert resp.status_code == 400 and "payload size exceeds the limit" in resp.json()["error"]["message"]
