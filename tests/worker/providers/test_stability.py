"""Stability AI adapter: golden v2beta forms and v1 bodies, the multipart wire, and the adapter against the
simulator's Stability dialect (real PNGs)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx
import pytest
from PIL import Image

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from mmq.simulator.faults import Fault
from tests.worker.providers._sim import Sim, b64, decoded, image, mock
from worker.providers import REGISTRY
from worker.providers import stability as st
from worker.providers.base import Target
from worker.providers.stability import NativeRequest, StabilityAdapter, from_native, to_native

TARGET = Target("stability-sim", "stability", "http://sim", api_key="sk-stab-test")


def images(**request: Any) -> dict[str, Any]:
    return {"prompt": "a red fox in snow", **request}


# ------------------------------------------------------------------------------------ golden bodies
def test_golden_v2beta_ultra_form() -> None:
    native = to_native(images(model="stable-image-ultra", size="1792x1024", negative_prompt="blur", seed=5))
    assert native == NativeRequest(
        "/v2beta/stable-image/generate/ultra",
        True,
        [
            {
                "prompt": "a red fox in snow",
                "aspect_ratio": "16:9",
                "output_format": "png",
                "negative_prompt": "blur",
                "seed": 5,
            }
        ],
    )


def test_golden_v2beta_sd3_model_field_n_and_seeds() -> None:
    native = to_native(images(model="sd3.5-large", n=3, seed=4294967294, output_format="webp"))
    assert native.path == "/v2beta/stable-image/generate/sd3" and native.multipart
    assert native.bodies == [
        {"prompt": "a red fox in snow", "output_format": "webp", "model": "sd3.5-large", "seed": s}
        for s in (4294967294, 1, 2)  # seed, seed+1, ... wrapping inside 1..4294967294
    ]


def test_golden_v2beta_core_style_preset_and_defaults() -> None:
    assert to_native(images(style_preset="photographic")) == NativeRequest(
        "/v2beta/stable-image/generate/core",
        True,
        [{"prompt": "a red fox in snow", "output_format": "png", "style_preset": "photographic"}],
    )


def test_golden_v1_sdxl_body() -> None:
    request = images(
        model="stable-diffusion-xl-1024-v1-0",
        n=2,
        size="1792x1024",
        negative_prompt="blur",
        cfg_scale=7,
        steps=30,
    )
    assert to_native(request) == NativeRequest(
        "/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image",
        False,
        [
            {
                "text_prompts": [{"text": "a red fox in snow", "weight": 1}, {"text": "blur", "weight": -1}],
                "width": 1344,
                "height": 768,
                "samples": 2,
                "cfg_scale": 7,
                "steps": 30,
            }
        ],
    )
    other = to_native(images(model="stable-diffusion-v1-6", size="500x700"))
    assert other.path == "/v1/generation/stable-diffusion-v1-6/text-to-image"
    assert (other.bodies[0]["width"], other.bodies[0]["height"]) == (512, 704)  # multiples of 64


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ("1024x1024", "1:1"),
        ("1792x1024", "16:9"),
        ("1024x1792", "9:16"),
        ("1536x1024", "3:2"),
        ("1024x1536", "2:3"),
        ("2100x900", "21:9"),
        ("800x1000", "4:5"),
        ("auto", None),
        (None, None),
    ],
)
def test_aspect_ratio_table(size: str | None, ratio: str | None) -> None:
    assert st.aspect_ratio(size) == ratio


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (images(model="dall-e-3"), "not a Stability model"),
        (images(model="ultra", style_preset="anime"), "style_preset"),
        (images(model="stable-diffusion-xl-1024-v1-0", output_format="jpeg"), "PNG only"),
        (images(model="stable-diffusion-xl-1024-v1-0", n=11), "at most 10"),
        (images(output_format="gif"), "output_format"),
        (images(seed=-1), "seed"),
        (images(size="big"), "size"),
        ({"prompt": ""}, "prompt"),
    ],
)
def test_refusals_are_invalid_jobs(request_: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidJob, match=match):
        to_native(request_)


# ------------------------------------------------------------------ every OpenAI field carried or refused
def _form(**request: Any) -> dict[str, Any]:
    [form] = to_native(images(**request)).bodies
    return form


def test_openai_style_naming_a_preset_reaches_core_as_style_preset() -> None:
    assert _form(style="photographic")["style_preset"] == "photographic"
    # an explicit style_preset wins over style (a config's override for its Stability target)
    assert _form(style="vivid", style_preset="anime")["style_preset"] == "anime"
    v1 = to_native(images(model="stable-diffusion-xl-1024-v1-0", style="cinematic")).bodies[0]
    assert v1["style_preset"] == "cinematic"


@pytest.mark.parametrize("style", ["vivid", "natural"])
def test_dalle_styles_have_no_stability_equivalent_and_are_refused(style: str) -> None:
    no_equivalent = rf"^style '{style}': .*no documented Stability equivalent.*style_preset"
    with pytest.raises(InvalidJob, match=no_equivalent):
        to_native(images(style=style))
    with pytest.raises(InvalidJob, match="style 'watercolour': not a Stability style preset"):
        to_native(images(style="watercolour"))
    with pytest.raises(InvalidJob, match="style must be a string, got dict"):
        to_native(images(style={"look": "anime"}))
    with pytest.raises(InvalidJob, match=r"^style: only accepted by Stability \['core'\]"):
        to_native(images(model="stable-image-ultra", style="anime"))


@pytest.mark.parametrize("model", ["stable-image-ultra", "stable-image-core", "sd3.5-large"])
def test_an_explicit_aspect_ratio_wins_over_size(model: str) -> None:
    assert _form(model=model, size="1024x1024", aspect_ratio="21:9")["aspect_ratio"] == "21:9"
    assert _form(model=model, aspect_ratio="9:16")["aspect_ratio"] == "9:16"
    assert _form(model=model, size="1792x1024")["aspect_ratio"] == "16:9"
    with pytest.raises(InvalidJob, match=r"^aspect_ratio '4:3': Stability takes one of"):
        to_native(images(model=model, size="1024x1024", aspect_ratio="4:3"))
    with pytest.raises(InvalidJob, match=r"^aspect_ratio \['16:9'\]: Stability takes one of"):
        to_native(images(model=model, aspect_ratio=["16:9"]))


def test_v1_sdxl_takes_an_explicit_aspect_ratio_as_its_nearest_size() -> None:
    body = to_native(images(model="stable-diffusion-xl-1024-v1-0", size="1024x1024", aspect_ratio="16:9"))
    assert (body.bodies[0]["width"], body.bodies[0]["height"]) == (1344, 768)
    with pytest.raises(InvalidJob, match="takes a width and height, not a ratio; send size"):
        to_native(images(model="stable-diffusion-v1-6", aspect_ratio="16:9"))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("quality", "hd", "no quality setting"),
        ("quality", "high", "no quality setting"),
        ("background", "transparent", "opaque images only"),
        ("output_compression", 50, "no compression setting"),
        ("moderation", "low", "moderation cannot be changed"),
        ("cfg_scale", 7, r"only accepted by Stability \['v1 engines'\]"),
        ("steps", 30, "only accepted by Stability"),
    ],
)
def test_openai_fields_without_a_stability_equivalent_are_refused(field: str, value: Any, match: str) -> None:
    with pytest.raises(InvalidJob, match=rf"^{field}: .*{match}"):
        to_native(images(**{field: value}))


def test_openai_fields_at_their_defaults_ask_for_nothing_and_pass() -> None:
    plain = _form()
    assert (
        _form(quality="standard", background="auto", output_compression=100, moderation="auto", user="u1")
        == plain
    )
    assert _form(quality="auto", background="opaque") == plain


def test_response_format_url_needs_no_translation() -> None:
    # mmq stores generated images itself, so a "url" job is answered from b64 like any other
    assert to_native(images(response_format="url")) == to_native(images(response_format="b64_json"))


def test_registry_entry() -> None:
    adapter = REGISTRY["stability"]
    assert isinstance(adapter, StabilityAdapter) and adapter.kinds == {Kind.image}
    assert adapter.default_base_url == "https://api.stability.ai"


# -------------------------------------------------------------------------------------- responses
def test_from_native_v2_and_v1() -> None:
    out = from_native(
        [{"image": "aQ==", "finish_reason": "SUCCESS", "seed": 1}, {"image": "ag==", "seed": 2}]
    )
    assert out["data"] == [{"b64_json": "aQ=="}, {"b64_json": "ag=="}] and out["created"] > 0
    v1 = from_native([{"artifacts": [{"base64": "aQ==", "finishReason": "SUCCESS", "seed": 3}] * 2}])
    assert len(v1["data"]) == 2


@pytest.mark.parametrize(
    ("body", "code", "retryable"),
    [
        ({"image": "aQ==", "finish_reason": "CONTENT_FILTERED", "seed": 1}, "content_filter", False),
        ({"artifacts": [{"base64": "aQ==", "finishReason": "CONTENT_FILTERED"}]}, "content_filter", False),
        ({"artifacts": [{"base64": "aQ==", "finishReason": "ERROR"}]}, None, True),
        ({"artifacts": []}, "unparseable_response", True),
        ({"finish_reason": "SUCCESS"}, "unparseable_response", True),
        ("<html>", "unparseable_response", True),
    ],
)
def test_from_native_failures(body: Any, code: str | None, retryable: bool) -> None:
    with pytest.raises(ProviderError) as info:
        from_native([body])
    assert (info.value.status, info.value.code, info.value.retryable) == (200, code, retryable)


@pytest.mark.parametrize(
    ("resp", "code", "retryable", "retry_after", "message"),
    [
        (
            httpx.Response(429, json={"id": "e1", "name": "rate_limit_exceeded", "errors": ["slow down"]}),
            "rate_limit_exceeded",
            True,
            60.0,  # Stability's documented 60 s timeout when no Retry-After is given
            "slow down",
        ),
        (
            httpx.Response(
                429, json={"name": "rate_limit_exceeded", "errors": ["x"]}, headers={"retry-after": "3"}
            ),
            "rate_limit_exceeded",
            True,
            3.0,
            "x",
        ),
        (
            httpx.Response(500, json={"id": "e", "name": "internal_error", "errors": ["oops"]}),
            "internal_error",
            True,
            None,
            "oops",
        ),
        (
            httpx.Response(
                400, json={"id": "e", "name": "bad_request", "errors": ["prompt: required", "seed: bad"]}
            ),
            "bad_request",
            False,
            None,
            "prompt: required; seed: bad",
        ),
        (
            httpx.Response(403, json={"id": "e", "name": "content_moderation", "errors": ["flagged"]}),
            "content_filter",
            False,
            None,
            "flagged",
        ),
        (
            httpx.Response(404, json={"id": "e", "name": "not_found", "message": "engine gone"}),
            "not_found",
            False,
            None,
            "engine gone",
        ),
        (httpx.Response(502, text="Bad Gateway"), None, True, None, "Bad Gateway"),
    ],
)
def test_error_mapping(
    resp: httpx.Response, code: str | None, retryable: bool, retry_after: float | None, message: str
) -> None:
    err = st.error_from_response(resp, "stability")
    assert (err.status, err.code, err.retryable, err.retry_after_s) == (
        resp.status_code,
        code,
        retryable,
        retry_after,
    )
    assert err.message == message


# ------------------------------------------------------------------------------------------- wire
PNG_1x1 = b64(image((0, 0, 0), size=(1, 1)))


async def capture(request: dict[str, Any], answer: dict[str, Any]) -> list[httpx.Request]:
    client, seen = mock(lambda r: httpx.Response(200, json=answer, headers={"x-request-id": "rq-1"}))
    target = Target(
        "s", "stability", "https://api.stability.ai/", api_key="sk-1", headers={"stability-client-id": "mmq"}
    )
    async with client:
        resp = await StabilityAdapter().call(client, target, Kind.image, request)
    assert resp.request_id == "rq-1" and resp.body["data"][0]["b64_json"] == PNG_1x1
    return seen.requests


def form_fields(req: httpx.Request) -> dict[str, str]:
    head = f"Content-Type: {req.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + req.content)
    assert message.is_multipart()
    fields = {}
    for part in message.iter_parts():
        assert part.get_filename() is None  # plain form fields, no file parts
        fields[part.get_param("name", header="content-disposition")] = part.get_content().strip()
    return fields


async def test_v2beta_multipart_on_the_wire() -> None:
    seen = await capture(
        images(model="sd3.5-medium", n=2, size="1024x1792", seed=11),
        {"image": PNG_1x1, "finish_reason": "SUCCESS", "seed": 11},
    )
    assert len(seen) == 2  # one image per call
    for req, seed in zip(seen, ("11", "12"), strict=True):
        assert str(req.url) == "https://api.stability.ai/v2beta/stable-image/generate/sd3"
        assert req.headers["authorization"] == "Bearer sk-1"
        assert req.headers["accept"] == "application/json"
        assert req.headers["stability-client-id"] == "mmq"
        assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert form_fields(req) == {
            "prompt": "a red fox in snow",
            "aspect_ratio": "9:16",
            "output_format": "png",
            "model": "sd3.5-medium",
            "seed": seed,
        }


async def test_v1_json_on_the_wire() -> None:
    (req,) = await capture(
        images(model="stable-diffusion-xl-1024-v1-0", size="1024x1024", steps=40),
        {"artifacts": [{"base64": PNG_1x1, "seed": 1, "finishReason": "SUCCESS"}]},
    )
    assert (
        str(req.url) == "https://api.stability.ai/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image"
    )
    assert req.headers["content-type"] == "application/json" and req.headers["accept"] == "application/json"
    assert json.loads(req.content) == {
        "text_prompts": [{"text": "a red fox in snow", "weight": 1}],
        "width": 1024,
        "height": 1024,
        "samples": 1,
        "steps": 40,
    }


# ------------------------------------------------------------------------- against the simulator
async def call(client: httpx.AsyncClient, request: dict[str, Any], target: Target = TARGET) -> Any:
    return await StabilityAdapter().call(client, target, Kind.image, request)


@pytest.mark.parametrize(
    ("request_", "count", "size", "fmt"),
    [
        (images(model="ultra", size="1792x1024"), 1, (1344, 768), "PNG"),
        (images(model="stable-image-core", n=2), 2, (1024, 1024), "PNG"),
        (images(model="sd3.5-large-turbo", size="1024x1536", output_format="jpeg"), 1, (832, 1216), "JPEG"),
        (images(model="sd3", output_format="webp"), 1, (1024, 1024), "WEBP"),
        (images(model="stable-diffusion-xl-1024-v1-0", n=2, size="1024x1792"), 2, (768, 1344), "PNG"),
        (images(model="stable-diffusion-v1-6", size="512x512"), 1, (512, 512), "PNG"),
    ],
)
async def test_real_images_from_the_simulator(
    sim: Sim,
    request_: dict[str, Any],
    count: int,
    size: tuple[int, int],
    fmt: str,
) -> None:
    resp = await call(sim, request_)
    data = resp.body["data"]
    assert len(data) == count and resp.status == 200
    for item in data:
        img = decoded(item)
        assert (img.format, img.size) == (fmt, size)
    if count == 2:
        assert data[0]["b64_json"] != data[1]["b64_json"]


@pytest.mark.parametrize("model", ["ultra", "stable-diffusion-xl-1024-v1-0"])
async def test_content_filter_from_the_simulator(sim: Sim, model: str) -> None:
    with pytest.raises(ProviderError) as info:
        await call(sim, images(model=model, prompt="mmq-sim:block me"))
    assert (info.value.code, info.value.retryable, info.value.provider) == (
        "content_filter",
        False,
        "stability",
    )


async def test_auth_rate_limit_and_faults_in_stability_shape(make_sim: Callable[..., Sim]) -> None:
    client = make_sim(requests_per_window=1, window_s=60)
    with pytest.raises(ProviderError) as info:
        await call(client, images(), Target("s", "stability", "http://sim"))
    assert (info.value.status, info.value.code, info.value.retryable) == (401, "unauthorized", False)
    await call(client, images())
    with pytest.raises(ProviderError) as info:
        await call(client, images(model="stable-diffusion-xl-1024-v1-0"))
    err = info.value
    assert (err.status, err.retryable) == (429, True) and err.retry_after_s is not None
    fresh = make_sim()
    fresh.faults.add(Fault(status=503))
    with pytest.raises(ProviderError) as info:
        await call(fresh, images())
    assert (info.value.status, info.value.code, info.value.retryable) == (503, "service_unavailable", True)
    fresh.faults.add(Fault(status=400, code="invalid_prompt"))
    with pytest.raises(ProviderError) as info:
        await call(fresh, images(model="stable-diffusion-xl-1024-v1-0"))
    assert (info.value.status, info.value.code, info.value.retryable) == (400, "invalid_prompt", False)


# ------------------------------------------------------------------- the simulator's own validation
AUTH = {"authorization": "Bearer k"}


def form(**fields: str) -> list[tuple[str, tuple[None, str]]]:
    return [(k, (None, v)) for k, v in fields.items()]


@pytest.mark.parametrize(
    ("path", "fields", "status", "match"),
    [
        ("ultra", {"aspect_ratio": "1:1"}, 400, "prompt"),
        ("core", {"prompt": "p", "aspect_ratio": "4:3"}, 400, "aspect_ratio"),
        ("core", {"prompt": "p", "output_format": "gif"}, 400, "output_format"),
        ("sd3", {"prompt": "p", "model": "sd4"}, 400, "model"),
        ("ultra", {"prompt": "p", "seed": "4294967295"}, 400, "seed"),
        ("turbo", {"prompt": "p"}, 404, "not found"),
    ],
)
async def test_simulator_validates_v2beta(
    sim: Sim, path: str, fields: dict[str, str], status: int, match: str
) -> None:
    resp = await sim.post(f"/v2beta/stable-image/generate/{path}", files=form(**fields), headers=AUTH)
    assert resp.status_code == status
    body = resp.json()
    assert set(body) == {"id", "name", "errors"} and match in body["errors"][0]


async def test_simulator_v2beta_needs_multipart_and_can_answer_raw_bytes(
    sim: Sim,
) -> None:
    as_json = await sim.post("/v2beta/stable-image/generate/core", json={"prompt": "p"}, headers=AUTH)
    assert as_json.status_code == 400 and "multipart/form-data" in as_json.json()["errors"][0]
    raw = await sim.post(
        "/v2beta/stable-image/generate/core",
        files=form(prompt="p", seed="7"),
        headers={**AUTH, "accept": "image/*"},
    )
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    assert raw.headers["finish-reason"] == "SUCCESS" and raw.headers["seed"] == "7"
    assert Image.open(io.BytesIO(raw.content)).size == (1024, 1024)
    no_key = await sim.post("/v2beta/stable-image/generate/core", files=form(prompt="p"))
    assert no_key.status_code == 401 and no_key.json()["name"] == "unauthorized"


@pytest.mark.parametrize(
    ("engine", "body", "status", "match"),
    [
        ("stable-diffusion-v1-6", {"text_prompts": [{"text": "p"}], "width": 500}, 400, "multiple of 64"),
        ("stable-diffusion-v1-6", {"text_prompts": [{"text": "p"}], "height": 64}, 400, "between"),
        (
            "stable-diffusion-xl-1024-v1-0",
            {"text_prompts": [{"text": "p"}], "width": 512, "height": 512},
            400,
            "allowed dimensions",
        ),
        ("stable-diffusion-xl-1024-v1-0", {"text_prompts": []}, 400, "text_prompts"),
        ("stable-diffusion-xl-1024-v1-0", {"text_prompts": [{"text": "p"}], "samples": 11}, 400, "samples"),
        (
            "stable-diffusion-xl-1024-v1-0",
            {"text_prompts": [{"text": "p"}], "cfg_scale": 40},
            400,
            "cfg_scale",
        ),
        ("stable-diffusion-xl-1024-v1-0", {"text_prompts": [{"text": "p"}], "n": 2}, 400, "n:"),
        ("stable-diffusion-xl-1024-v1-0", {"text_prompts": [{"text": "p", "weight": -1}]}, 400, "positive"),
        ("stable-diffusion-512-v2-1", {"text_prompts": [{"text": "p"}]}, 404, "not found"),
    ],
)
async def test_simulator_validates_v1(
    sim: Sim, engine: str, body: dict[str, Any], status: int, match: str
) -> None:
    resp = await sim.post(f"/v1/generation/{engine}/text-to-image", json=body, headers=AUTH)
    assert resp.status_code == status
    answer = resp.json()
    assert set(answer) == {"id", "name", "message"} and match in answer["message"]
