"""Bedrock adapter: golden Converse / InvokeModel bodies, SigV4 on the wire, and the adapter against the
simulator's Bedrock dialect (which really verifies the signature)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

import botocore.auth
import botocore.session
import httpx
import pytest
import uvicorn

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from mmq.simulator import SimulatorConfig, create_app
from mmq.simulator.faults import Fault
from tests.conftest import data_url
from tests.worker.providers import _sim
from tests.worker.providers._sim import PDF, Sim, b64, decoded, file_part, image, mock, text, user
from worker.http import make_client
from worker.providers import REGISTRY
from worker.providers.base import Target
from worker.providers.bedrock import BedrockAdapter, NativeRequest, from_native, to_native
from worker.providers.bedrock import auth as br_auth
from worker.providers.bedrock import chat as br_chat
from worker.providers.bedrock import errors as br_errors

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SIM_KEY = "AKIDSIM:simsecret"
PROFILE_ARN = (
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
)


# these tests send detail="high" (Converse has no such knob; the golden bodies show it dropped)
image_part = partial(_sim.image_part, detail="high")


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **params}


def converse_body(request: dict[str, Any]) -> dict[str, Any]:
    native = to_native(Kind.chat, request)
    assert (native.operation, native.model_id, len(native.bodies)) == ("converse", MODEL, 1)
    return native.bodies[0]


# ------------------------------------------------------------------------------------ golden bodies
def test_golden_data_png() -> None:
    png = image((209, 42, 42))
    native = to_native(Kind.chat, chat(user(text("What colour?"), image_part(data_url(png, "image/png")))))
    assert native == NativeRequest(
        "converse",
        MODEL,
        [
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"text": "What colour?"},
                            {"image": {"format": "png", "source": {"bytes": b64(png)}}},
                        ],
                    }
                ]
            }
        ],
    )


def test_http_url_is_refused_as_not_inlined() -> None:
    request = chat(user(text("Describe."), image_part("https://example.com/cat.jpg")))
    with pytest.raises(InvalidJob) as info:
        to_native(Kind.chat, request)
    assert info.value.type == "invalid_media"
    message = str(info.value)
    assert "messages[0].content[1]" in message and "https://example.com/cat.jpg" in message
    assert "inlined" in message and "worker" in message
    with pytest.raises(InvalidJob, match="inlined"):
        to_native(
            Kind.chat, chat(user(text("Sum up."), {"type": "file", "file": {"file_data": "https://x/a.pdf"}}))
        )


def test_golden_pdf_file_part() -> None:
    body = converse_body(
        chat(user(text("Summarise."), file_part(PDF, "application/pdf", "Q3 report_final.v2.pdf")))
    )
    assert body == {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "Summarise."},
                    {
                        "document": {
                            "format": "pdf",
                            "name": "Q3 report-final-v2",
                            "source": {"bytes": b64(PDF)},
                        }
                    },
                ],
            }
        ]
    }


def test_golden_two_images_system_prompt_and_inference_config() -> None:
    red, blue = image((255, 0, 0)), image((0, 0, 255), "JPEG")
    request = chat(
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [text("Answer in English.")]},
        user(text("Compare these.")),
        user(image_part(data_url(red, "image/png")), image_part(data_url(blue, "image/jpeg"))),
        {"role": "assistant", "content": "The first is red."},
        user(text("And the second?")),
        max_completion_tokens=300,
        max_tokens=999,  # max_completion_tokens wins, as in OpenAI
        temperature=1.5,  # clamped to Converse's maximum of 1
        top_p=0.9,
        stop="END",
        seed=7,  # OpenAI-only, dropped
        user="u-42",  # OpenAI-only, dropped
    )
    assert converse_body(request) == {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "Compare these."},
                    {"image": {"format": "png", "source": {"bytes": b64(red)}}},
                    {"image": {"format": "jpeg", "source": {"bytes": b64(blue)}}},
                ],
            },
            {"role": "assistant", "content": [{"text": "The first is red."}]},
            {"role": "user", "content": [{"text": "And the second?"}]},
        ],
        "system": [{"text": "You are terse."}, {"text": "Answer in English."}],
        "inferenceConfig": {"maxTokens": 300, "temperature": 1.0, "topP": 0.9, "stopSequences": ["END"]},
    }


@pytest.mark.parametrize(
    ("fmt", "declared", "expected"),
    [
        ("GIF", "image/gif", "gif"),
        ("JPEG", "image/jpeg", "jpeg"),
        ("WEBP", "image/webp", "webp"),
        ("PNG", "image/jpeg", "png"),  # a wrong declared type: the bytes decide
    ],
)
def test_image_format_follows_the_bytes(fmt: str, declared: str, expected: str) -> None:
    data = image((0, 128, 0), fmt)
    body = converse_body(chat(user(text("?"), image_part(data_url(data, declared)))))
    assert body["messages"][0]["content"][1] == {
        "image": {"format": expected, "source": {"bytes": b64(data)}}
    }


def test_percent_encoded_data_url_is_base64_encoded() -> None:
    part = {"type": "file", "file": {"file_data": "data:text/plain,a%20b", "filename": "notes.txt"}}
    body = converse_body(chat(user(text("Read."), part)))
    assert body["messages"][0]["content"][1] == {
        "document": {"format": "txt", "name": "notes", "source": {"bytes": b64(b"a b")}}
    }


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("report.pdf", "report"),
        ("Q3 report_final.v2.pdf", "Q3 report-final-v2"),
        ("  two   spaces\tand tab.pdf", "two spaces and tab"),
        ("annual (2024) [draft].pdf", "annual (2024) [draft]"),
        ("dir/sub/résumé.pdf", "r-sum"),
        ("日本語.pdf", "document-1"),
        (None, "document-1"),
        ("x" * 250 + ".pdf", "x" * 200),
    ],
)
def test_document_names_are_sanitised(filename: str | None, name: str) -> None:
    assert br_chat.document_name(filename, 1) == name
    assert re.fullmatch(r"(?!.*\s\s)[A-Za-z0-9\s\-()\[\]]{1,200}", name)


def test_duplicate_document_names_are_told_apart() -> None:
    body = converse_body(
        chat(
            user(
                text("Compare."),
                file_part(PDF, "application/pdf", "report.pdf"),
                file_part(PDF, "application/pdf", "report.pdf"),
                file_part(b"a,b\n1,2\n", "text/csv", "data.csv"),
            )
        )
    )
    docs = [b["document"] for b in body["messages"][0]["content"] if "document" in b]
    assert [(d["format"], d["name"]) for d in docs] == [
        ("pdf", "report"),
        ("pdf", "report (2)"),
        ("csv", "data"),
    ]


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (chat(user(text("hi")), tools=[{"type": "function"}]), "tools"),
        (chat(user(text("hi")), n=2), "n=1"),
        (chat(user(text("hi")), response_format={"type": "json_object"}), "response_format"),
        (chat(user(file_part(PDF, "application/pdf", "a.pdf"))), "text part"),
        (chat({"role": "assistant", "content": "hi"}, user(text("hi"))), "starts with"),
        (
            chat(
                user(text("hi")),
                {"role": "assistant", "content": [image_part(data_url(image((1, 2, 3)), "image/png"))]},
            ),
            "user messages only",
        ),
        (chat(user({"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}})), "audio"),
        (chat(user(text("?"), image_part(data_url(image((1, 2, 3), "BMP"), "image/bmp")))), "image/bmp"),
        (chat(user(text("?"), {"type": "file", "file": {"file_id": "file-1"}})), "file_id"),
        (
            chat(user(text("?"), file_part(b"\x00\x01", "application/octet-stream", "blob.bin"))),
            "documents are",
        ),
        ({"messages": [user(text("hi"))]}, "model is required"),
    ],
)
def test_refusals_are_invalid_jobs(request_: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidJob, match=match):
        to_native(Kind.chat, request_)


def test_golden_image_bodies() -> None:
    titan = to_native(
        Kind.image,
        {
            "model": "amazon.titan-image-generator-v2:0",
            "prompt": "a fox",
            "n": 2,
            "size": "1280x768",
            "quality": "hd",
            "negative_prompt": "blur",
            "seed": 42,
        },
    )
    assert titan == NativeRequest(
        "invoke",
        "amazon.titan-image-generator-v2:0",
        [
            {
                "taskType": "TEXT_IMAGE",
                "textToImageParams": {"text": "a fox", "negativeText": "blur"},
                "imageGenerationConfig": {
                    "numberOfImages": 2,
                    "width": 1280,
                    "height": 768,
                    "quality": "premium",
                    "seed": 42,
                },
            }
        ],
        "titan",
    )
    sd3 = to_native(
        Kind.image,
        {"model": "us.stability.sd3-5-large-v1:0", "prompt": "a fox", "n": 2, "size": "1792x1024", "seed": 9},
    )
    assert (sd3.family, sd3.model_id) == ("stability3", "us.stability.sd3-5-large-v1:0")
    assert sd3.bodies == [
        {
            "prompt": "a fox",
            "mode": "text-to-image",
            "aspect_ratio": "16:9",
            "output_format": "png",
            "seed": 9,
        },
        {
            "prompt": "a fox",
            "mode": "text-to-image",
            "aspect_ratio": "16:9",
            "output_format": "png",
            "seed": 10,
        },
    ]
    ultra = to_native(
        Kind.image, {"model": "stability.stable-image-ultra-v1:1", "prompt": "p", "output_format": "jpeg"}
    )
    assert ultra.bodies == [{"prompt": "p", "mode": "text-to-image", "output_format": "jpeg"}]
    sdxl = to_native(
        Kind.image, {"model": "stability.stable-diffusion-xl-v1", "prompt": "p", "size": "1024x1792"}
    )
    assert sdxl.bodies == [{"text_prompts": [{"text": "p", "weight": 1}], "width": 768, "height": 1344}]
    nova = to_native(
        Kind.image,
        {"model": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-canvas-v1:0", "prompt": "p"},
    )
    assert nova.family == "titan"
    assert nova.bodies[0]["imageGenerationConfig"] == {"numberOfImages": 1, "width": 1024, "height": 1024}


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        ({"model": "amazon.titan-image-generator-v1", "prompt": "p", "n": 6}, "at most 5"),
        ({"model": "meta.llama3-70b", "prompt": "p"}, "families"),
        ({"model": "stability.sd3-large-v1:0", "prompt": "p", "output_format": "webp"}, "output_format"),
        ({"prompt": "p"}, "model is required"),
    ],
)
def test_image_refusals(request_: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidJob, match=match):
        to_native(Kind.image, request_)
    with pytest.raises(InvalidJob, match="does not handle"):
        to_native(Kind.speech, {"model": MODEL, "input": "hi"})


def _image_bodies(**request: Any) -> list[dict[str, Any]]:
    return to_native(Kind.image, {"prompt": "p", **request}).bodies


def test_stability_on_bedrock_explicit_aspect_ratio_wins_over_size() -> None:
    [sd3] = _image_bodies(model="stability.sd3-5-large-v1:0", size="1024x1024", aspect_ratio="21:9")
    assert sd3["aspect_ratio"] == "21:9"
    [sdxl] = _image_bodies(model="stability.stable-diffusion-xl-v1", size="1024x1024", aspect_ratio="9:16")
    assert (sdxl["width"], sdxl["height"]) == (768, 1344)
    with pytest.raises(InvalidJob, match=r"^aspect_ratio '7:3'"):
        _image_bodies(model="stability.sd3-5-large-v1:0", size="1024x1024", aspect_ratio="7:3")


def test_stability_on_bedrock_style_is_a_style_preset_on_sdxl_and_refused_on_sd3() -> None:
    [sdxl] = _image_bodies(model="stability.stable-diffusion-xl-v1", style="anime")
    assert sdxl["style_preset"] == "anime"
    [sdxl] = _image_bodies(model="stability.stable-diffusion-xl-v1", style="vivid", style_preset="enhance")
    assert sdxl["style_preset"] == "enhance"
    with pytest.raises(InvalidJob, match=r"style 'vivid': .*no documented Stability equivalent"):
        _image_bodies(model="stability.stable-diffusion-xl-v1", style="vivid")
    for field in ("style", "style_preset", "cfg_scale"):
        with pytest.raises(InvalidJob, match=rf"^{field}: not a parameter of Stability's SD3"):
            _image_bodies(model="stability.stable-image-core-v1:1", **{field: "anime"})


@pytest.mark.parametrize("model", ["stability.sd3-5-large-v1:0", "stability.stable-diffusion-xl-v1"])
def test_stability_on_bedrock_refuses_openai_fields_it_has_no_equivalent_for(model: str) -> None:
    with pytest.raises(InvalidJob, match=r"^quality: Stability has no quality setting"):
        _image_bodies(model=model, quality="hd")
    with pytest.raises(InvalidJob, match=r"^background: "):
        _image_bodies(model=model, background="transparent")
    assert _image_bodies(model=model, quality="standard", user="u") == _image_bodies(model=model)


# -------------------------------------------------------------------------------------- responses
def test_from_native_chat_golden() -> None:
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "A red "}, {"text": "square."}]}},
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 514, "cacheReadInputTokens": 500},
        "metrics": {"latencyMs": 12},
    }
    out = from_native(Kind.chat, [body], chat(user(text("hi"))), request_id="rid-1")
    assert (
        out["id"] == "chatcmpl-bedrock-rid-1" and out["object"] == "chat.completion" and out["model"] == MODEL
    )
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "A red square.", "refusal": None},
            "finish_reason": "length",
            "logprobs": None,
        }
    ]
    assert out["usage"] == {
        "prompt_tokens": 510,
        "completion_tokens": 4,
        "total_tokens": 514,
        "prompt_tokens_details": {"cached_tokens": 500},
    }


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_model_output", "stop"),
    ],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    body = {"output": {"message": {"content": []}}, "stopReason": stop}
    assert from_native(Kind.chat, [body], chat())["choices"][0]["finish_reason"] == finish


def test_from_native_images_and_filters() -> None:
    ok = from_native(Kind.image, [{"images": ["aQ==", "ag=="], "error": None}], {}, "titan")
    assert [d["b64_json"] for d in ok["data"]] == ["aQ==", "ag=="]
    two = from_native(Kind.image, [{"images": ["aQ=="], "finish_reasons": [None]}] * 2, {}, "stability3")
    assert len(two["data"]) == 2
    for family, body in [
        ("stability3", {"images": ["aQ=="], "finish_reasons": ["Filter reason: prompt"]}),
        ("sdxl", {"artifacts": [{"base64": "aQ==", "finishReason": "CONTENT_FILTERED"}]}),
    ]:
        with pytest.raises(ProviderError) as info:
            from_native(Kind.image, [body], {}, family)
        assert (info.value.code, info.value.retryable) == ("content_filter", False)
    for body in [{"images": []}, {"nothing": 1}, "not json"]:
        with pytest.raises(ProviderError) as info:
            from_native(Kind.image, [body], {}, "titan")
        assert (info.value.code, info.value.retryable) == ("unparseable_response", True)
    with pytest.raises(ProviderError, match="unusable"):
        from_native(Kind.chat, [{"output": {}}], chat())


# ---------------------------------------------------------------------------------------- errors
def bedrock_error(status: int, name: str | None, body: Any) -> httpx.Response:
    headers = (
        {"x-amzn-errortype": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"} if name else {}
    )
    if isinstance(body, dict):
        return httpx.Response(status, json=body, headers=headers)
    return httpx.Response(status, text=body, headers=headers)


@pytest.mark.parametrize(
    ("resp", "code", "retryable"),
    [
        (
            bedrock_error(429, "ThrottlingException", {"message": "Too many requests"}),
            "ThrottlingException",
            True,
        ),
        (
            bedrock_error(429, "ModelNotReadyException", {"message": "warming"}),
            "ModelNotReadyException",
            True,
        ),
        (
            bedrock_error(503, "ServiceUnavailableException", {"message": "x"}),
            "ServiceUnavailableException",
            True,
        ),
        (bedrock_error(500, "InternalServerException", {"Message": "x"}), "InternalServerException", True),
        (
            bedrock_error(400, "ServiceQuotaExceededException", {"message": "x"}),
            "ServiceQuotaExceededException",
            True,
        ),
        (bedrock_error(400, "ValidationException", {"message": "bad"}), "ValidationException", False),
        (bedrock_error(403, "AccessDeniedException", {"message": "no"}), "AccessDeniedException", False),
        (
            bedrock_error(404, "ResourceNotFoundException", {"message": "no"}),
            "ResourceNotFoundException",
            False,
        ),
        (
            bedrock_error(400, None, {"__type": "com.amazon#ValidationException", "message": "m"}),
            "ValidationException",
            False,
        ),
        (
            bedrock_error(
                400,
                "ValidationException",
                {"message": "This request has been blocked by our content filters."},
            ),
            "content_filter",
            False,
        ),
        (
            bedrock_error(424, "ModelErrorException", {"message": "m", "originalStatusCode": 503}),
            "ModelErrorException",
            True,
        ),
        (
            bedrock_error(424, "ModelErrorException", {"message": "m", "originalStatusCode": 400}),
            "ModelErrorException",
            False,
        ),
        (bedrock_error(502, None, "<html>Bad Gateway</html>"), None, True),
    ],
)
def test_error_mapping(resp: httpx.Response, code: str | None, retryable: bool) -> None:
    err = br_errors.error_from_response(resp, "bedrock")
    assert (err.status, err.code, err.retryable) == (resp.status_code, code, retryable)
    assert err.message and err.provider == "bedrock"


# ----------------------------------------------------------------------------- endpoints and auth
def test_base_url_region_and_registry() -> None:
    adapter = REGISTRY["bedrock"]
    assert isinstance(adapter, BedrockAdapter) and adapter.kinds == {Kind.chat, Kind.image}
    assert adapter.media.remote_urls is False and adapter.media.max_images == 20
    assert adapter.media.image_types == {"image/png", "image/jpeg", "image/gif", "image/webp"}
    template = adapter.default_base_url
    assert template == "https://bedrock-runtime.{region}.amazonaws.com"
    # the router hands the template over as base_url; the region header fills it in
    t = Target("b", "bedrock", template, headers={"X-Mmq-Aws-Region": "eu-central-1"})
    assert adapter.base_url_for(t) == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert (
        adapter.base_url_for(Target("b", "bedrock", "")) == "https://bedrock-runtime.us-east-1.amazonaws.com"
    )
    fips = Target("b", "bedrock", "https://bedrock-runtime-fips.us-west-2.amazonaws.com/")
    assert adapter.region_for(fips) == "us-west-2"
    assert adapter.base_url_for(fips) == "https://bedrock-runtime-fips.us-west-2.amazonaws.com"
    assert adapter.region_for(Target("b", "bedrock", "http://sim")) == "us-east-1"
    assert adapter.endpoint(Target("b", "bedrock", "http://sim"), PROFILE_ARN, "converse") == (
        "http://sim/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile"
        "%2Fus.anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    )


CONVERSE_OK = {
    "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
}


async def capture(target: Target, request: dict[str, Any], kind: Kind = Kind.chat) -> httpx.Request:
    client, seen = mock(lambda r: httpx.Response(200, json=CONVERSE_OK, headers={"x-amzn-RequestId": "r-1"}))
    async with client:
        resp = await BedrockAdapter().call(client, target, kind, request)
    assert resp.request_id == "r-1"
    (sent,) = seen.requests
    return sent


async def test_sigv4_on_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = dt.datetime(2026, 3, 4, 5, 6, 7)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: fixed)
    target = Target(
        "b",
        "bedrock",
        br_auth.DEFAULT_BASE_URL,
        api_key="AKIDEXAMPLE:secret/key+1:session-token",
        headers={"x-mmq-aws-region": "eu-west-3", "X-Amzn-Bedrock-Trace": "ENABLED"},
    )
    sent = await capture(target, chat(user(text("hi"))))
    assert (
        str(sent.url)
        == f"https://bedrock-runtime.eu-west-3.amazonaws.com/model/{MODEL.replace(':', '%3A')}/converse"
    )
    assert json.loads(sent.content) == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    h = sent.headers
    assert "x-mmq-aws-region" not in h and h["x-amzn-bedrock-trace"] == "ENABLED"
    assert h["x-amz-date"] == "20260304T050607Z"
    assert h["x-amz-content-sha256"] == hashlib.sha256(sent.content).hexdigest()
    assert h["x-amz-security-token"] == "session-token"
    assert h["content-type"] == "application/json" and h["accept"] == "application/json"
    auth = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(\S+), SignedHeaders=(\S+), Signature=([0-9a-f]{64})",
        h["authorization"],
    )
    assert auth is not None
    assert auth[1] == "AKIDEXAMPLE/20260304/eu-west-3/bedrock/aws4_request"
    assert set(auth[2].split(";")) == {
        "accept",
        "content-type",
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-security-token",
        "x-amzn-bedrock-trace",
    }


async def test_bearer_api_key_and_misconfiguration() -> None:
    target = Target(
        "b", "bedrock", "http://sim", api_key="ABSKbedrockkey", headers={"x-mmq-aws-auth": "bearer"}
    )
    sent = await capture(target, chat(user(text("hi"))))
    assert sent.headers["authorization"] == "Bearer ABSKbedrockkey"
    assert not any(k.startswith("x-amz") or k.startswith("x-mmq") for k in sent.headers)
    for bad in (
        Target("b", "bedrock", "http://sim"),
        Target("b", "bedrock", "http://sim", api_key="no-colon-here"),
        Target("b", "bedrock", "http://sim", api_key=SIM_KEY, headers={"x-mmq-aws-auth": "basic"}),
    ):
        with pytest.raises(ProviderError) as info:
            await capture(bad, chat(user(text("hi"))))
        assert (info.value.code, info.value.retryable) == ("target_misconfigured", False)


# ------------------------------------------------------------------------- against the simulator
TARGET = Target("bedrock-sim", "bedrock", "http://sim", api_key=SIM_KEY)


async def call(
    client: httpx.AsyncClient, request: dict[str, Any], target: Target = TARGET, kind: Kind = Kind.chat
) -> Any:
    return await BedrockAdapter().call(client, target, kind, request)


@pytest.mark.parametrize(
    ("fmt", "mime", "rgb", "colour"),
    [
        ("PNG", "image/png", (209, 42, 42), "red"),
        ("GIF", "image/gif", (0, 0, 255), "blue"),
        ("JPEG", "image/jpeg", (40, 160, 40), "green"),
        ("WEBP", "image/webp", (255, 255, 0), "yellow"),
    ],
)
async def test_caption_names_the_colour_with_a_verified_signature(
    sim: Sim, fmt: str, mime: str, rgb: tuple[int, int, int], colour: str
) -> None:
    request = chat(
        {"role": "system", "content": "Be brief."},
        user(text("What colour is this?"), image_part(data_url(image(rgb, fmt), mime))),
    )
    resp = await call(sim, request)
    content = resp.body["choices"][0]["message"]["content"]
    assert f"mostly {colour}" in content and f"60x40 {fmt}" in content
    assert resp.body["choices"][0]["finish_reason"] == "stop"
    assert resp.usage["prompt_tokens"] > 0 and resp.request_id


async def test_pdf_two_images_session_token_and_bearer(sim: Sim) -> None:
    request = chat(
        user(
            text("Compare."),
            image_part(data_url(image((255, 0, 0)), "image/png")),
            image_part(data_url(image((0, 0, 255)), "image/png")),
            file_part(PDF, "application/pdf", "Q3 report.pdf"),
        ),
        max_tokens=500,
    )
    with_token = Target("t", "bedrock", "http://sim", api_key=SIM_KEY + ":FwoGZXIvYXdzEXAMPLE")
    content = (await call(sim, request, with_token)).body["choices"][0]["message"]["content"]
    assert "Image 1" in content and "mostly red" in content and "mostly blue" in content
    assert "Document 1 (Q3 report): PDF, about 2 pages" in content
    bearer = Target("t", "bedrock", "http://sim", api_key="ABSK-any", headers={"x-mmq-aws-auth": "bearer"})
    assert "mostly red" in (await call(sim, request, bearer)).body["choices"][0]["message"]["content"]


async def test_max_tokens_stop_and_content_filter(sim: Sim) -> None:
    short = await call(sim, chat(user(text("tell me a long story please")), max_tokens=2))
    assert short.body["choices"][0]["finish_reason"] == "length" and short.usage["completion_tokens"] == 2
    stopped = await call(sim, chat(user(text("hello there")), stop=["said"]))
    assert stopped.body["choices"][0]["message"]["content"] == "[mmq simulator] You "
    blocked = await call(sim, chat(user(text("mmq-sim:block this"))))
    assert blocked.body["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize(
    ("api_key", "name"),
    [
        ("AKIDSIM:wrongsecret", "InvalidSignatureException"),
        ("AKIDOTHER:simsecret", "UnrecognizedClientException"),
    ],
)
async def test_bad_credentials_are_403_in_bedrock_shape(sim: Sim, api_key: str, name: str) -> None:
    with pytest.raises(ProviderError) as info:
        await call(sim, chat(user(text("hi"))), Target("t", "bedrock", "http://sim", api_key=api_key))
    err = info.value
    assert (err.status, err.code, err.retryable) == (403, name, False)
    raw = await sim.post(
        "/model/x.y/converse", json={"messages": []}, headers={"authorization": "AWS4-HMAC-SHA256 junk"}
    )
    assert raw.status_code == 403 and raw.headers["x-amzn-errortype"].startswith(
        "IncompleteSignatureException"
    )
    assert set(raw.json()) == {"message"} and raw.headers["x-amzn-requestid"]
    missing = await sim.post("/model/x.y/converse", json={"messages": []})
    assert missing.status_code == 403 and missing.headers["x-amzn-errortype"].startswith(
        "MissingAuthentication"
    )


def signed(url: str, body: bytes, key: str = SIM_KEY, region: str = "us-east-1") -> dict[str, str]:
    headers = {"content-type": "application/json", "host": httpx.URL(url).netloc.decode()}
    return {**headers, **br_auth.sigv4_headers(url, headers, body, br_auth.parse_credentials(key), region)}


async def test_signature_covers_body_time_and_encoded_path(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://sim/model/{MODEL.replace(':', '%3A')}/converse"
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
    assert (await sim.post(url, content=body, headers=signed(url, body))).status_code == 200
    # a transport that sends ":" where the signer saw "%3A" (aiohttp does) still verifies: same decoded path
    plain = f"http://sim/model/{MODEL}/converse"
    assert (await sim.post(plain, content=body, headers=signed(url, body))).status_code == 200
    # a body changed after signing: the payload hash gives it away
    tampered = await sim.post(url, content=body.replace(b"hi", b"yo"), headers=signed(url, body))
    assert (tampered.status_code, tampered.headers["x-amzn-errortype"].split(":")[0]) == (
        400,
        "XAmzContentSHA256Mismatch",
    )
    # without the payload hash header the signature itself covers the body
    no_hash = {k: v for k, v in signed(url, body).items() if k.lower() != "x-amz-content-sha256"}
    swapped = await sim.post(url, content=body.replace(b"hi", b"yo"), headers=no_hash)
    assert (swapped.status_code, swapped.headers["x-amzn-errortype"].split(":")[0]) == (
        403,
        "InvalidSignatureException",
    )
    # a different model id in the path than the one signed
    other = url.replace("v1%3A0", "v2%3A0")
    moved = await sim.post(other, content=body, headers=signed(url, body))
    assert moved.status_code == 403
    # signed ten minutes ago
    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda *a, **k: real() - dt.timedelta(minutes=10)
    )
    stale = await sim.post(url, content=body, headers=signed(url, body))
    assert stale.status_code == 403 and "expired" in stale.json()["message"]


async def test_botocore_client_requests_verify_in_the_simulator(
    sim: Sim,
) -> None:
    """The simulator accepts what boto itself sends, so it checks SigV4 the way AWS does, not our way."""

    class Captured(Exception):
        pass

    sent: list[Any] = []

    def grab(request: Any, **_: Any) -> None:
        sent.append(request)
        raise Captured

    boto = botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name="ap-southeast-2",
        endpoint_url="http://sim",
        aws_access_key_id="AKIDSIM",
        aws_secret_access_key="simsecret",
    )
    boto.meta.events.register("before-send", grab)
    png = image((255, 0, 0))
    with pytest.raises(Captured):
        boto.converse(
            modelId=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [{"text": "Colour?"}, {"image": {"format": "png", "source": {"bytes": png}}}],
                }
            ],
        )
    (req,) = sent
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in req.headers.items()}
    resp = await sim.post(req.url, content=req.body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert "mostly red" in resp.json()["output"]["message"]["content"][0]["text"]


# ------------------------------------------------------------------------------ images end to end
@pytest.mark.parametrize(
    ("request_", "count", "size", "fmt"),
    [
        ({"model": "amazon.titan-image-generator-v2:0", "n": 2, "size": "1280x768"}, 2, (1280, 768), "PNG"),
        ({"model": "amazon.nova-canvas-v1:0", "size": "512x512"}, 1, (512, 512), "PNG"),
        ({"model": "stability.sd3-5-large-v1:0", "n": 2, "size": "1792x1024"}, 2, (1344, 768), "PNG"),
        ({"model": "us.stability.stable-image-ultra-v1:1", "output_format": "jpeg"}, 1, (1024, 1024), "JPEG"),
        ({"model": "stability.stable-diffusion-xl-v1", "size": "1024x1024"}, 1, (1024, 1024), "PNG"),
    ],
)
async def test_image_generation_returns_decodable_images(
    sim: Sim,
    request_: dict[str, Any],
    count: int,
    size: tuple[int, int],
    fmt: str,
) -> None:
    resp = await call(sim, {"prompt": "a red fox in snow", **request_}, kind=Kind.image)
    data = resp.body["data"]
    assert len(data) == count and resp.body["created"] > 0
    for item in data:
        img = decoded(item)
        assert (img.format, img.size) == (fmt, size)
    if count == 2:
        assert data[0]["b64_json"] != data[1]["b64_json"]  # distinct images, not one repeated


@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("amazon.titan-image-generator-v1", "content_filter"),  # Titan: a 400 ValidationException
        ("stability.sd3-large-v1:0", "content_filter"),  # SD3: finish_reasons
        ("stability.stable-diffusion-xl-v1", "content_filter"),  # SDXL: finishReason
    ],
)
async def test_image_content_filter(sim: Sim, model: str, code: str) -> None:
    with pytest.raises(ProviderError) as info:
        await call(sim, {"model": model, "prompt": "mmq-sim:block"}, kind=Kind.image)
    assert (info.value.code, info.value.retryable, info.value.provider) == (code, False, "bedrock")


# -------------------------------------------------------------------------- error mapping end to end
@pytest.mark.parametrize(
    ("fault", "status", "code", "retryable"),
    [
        (Fault(status=429), 429, "ThrottlingException", True),
        (Fault(status=503), 503, "ServiceUnavailableException", True),
        (Fault(status=500), 500, "InternalServerException", True),
        (
            Fault(status=400, code="ValidationException", message="bad input"),
            400,
            "ValidationException",
            False,
        ),
        (Fault(status=429, code="ModelNotReadyException"), 429, "ModelNotReadyException", True),
        (Fault(status=403), 403, "AccessDeniedException", False),
    ],
)
async def test_injected_faults_map_to_bedrock_errors(
    sim: Sim, fault: Fault, status: int, code: str, retryable: bool
) -> None:
    sim.faults.add(fault)
    with pytest.raises(ProviderError) as info:
        await call(sim, chat(user(text("hi"))))
    err = info.value
    assert (err.status, err.code, err.retryable) == (status, code, retryable)
    assert (await call(sim, chat(user(text("hi"))))).status == 200  # the fault was used up


async def test_rate_limit_is_throttling_without_retry_after(make_sim: Callable[..., Sim]) -> None:
    client = make_sim(requests_per_window=1, window_s=60)
    await call(client, chat(user(text("hi"))))
    with pytest.raises(ProviderError) as info:
        await call(client, chat(user(text("hi"))))
    err = info.value
    assert (err.status, err.code, err.retryable, err.retry_after_s) == (
        429,
        "ThrottlingException",
        True,
        None,
    )
    # a different key id signs, but the simulator knows one credential; the bearer key is its own identity
    other = Target("t", "bedrock", "http://sim", api_key="ABSK-2", headers={"x-mmq-aws-auth": "bearer"})
    assert (await call(client, chat(user(text("hi"))), other)).status == 200


# ------------------------------------------------------------------- the simulator's own validation
def block_image(fmt: str, data: bytes) -> dict[str, Any]:
    return {"image": {"format": fmt, "source": {"bytes": b64(data)}}}


def block_doc(name: str, data: bytes = PDF, fmt: str = "pdf") -> dict[str, Any]:
    return {"document": {"format": fmt, "name": name, "source": {"bytes": b64(data)}}}


RED = image((255, 0, 0))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            {"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]},
            "must start with a user message",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "a"}]},
                    {"role": "user", "content": [{"text": "b"}]},
                ]
            },
            "must alternate",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "?"}, block_image("jpeg", RED)]}]},
            "bytes are png",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "?"}, block_image("bmp", RED)]}]},
            "enum value set",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"text": "?"}, block_image("png", RED[:8] + bytes(4_000_000))],
                    }
                ]
            },
            "3.75 MB",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "?"}] + [block_image("png", RED)] * 21}]},
            "up to 20",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "?"}, block_doc("report.pdf")]}]},
            "document name",
        ),
        ({"messages": [{"role": "user", "content": [{"text": "?"}, block_doc("a  b")]}]}, "document name"),
        ({"messages": [{"role": "user", "content": [block_doc("report")]}]}, "text block"),
        ({"messages": [{"role": "user", "content": [{"text": "?"}, block_doc("r", b"hello")]}]}, "not a PDF"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "?"}] + [block_doc(f"d{i}") for i in range(6)]}
                ]
            },
            "up to 5",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "a"}]},
                    {"role": "assistant", "content": [block_image("png", RED)]},
                ]
            },
            "only allowed in user messages",
        ),
        ({"messages": [{"role": "user", "content": [{"text": " "}]}]}, "is blank"),
        (
            {
                "messages": [{"role": "user", "content": [{"text": "a"}]}],
                "inferenceConfig": {"temperature": 1.5},
            },
            "between 0 and 1",
        ),
        (
            {
                "messages": [{"role": "user", "content": [{"text": "a"}]}],
                "inferenceConfig": {"max_tokens": 5},
            },
            "Unknown field",
        ),
        ({"messages": [{"role": "user", "content": [{"text": "a"}]}], "modelId": "x"}, "Unknown field"),
    ],
)
async def test_simulator_validates_converse_like_bedrock(sim: Sim, body: dict[str, Any], match: str) -> None:
    resp = await sim.post(f"/model/{MODEL}/converse", json=body, headers={"authorization": "Bearer k"})
    assert resp.status_code == 400, resp.text
    assert resp.headers["x-amzn-errortype"].split(":")[0] == "ValidationException"
    assert match in resp.json()["message"]


@pytest.mark.parametrize(
    ("model", "body", "match"),
    [
        (
            "amazon.titan-image-generator-v1",
            {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "p"}, "x": 1},
            "extraneous key",
        ),
        (
            "amazon.titan-image-generator-v1",
            {"taskType": "INPAINTING", "textToImageParams": {"text": "p"}},
            "TEXT_IMAGE",
        ),
        (
            "amazon.titan-image-generator-v1",
            {
                "taskType": "TEXT_IMAGE",
                "textToImageParams": {"text": "p"},
                "imageGenerationConfig": {"numberOfImages": 6},
            },
            "range",
        ),
        (
            "amazon.titan-image-generator-v1",
            {
                "taskType": "TEXT_IMAGE",
                "textToImageParams": {"text": "p"},
                "imageGenerationConfig": {"width": 1000},
            },
            "divisible by 16",
        ),
        ("stability.sd3-large-v1:0", {"prompt": "p", "aspect_ratio": "7:3"}, "aspect_ratio"),
        ("stability.sd3-large-v1:0", {"prompt": ""}, "prompt"),
        (
            "stability.stable-diffusion-xl-v1",
            {"text_prompts": [{"text": "p"}], "width": 1000, "height": 1000},
            "SDXL size",
        ),
        ("meta.llama3-70b-instruct-v1:0", {"prompt": "p"}, "image families"),
    ],
)
async def test_simulator_validates_invoke_bodies(
    sim: Sim, model: str, body: dict[str, Any], match: str
) -> None:
    resp = await sim.post(f"/model/{model}/invoke", json=body, headers={"authorization": "Bearer k"})
    assert resp.status_code == 400 and resp.headers["x-amzn-errortype"].startswith("ValidationException")
    assert match in resp.json()["message"]


async def test_converse_refuses_image_models(sim: Sim) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "a"}]}]}
    resp = await sim.post(
        "/model/amazon.titan-image-generator-v1/converse", json=body, headers={"authorization": "Bearer k"}
    )
    assert resp.status_code == 400 and "doesn't support the model" in resp.json()["message"]


async def test_production_transport_over_real_http() -> None:
    """The worker's aiohttp transport re-encodes the path (`%3A` goes out as `:`); the signature must still
    verify, for a model id and for an inference-profile ARN (`%2F` stays encoded)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(SimulatorConfig()), log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):  # bounded: a server that never starts fails the test, not the run
        if server.started:
            break
        await asyncio.sleep(0.01)
    client = make_client(timeout_s=30)
    try:
        target = Target("b", "bedrock", f"http://127.0.0.1:{sock.getsockname()[1]}", api_key=SIM_KEY)
        for model in (MODEL, PROFILE_ARN):
            request = chat(
                user(text("Colour?"), image_part(data_url(image((20, 40, 200)), "image/png"))), model=model
            )
            resp = await call(client, request, target)
            assert "mostly blue" in resp.body["choices"][0]["message"]["content"]
        titan = {"model": "amazon.titan-image-generator-v2:0", "prompt": "a red lamp"}
        assert decoded((await call(client, titan, target, Kind.image)).body["data"][0]).format == "PNG"
    finally:
        await client.aclose()
        server.should_exit = True
        await task
        sock.close()
