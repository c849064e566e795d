"""The OpenAI-format batch clients (OpenAI, Azure OpenAI, Groq) against the in-process simulator: lines
built from the realtime adapters' own translation, create → poll → results, each answer read by the
realtime adapter's parse."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mmq.errors import ProviderError
from mmq.request_models import Kind
from tests.worker.batch_tier.conftest import FAST
from tests.worker.batch_tier.helpers import chat_request, ended, parsed, png_data_url, results, wait_until
from worker.batch_tier.apis import NATIVE, native_for
from worker.batch_tier.apis import openai as openai_api
from worker.batch_tier.apis.openai import AzureBatches, GroqBatches, OpenAIBatches, line_result
from worker.providers.azure import AzureOpenAIAdapter
from worker.providers.base import Target
from worker.providers.groq import GroqAdapter
from worker.providers.openai import OpenAIAdapter

TARGET = Target(name="sim", provider="openai", base_url="http://sim/v1", api_key="sk-test")
ADAPTER = OpenAIAdapter()
API = OpenAIBatches()
MODEL = "gpt-4o-mini"


def lines_for(
    requests: dict[str, dict[str, Any]], kind: Kind = Kind.chat, adapter=ADAPTER, api=API, target=TARGET
) -> list[dict[str, Any]]:
    return [api.line(job, kind, adapter.translate(target, kind, req)) for job, req in requests.items()]


def chats(n: int, model: str = MODEL, prefix: str = "job") -> dict[str, dict[str, Any]]:
    return {f"{prefix}-{i}": chat_request(f"line {i}", model) for i in range(n)}


async def test_registry_names_the_realtime_providers() -> None:
    assert isinstance(native_for("openai"), OpenAIBatches)
    assert isinstance(native_for("azure-openai"), AzureBatches)
    assert isinstance(native_for("groq"), GroqBatches)
    assert native_for("stability") is None and native_for("deepgram") is None
    for name, api in NATIVE.items():
        assert api.provider == name


def test_a_line_wraps_the_realtime_body() -> None:
    request = chat_request("hi", MODEL)
    wire = ADAPTER.translate(TARGET, Kind.chat, request)
    assert API.line("job-1", Kind.chat, wire) == {
        "custom_id": "job-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": wire.json,
    }
    image = {"model": "gpt-image-1", "prompt": "a teapot", "size": "64x64"}
    line = API.line("job-2", Kind.image, ADAPTER.translate(TARGET, Kind.image, image))
    assert line["url"] == "/v1/images/generations" and line["body"] == image
    with pytest.raises(ValueError):
        API.line(
            "job-3", Kind.speech, ADAPTER.translate(TARGET, Kind.speech, {"model": "tts-1", "input": "x"})
        )


async def test_round_trip_parses_like_a_realtime_answer(make_sim) -> None:
    client, app = make_sim(**{**FAST, "batch_validate_s": 0.5})
    requests = chats(3)
    requests["job-img"] = chat_request("what colour?", MODEL, image=png_data_url((20, 40, 200)))
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(requests), {"mmq_pack": "p-1"})
    assert batch.id.startswith("batch_") and batch.state == "validating"
    assert batch.raw_status == "validating" and batch.metadata == {"mmq_pack": "p-1"}

    done = await ended(API, client, TARGET, batch.id)
    assert (done.state, done.raw_status) == ("ended", "completed")
    assert (done.total, done.done, done.failed) == (4, 4, 0) and done.error is None
    got = await results(API, client, TARGET, done)
    assert sorted(got) == sorted(requests)
    for job, line in got.items():
        assert line.ok and line.status_code == 200 and not line.retryable
        answer = parsed(ADAPTER, Kind.chat, requests[job], line)
        assert answer.body is not None and answer.body["object"] == "chat.completion"
        assert answer.usage is not None and answer.usage["total_tokens"] > 0
    content = parsed(ADAPTER, Kind.chat, requests["job-img"], got["job-img"]).body["choices"][0]  # type: ignore[index]
    assert "mostly blue" in content["message"]["content"]
    # what came back is what the realtime endpoint answers and bills for the same body
    realtime = await client.post(
        "http://sim/v1/chat/completions",
        json=requests["job-img"],
        headers={"Authorization": "Bearer sk-test"},
    )
    assert got["job-img"].body["usage"] == realtime.json()["usage"]
    assert app.state.stats.batch_lines_billed == {"openai": 4}  # type: ignore[attr-defined]


async def test_image_generation_lines(make_sim) -> None:
    client, _ = make_sim(**FAST)
    requests = {"art-1": {"model": "gpt-image-1", "prompt": "a teapot", "size": "64x64"}}
    lines = lines_for(requests, Kind.image)
    batch = await API.create(client, TARGET, Kind.image, "gpt-image-1", lines, {"mmq_pack": "p-img"})
    got = await results(API, client, TARGET, await ended(API, client, TARGET, batch.id))
    answer = parsed(ADAPTER, Kind.image, requests["art-1"], got["art-1"])
    assert answer.body is not None and answer.body["data"][0]["b64_json"]


async def test_partial_failures_are_classified(make_sim) -> None:
    client, _ = make_sim(**FAST, batch_fail_rate=0.3)
    requests = chats(10)
    lines = lines_for(requests)
    lines[9]["body"] = {"model": MODEL, "messages": []}  # the realtime handler refuses it: a 400
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines, {"mmq_pack": "p-2"})
    done = await ended(API, client, TARGET, batch.id)
    assert done.state == "ended" and done.total == 10
    got = await results(API, client, TARGET, done)
    assert sorted(got) == sorted(requests)
    ok = [line for line in got.values() if line.ok]
    bad = [line for line in got.values() if not line.ok]
    assert (done.done, done.failed) == (len(ok), len(bad)) and 3 <= len(bad) <= 4
    for line in bad:
        assert line.status_code in (400, 500)
        assert line.retryable is (line.status_code == 500), line
        assert line.error_message
    if got["job-9"].status_code == 400:
        assert got["job-9"].error_code == "empty_array" and not got["job-9"].retryable


async def test_cancel_mid_way_keeps_what_finished_and_the_rest_may_run_again(make_sim) -> None:
    client, app = make_sim(batch_validate_s=0, batch_complete_s=20, batch_cancel_s=0)
    requests = chats(10)
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(requests), {"mmq_pack": "p-3"})
    running = await wait_until(lambda: API.get(client, TARGET, batch.id), lambda b: (b.done or 0) >= 1)
    assert running.state == "running" and running.raw_status == "in_progress"
    cancelling = await API.cancel(client, TARGET, batch.id)
    assert cancelling.state in ("cancelling", "ended")
    done = await ended(API, client, TARGET, batch.id)
    assert (done.state, done.raw_status) == ("ended", "cancelled")
    got = await results(API, client, TARGET, done)
    ok = {job for job, line in got.items() if line.ok}
    unrun = {job for job, line in got.items() if not line.ok}
    assert ok and unrun and ok | unrun == set(requests)
    assert all(got[job].retryable and got[job].error_code == "batch_cancelled" for job in unrun)
    assert app.state.stats.batch_lines_billed == {"openai": len(ok)}  # type: ignore[attr-defined]
    # cancelling again, once ended, reads the batch instead of failing
    again = await API.cancel(client, TARGET, batch.id)
    assert again.state == "ended"


async def test_expired_lines_may_run_again(make_sim) -> None:
    client, _ = make_sim(batch_validate_s=0, batch_complete_s=10, batch_expire_s=2)
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(chats(8)), {"mmq_pack": "p-4"})
    done = await ended(API, client, TARGET, batch.id)
    assert (done.state, done.raw_status) == ("ended", "expired")
    got = await results(API, client, TARGET, done)
    assert len(got) == 8
    unrun = [line for line in got.values() if not line.ok]
    assert unrun and all(line.retryable and line.error_code == "batch_expired" for line in unrun)


async def test_found_again_by_metadata_after_losing_the_id(make_sim, monkeypatch) -> None:
    monkeypatch.setattr(openai_api, "PAGE", 2)  # make `find` page through the list
    client, _ = make_sim(**FAST)
    made = [
        await API.create(client, TARGET, Kind.chat, MODEL, lines_for(chats(1)), {"mmq_pack": f"p-{i}"})
        for i in range(5)
    ]
    found = await API.find(client, TARGET, "mmq_pack", "p-0")  # the oldest: on the last page
    assert found is not None and found.id == made[0].id and found.metadata == {"mmq_pack": "p-0"}
    found = await API.find(client, TARGET, "mmq_pack", "p-3")
    assert found is not None and found.id == made[3].id
    assert await API.find(client, TARGET, "mmq_pack", "p-nope") is None
    assert await API.find(client, TARGET, "other", "p-1") is None
    got = await results(API, client, TARGET, await ended(API, client, TARGET, found.id))
    assert [line.ok for line in got.values()] == [True]


async def test_two_models_in_one_file_fail_the_batch(make_sim) -> None:
    client, app = make_sim(**FAST)
    requests = {**chats(1), **chats(1, model="gpt-4o", prefix="other")}
    batch = await API.create(client, TARGET, Kind.chat, MODEL, lines_for(requests), {"mmq_pack": "p-5"})
    done = await ended(API, client, TARGET, batch.id)
    assert (done.state, done.raw_status) == ("failed", "failed")
    assert done.error is not None and "model_mismatch" in done.error and "(line 2)" in done.error
    assert await results(API, client, TARGET, done) == {}
    assert app.state.stats.batch_lines_billed == {}  # type: ignore[attr-defined]


async def test_refusals_raise_provider_errors(make_sim) -> None:
    client, _ = make_sim(**FAST)
    keyless = Target(name="sim", provider="openai", base_url="http://sim/v1")
    with pytest.raises(ProviderError) as refused:
        await API.create(client, keyless, Kind.chat, MODEL, lines_for(chats(1)), {})
    assert refused.value.status == 401 and not refused.value.retryable
    assert refused.value.code == "invalid_api_key" and refused.value.provider == "openai"
    with pytest.raises(ProviderError) as missing:
        await API.get(client, TARGET, "batch_nope")
    assert missing.value.status == 404
    with pytest.raises(ProviderError, match="not a batch id"):
        await API.get(client, TARGET, "../files/x")
    bad_metadata = {f"k{i}": "v" for i in range(17)}  # over OpenAI's 16 pairs: the create is refused
    with pytest.raises(ProviderError) as refused:
        await API.create(client, TARGET, Kind.chat, MODEL, lines_for(chats(1)), bad_metadata)
    assert refused.value.status == 400


async def test_provider_errors_are_retryable_for_429_and_5xx() -> None:
    answers = iter(
        [
            httpx.Response(429, json={"error": {"message": "slow down", "code": None}}),
            httpx.Response(503, text="upstream down"),
            httpx.Response(200, json={"id": "file-1"}),
            httpx.Response(500, json={"error": {"message": "boom", "type": "server_error"}}),
            httpx.Response(200, json={"id": "file-2"}),
            httpx.Response(400, json={"error": {"message": "no", "code": "invalid_value"}}),
            httpx.Response(200, json={"id": "file-2", "deleted": True}),
        ]
    )
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return next(answers)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    for _ in range(2):
        with pytest.raises(ProviderError) as err:
            await API.get(client, TARGET, "batch_1")
        assert err.value.retryable and err.value.status in (429, 503)
    with pytest.raises(ProviderError) as err:
        await API.create(client, TARGET, Kind.chat, MODEL, [{"custom_id": "a"}], {"mmq_pack": "p"})
    assert err.value.retryable and err.value.status == 500
    with pytest.raises(ProviderError) as err:
        await API.create(client, TARGET, Kind.chat, MODEL, [{"custom_id": "a"}], {"mmq_pack": "p"})
    assert not err.value.retryable and err.value.status == 400 and err.value.code == "invalid_value"
    # every call went to the target's base URL, with its key
    assert {str(r.url).split("?")[0] for r in sent} <= {
        "http://sim/v1/batches/batch_1",
        "http://sim/v1/files",
        "http://sim/v1/batches",
        "http://sim/v1/files/file-2",
    }
    assert all(r.headers["authorization"] == "Bearer sk-test" for r in sent)
    upload = sent[2].content
    assert b'name="purpose"\r\n\r\nbatch\r\n' in upload
    assert b'name="expires_after[seconds]"\r\n\r\n604800\r\n' in upload
    created = json.loads(sent[3].content)
    assert created == {
        "input_file_id": "file-1",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {"mmq_pack": "p"},
    }
    # the upload of a create that was surely refused (a 4xx) is deleted; after a 5xx it is kept, as the
    # batch may exist after all
    assert [(r.method, r.url.path) for r in sent[4:]] == [
        ("POST", "/v1/files"),
        ("POST", "/v1/batches"),
        ("DELETE", "/v1/files/file-2"),
    ]
    await client.aclose()


def test_line_results_from_output_and_error_lines() -> None:
    ok = line_result({"custom_id": "a", "response": {"status_code": 200, "body": {"choices": []}}})
    assert ok is not None and ok.ok and ok.body == {"choices": []}
    for status, retryable in ((400, False), (404, False), (429, True), (500, True), (503, True), (0, True)):
        got = line_result(
            {"custom_id": "b", "response": {"status_code": status, "body": {"error": {"message": "m"}}}}
        )
        assert got is not None and not got.ok and got.retryable is retryable, status
    for code, retryable in (("batch_expired", True), ("batch_cancelled", True), ("weird", False)):
        got = line_result({"custom_id": "c", "response": None, "error": {"code": code, "message": "m"}})
        assert got is not None and got.retryable is retryable and got.error_code == code
    assert line_result({"response": None}) is None


# --------------------------------------------------------------------------------------- Azure, Groq
async def test_azure_round_trip_on_the_v1_api_with_api_key(make_sim) -> None:
    client, _ = make_sim(**FAST)
    target = Target(
        name="az",
        provider="azure-openai",
        base_url="http://sim/openai/deployments/gpt-4o-batch",  # any form the realtime target uses
        api_key="az-key",
        headers={"x-mmq-azure-api-version": "2024-10-21"},
    )
    api, adapter = AzureBatches(), AzureOpenAIAdapter()
    assert api.api_root(target) == "http://sim/openai/v1"
    assert api.headers(target) == {"api-key": "az-key"}  # the mmq header is consumed, not forwarded
    requests = chats(2, model="gpt-4o-batch")  # the deployment, on every line
    requests["job-f"] = chat_request("mmq-sim:block this", "gpt-4o-batch")  # Azure's content filter
    lines = lines_for(requests, adapter=adapter, api=api, target=target)
    batch = await api.create(client, target, Kind.chat, "gpt-4o-batch", lines, {"mmq_pack": "az-1"})
    done = await ended(api, client, target, batch.id)
    assert done.state == "ended" and done.metadata == {"mmq_pack": "az-1"}
    got = await results(api, client, target, done)
    assert not got["job-f"].ok and got["job-f"].error_code == "content_filter" and not got["job-f"].retryable
    answer = parsed(adapter, Kind.chat, requests["job-0"], got["job-0"])
    assert answer.usage is not None and answer.usage["total_tokens"] > 0
    found = await api.find(client, target, "mmq_pack", "az-1")
    assert found is not None and found.id == batch.id


async def test_groq_round_trip_mixed_models_and_window(make_sim) -> None:
    client, _ = make_sim(**FAST)
    target = Target(name="groq", provider="groq", base_url="http://sim", api_key="gsk-test")
    api, adapter = GroqBatches(), GroqAdapter()
    assert api.api_root(target) == "http://sim/openai/v1"
    assert api.completion_window(3600) == "24h" and api.completion_window(36 * 3600) == "36h"
    assert api.completion_window(30 * 86400) == "168h"
    requests = {**chats(1, model="llama-3.2-90b-vision"), **chats(1, "meta-llama/llama-4-scout", "m")}
    lines = lines_for(requests, adapter=adapter, api=api, target=target)
    batch = await api.create(
        client, target, Kind.chat, "llama-3.2-90b-vision", lines, {"mmq_pack": "g-1"}, window_s=36 * 3600
    )
    done = await ended(api, client, target, batch.id)
    assert done.state == "ended"
    got = await results(api, client, target, done)
    assert sorted(got) == sorted(requests)
    for job, line in got.items():
        answer = parsed(adapter, Kind.chat, requests[job], line)
        assert answer.usage is not None and answer.usage["total_tokens"] > 0


async def test_groq_batches_whisper_with_the_audio_inline_and_answers_as_realtime(make_sim) -> None:
    from mmq.simulator import encode_speech_wav
    from worker.providers.base import AudioInput

    client, _ = make_sim(**FAST)
    target = Target(name="groq", provider="groq", base_url="http://sim", api_key="gsk-test")
    api, adapter = GroqBatches(), GroqAdapter()
    wav = encode_speech_wav("the blue chair ships today")
    audio = AudioInput(data=wav, content_type="audio/wav", filename="clip.wav")
    requests = {
        "stt-json": {"model": "whisper-large-v3-turbo", "file": "x", "temperature": 0.2},
        "stt-text": {"model": "whisper-large-v3-turbo", "file": "x", "response_format": "text"},
        "stt-words": {
            "model": "whisper-large-v3-turbo",
            "file": "x",
            "response_format": "verbose_json",
            "timestamp_granularities": ["word", "segment"],
        },
    }
    lines = [
        api.line(job, Kind.transcription, adapter.translate(target, Kind.transcription, req, audio))
        for job, req in requests.items()
    ]
    body = lines[0]["body"]
    # no upload in a batch line: the audio rides as a data URL, the form's fields keep their JSON types
    assert lines[0]["url"] == "/v1/audio/transcriptions" and body["url"].startswith("data:audio/wav;base64,")
    assert body["temperature"] == 0.2 and "file" not in body
    assert lines[2]["body"]["timestamp_granularities"] == ["word", "segment"]
    batch = await api.create(
        client, target, Kind.transcription, "whisper-large-v3-turbo", lines, {"mmq_pack": "g-stt"}
    )
    done = await ended(api, client, target, batch.id)
    assert done.state == "ended"
    got = await results(api, client, target, done)
    assert sorted(got) == sorted(requests)
    as_json = parsed(adapter, Kind.transcription, requests["stt-json"], got["stt-json"])
    as_text = parsed(adapter, Kind.transcription, requests["stt-text"], got["stt-text"])
    words = parsed(adapter, Kind.transcription, requests["stt-words"], got["stt-words"])
    assert "blue chair" in as_json.body["text"] and "blue chair" in (as_text.text or "")
    assert words.body["words"] and words.body["segments"]
