"""Azure OpenAI and Groq batches on the simulator: the OpenAI wire with each provider's own rules."""

from __future__ import annotations

import base64
import io

import httpx
from openai import AsyncAzureOpenAI, AsyncOpenAI
from openai.types import Batch

from mmq.simulator import encode_speech_wav
from tests.mmq.simulator.batch_helpers import (
    chat_body,
    chat_lines,
    jsonl,
    parse_jsonl,
    png_data_url,
    wait_until,
)

TERMINAL = {"completed", "failed", "expired", "cancelled"}
FAST = {"batch_validate_s": 0, "batch_complete_s": 0.3, "batch_finalize_s": 0.05}
AZURE_HOST = "http://my-res.openai.azure.com"


def azure_client(sim: httpx.AsyncClient) -> AsyncAzureOpenAI:
    """The SDK's Azure client: /openai/files?api-version=… and /openai/batches?api-version=…, api-key auth."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url=AZURE_HOST)
    return AsyncAzureOpenAI(
        azure_endpoint=AZURE_HOST, api_key="az-key", api_version="2024-10-21", http_client=http
    )


def raw(sim: httpx.AsyncClient, base: str, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url=base, headers=headers)


def deployment_lines(n: int, deployment: str = "gpt-4o-batch") -> list[dict[str, object]]:
    return chat_lines(n, model=deployment)


async def upload_and_create(client: AsyncOpenAI, lines: list[dict[str, object]], **create: object) -> Batch:
    file = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    return await client.batches.create(
        input_file_id=file.id,
        endpoint=str(lines[0]["url"]),
        completion_window=create.pop("completion_window", "24h"),  # type: ignore[arg-type]
        **create,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------------- Azure
async def test_azure_round_trip_with_the_sdk_azure_client(make_sim) -> None:
    sim = make_sim(**FAST)
    client = azure_client(sim)
    lines = deployment_lines(3)
    lines[2]["body"] = chat_body("mmq-sim:block this", "gpt-4o-batch")  # Azure's content filter refuses it
    batch = await upload_and_create(client, lines, metadata={"mmq_batch": "az-1"})
    done = await wait_until(lambda: client.batches.retrieve(batch.id), lambda b: b.status in TERMINAL)
    assert done.status == "completed" and done.metadata == {"mmq_batch": "az-1"}
    ok = parse_jsonl((await client.files.content(done.output_file_id)).text)  # type: ignore[arg-type]
    bad = parse_jsonl((await client.files.content(done.error_file_id)).text)  # type: ignore[arg-type]
    assert len(ok) == 2 and ok[0]["response"]["body"]["prompt_filter_results"]
    (filtered,) = bad
    assert filtered["response"]["status_code"] == 400
    assert filtered["response"]["body"]["error"]["code"] == "content_filter"
    assert sim.app.state.stats.batches_created == {"azure": 1}
    await client.close()


async def test_azure_v1_paths_share_openai_v1_with_groq_by_header(make_sim) -> None:
    sim = make_sim(**FAST)
    azure = raw(sim, "http://sim/openai/v1", **{"api-key": "az-key"})
    file = await azure.post(
        "/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", jsonl(deployment_lines(2)))}
    )
    assert file.status_code == 200
    created = await azure.post(
        "/batches",
        json={
            "input_file_id": file.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert created.status_code == 200
    # the file is Azure's: Groq (same path, bearer auth, no api-key) does not see it
    groq = raw(sim, "http://sim/openai/v1", Authorization="Bearer gsk")
    missing = await groq.get(f"/files/{file.json()['id']}")
    assert missing.status_code == 404 and "param" in missing.json()["error"]
    assert (await azure.get("/batches", params={"api-version": "2024-10-21"})).status_code == 400
    unauthorised = await raw(sim, "http://sim/openai/v1", **{"api-key": ""}).get("/batches")
    assert unauthorised.status_code == 401 and unauthorised.json()["error"]["code"] == "401"  # Azure's shape
    await azure.aclose()
    await groq.aclose()


async def test_azure_rules(make_sim) -> None:
    sim = make_sim(**{**FAST, "batch_validate_s": 0.5}, batch_expire_s=0.5)  # create sees "Validating"
    legacy = raw(sim, "http://sim/openai", **{"api-key": "az-key"})
    version = {"api-version": "2024-10-21"}

    async def create(data: bytes, window: str = "24h") -> dict[str, object]:
        up = await legacy.post(
            "/files", params=version, data={"purpose": "batch"}, files={"file": ("f.jsonl", data)}
        )
        resp = await legacy.post(
            "/batches",
            params=version,
            json={
                "input_file_id": up.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": window,
            },
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def ended(batch: dict[str, object]) -> dict[str, object]:
        async def get() -> dict[str, object]:
            return (await legacy.get(f"/batches/{batch['id']}", params=version)).json()

        return await wait_until(get, lambda b: b["status"] in TERMINAL)

    first = await create(jsonl(deployment_lines(2)))
    assert first["status"] == "Validating"  # dated API versions echo it capitalised
    done = await ended(first)
    assert done["status"] == "completed"  # Azure never expires a batch, whatever batch_expire_s says
    error_file = await legacy.get(f"/files/{done['error_file_id']}/content", params=version)
    assert error_file.status_code == 200 and error_file.content == b""  # always there, even empty

    mixed = await ended(await create(jsonl([*deployment_lines(1), *deployment_lines(1, "other-deployment")])))
    assert mixed["status"] == "failed" and mixed["errors"]["data"][0]["code"] == "model_mismatch"
    assert "deployment" in mixed["errors"]["data"][0]["message"]
    window = await ended(await create(jsonl(deployment_lines(1)), window="48h"))
    assert window["status"] == "failed" and window["errors"]["data"][0]["param"] == "completion_window"
    bom = await ended(await create(b"\xef\xbb\xbf" + jsonl(deployment_lines(1))))
    assert bom["status"] == "failed" and "deployment name" in bom["errors"]["data"][0]["message"]

    no_version = await legacy.get("/batches")
    assert no_version.status_code == 404 and no_version.json() == {
        "error": {"code": "404", "message": "Resource not found"}
    }
    no_key = await raw(sim, "http://sim/openai").get("/batches", params=version)
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "401"
    await legacy.aclose()


# -------------------------------------------------------------------------------------------- Groq
async def test_groq_chat_and_audio_lines(make_sim) -> None:
    sim = make_sim(**FAST)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://sim")
    client = AsyncOpenAI(base_url="http://sim/openai/v1", api_key="gsk-test", http_client=http)
    chat = chat_lines(2, model="llama-3.2-90b-vision")
    chat[1]["body"] = chat_body(
        "and this?", "meta-llama/llama-4-scout", image=png_data_url()
    )  # models may differ
    chat.append(
        {
            **chat_lines(1, prefix="many")[0],
            "body": {
                **chat_body("x"),
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": png_data_url()}}] * 6,
                    }
                ],
            },
        }
    )
    batch = await upload_and_create(client, chat, completion_window="7d")
    assert batch.expires_at == batch.created_at + 7 * 86_400
    done = await wait_until(lambda: client.batches.retrieve(batch.id), lambda b: b.status in TERMINAL)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
    (too_many,) = parse_jsonl((await client.files.content(done.error_file_id)).text)  # type: ignore[arg-type]
    assert too_many["response"]["status_code"] == 400
    assert "code" not in too_many["response"]["body"]["error"]  # Groq drops null fields

    wav = base64.b64encode(encode_speech_wav("hello batch")).decode()
    audio = [
        {
            "custom_id": "rec-1",
            "method": "POST",
            "url": "/v1/audio/transcriptions",
            "body": {
                "model": "whisper-large-v3-turbo",
                "url": f"data:audio/wav;base64,{wav}",
                "language": "en",
            },
        },
        {
            "custom_id": "rec-2",
            "method": "POST",
            "url": "/v1/audio/transcriptions",
            "body": {"model": "whisper-1", "url": f"data:audio/wav;base64,{wav}"},
        },
    ]
    batch = await upload_and_create(client, audio)
    done = await wait_until(lambda: client.batches.retrieve(batch.id), lambda b: b.status in TERMINAL)
    (ok,) = parse_jsonl((await client.files.content(done.output_file_id)).text)  # type: ignore[arg-type]
    assert ok["custom_id"] == "rec-1" and ok["response"]["body"]["text"] == "hello batch"
    (bad,) = parse_jsonl((await client.files.content(done.error_file_id)).text)  # type: ignore[arg-type]
    assert bad["response"]["status_code"] == 404  # Groq serves whisper-large-v3(-turbo) only
    assert sim.app.state.stats.batch_lines_billed == {"groq": 3}
    await client.close()


async def test_groq_create_rules(make_sim) -> None:
    sim = make_sim(**FAST)
    groq = raw(sim, "http://sim/openai/v1", Authorization="Bearer gsk")
    up = await groq.post(
        "/files", data={"purpose": "batch"}, files={"file": ("f.jsonl", jsonl(chat_lines(1)))}
    )
    base = {"input_file_id": up.json()["id"], "endpoint": "/v1/chat/completions"}
    for window in ("8d", "12h", "soon"):
        resp = await groq.post("/batches", json={**base, "completion_window": window})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "completion_window"
        assert "code" in resp.json()["error"] and None not in resp.json()["error"].values()
    assert (await groq.post("/batches", json={**base, "completion_window": "36h"})).status_code == 200
    no_key = await raw(sim, "http://sim/openai/v1").get("/batches")
    assert no_key.status_code == 401 and no_key.json()["error"]["message"] == "Invalid API Key"
    await groq.aclose()
