"""Every provider and kind in the table: one OpenAI-shaped job each, through the worker's job function
over real HTTP to a simulator process speaking that provider's dialect, back in the OpenAI shape."""

from __future__ import annotations

import base64
import json

import pytest

from mmq.contract import JobStatus
from mmq.simulator.speech import encode_speech_wav
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import _spawn, _stop, free_port, wait_http
from worker.credentials import VirtualKeys
from worker.pipeline import run_job
from worker.providers import REGISTRY

CHAT_MODELS = {
    "openai": "gpt-4o-mini",
    "openai-compatible": "llava",
    "azure-openai": "my-gpt4o-deployment",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "vertex": "gemini-2.5-flash",
    "vertex-anthropic": "claude-sonnet-4-5@20250929",
    "groq": "meta-llama/llama-4-scout-17b-16e-instruct",
    "bedrock": "anthropic.claude-3-5-sonnet-20241022-v2:0",
}
IMAGE_MODELS = {
    "openai": "gpt-image-1",
    "azure-openai": "my-image-deployment",
    "gemini": "imagen-4.0-generate-001",
    "vertex": "imagen-4.0-generate-001",
    "stability": "stable-image-core",
    "bedrock": "amazon.titan-image-generator-v2:0",
}
SPEECH_MODELS = {"openai": "tts-1", "azure-openai": "tts", "elevenlabs": "tts-1"}
STT_MODELS = {
    "openai": "whisper-1",
    "azure-openai": "whisper",
    "groq": "whisper-large-v3",
    "deepgram": "nova-3",
}
TRANSLATE_MODELS = {"openai": "whisper-1", "azure-openai": "whisper", "groq": "whisper-large-v3"}

SPOKEN = "the blue chair ships on monday"
AUDIO = "data:audio/wav;base64," + base64.b64encode(encode_speech_wav(SPOKEN)).decode()


def _cases() -> list[tuple[str, str, dict]]:
    out = []
    for p, m in CHAT_MODELS.items():
        out.append((p, "/v1/chat/completions", {**chat_body(data_url(png_bytes((20, 40, 200)))), "model": m}))
    for p, m in IMAGE_MODELS.items():
        out.append((p, "/v1/images/generations", {"model": m, "prompt": "a red lamp", "n": 1}))
    for p, m in SPEECH_MODELS.items():
        out.append((p, "/v1/audio/speech", {"model": m, "input": SPOKEN, "voice": "alloy"}))
    for p, m in STT_MODELS.items():
        out.append((p, "/v1/audio/transcriptions", {"model": m, "file": AUDIO}))
    for p, m in TRANSLATE_MODELS.items():
        out.append((p, "/v1/audio/translations", {"model": m, "file": AUDIO}))
    return [c for c in out if c[0] in REGISTRY]


@pytest.fixture(scope="module")
def dialects(tmp_path_factory):
    """One simulator process for the module: it speaks every dialect at once."""
    port = free_port()
    log = tmp_path_factory.mktemp("sim") / "simulator.log"
    proc = _spawn(["simulate", "--port", str(port), "--seed", "3"], {}, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _secrets(sim_root: str, provider: str) -> dict:
    entry: dict = {"api_key": "sk-sim-provider", "base_url": sim_root}
    if provider == "openai" or provider == "openai-compatible":
        entry["base_url"] = sim_root + "/v1"
    if provider in ("vertex", "vertex-anthropic"):
        entry["headers"] = {"x-mmq-vertex-project": "sim-project", "x-mmq-vertex-location": "us-central1"}
    if provider == "bedrock":
        entry["api_key"] = "AKIDSIM:simsecret"
    return entry


@pytest.mark.parametrize(("provider", "url", "body"), _cases(), ids=lambda v: v if isinstance(v, str) else "")
async def test_one_openai_shaped_job_per_provider_and_kind(provider, url, body, runtime, dialects):
    sim_root = dialects
    rt, producer = runtime(sim_root + "/v1")
    keys = VirtualKeys()
    keys.file_entries = {"sim": _secrets(sim_root, provider)}
    rt.keys = keys
    job = await producer.submit_job(
        url, body, tenant="t", config={"provider": provider, "virtual_key": "sim"}
    )
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.succeeded, (rec.error, rec.attempts)
    assert [a.status for a in rec.attempts] == [200]
    result = json.loads(await rt.storage.get(rec.result.body_key)) if rec.result.body_key else None
    if url.endswith("chat/completions"):
        assert result["object"] == "chat.completion"
        assert "blue" in result["choices"][0]["message"]["content"].lower()
    elif url.endswith("images/generations"):
        [file] = rec.result.files
        assert file.content_type.startswith("image/") and file.bytes > 100
    elif url.endswith("audio/speech"):
        [file] = rec.result.files
        assert file.content_type.startswith("audio/")
    elif url.endswith("transcriptions"):
        assert result["text"].strip().lower().rstrip(".") == SPOKEN
    else:  # the simulator marks a translation as one, then gives the decoded speech
        assert result["text"].strip().lower().rstrip(".").endswith(SPOKEN)


async def test_per_job_downscaling_reaches_the_provider_and_shows_in_usage(runtime, dialects):
    rt, producer = runtime(dialects + "/v1")
    body = chat_body(data_url(png_bytes((200, 30, 30), (1200, 900))))
    small = await producer.submit_job("/v1/chat/completions", body, tenant="t", media={"max_side": 400})
    full = await producer.submit_job("/v1/chat/completions", body, tenant="t")
    for job in (small, full):
        await run_job({"mmq": rt}, job.id)
    answers = {}
    for job in (small, full):
        rec = await rt.records.get_job(job.id)
        assert rec.status is JobStatus.succeeded
        answers[job.id] = json.loads(await rt.storage.get(rec.result.body_key))["choices"][0]["message"][
            "content"
        ]
    assert "400x300" in answers[small.id] and "1200x900" in answers[full.id]
    media = (await rt.records.get_job(small.id)).usage["media"]
    assert media["downscaled"] == 1 and media["bytes_out"] < media["bytes_in"]


async def test_bad_media_options_are_refused_at_submit(runtime, dialects):
    from producer.options import LineError

    _, producer = runtime(dialects + "/v1")
    with pytest.raises(LineError, match="max_side"):
        await producer.submit_job(
            "/v1/chat/completions",
            chat_body(data_url(png_bytes((1, 2, 3)))),
            tenant="t",
            media={"max_side": 0},
        )


async def test_every_provider_and_kind_through_a_real_arq_worker(redis_url, dialects, tmp_path, storage_url):
    """The same table, as a user runs it: jobs in Redis, an arq worker resolving virtual keys from its
    secrets file, the simulator speaking each dialect over HTTP."""
    from mmq.connections import connect
    from mmq.records import Records
    from mmq.settings import Settings
    from mmq.storage import open_storage
    from producer.submit import Producer
    from worker.worker import build_worker

    cases = _cases()
    secrets = {f"sim-{p}": _secrets(dialects, p) for p, _, _ in cases}
    (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    settings = Settings(
        redis_url=redis_url,
        storage_url=storage_url,
        secrets_file=tmp_path / "secrets.json",
        openai_base_url="http://127.0.0.1:9/v1",  # nothing may go to the default target
        poll_delay_s=0.05,
    )
    redis = connect(redis_url)
    try:
        producer = Producer(redis, open_storage(settings.storage_url), settings)
        jobs = [
            await producer.submit_job(
                url, body, tenant="t", config={"provider": p, "virtual_key": f"sim-{p}"}
            )
            for p, url, body in cases
        ]
        worker = build_worker(settings, redis_pool=redis, burst=True, handle_signals=False)
        await worker.main()
        await worker.close()
        records = Records(redis)
        done = {(p, url): await records.get_job(j.id) for (p, url, _), j in zip(cases, jobs, strict=True)}
        failed = {k: (r.error, r.attempts) for k, r in done.items() if r.status is not JobStatus.succeeded}
        assert not failed
        assert len(done) >= 24
    finally:
        await redis.aclose()


@pytest.fixture
async def image_host():
    from aiohttp import web

    png = png_bytes((20, 40, 200), (80, 60))

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    app = web.Application()
    app.router.add_get("/chair.png", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/chair.png"
    await runner.cleanup()


async def test_a_url_image_is_fetched_for_a_bytes_only_provider_from_allowed_hosts_only(
    runtime,
    dialects,
    image_host,
    monkeypatch,
):
    config = {"provider": "gemini", "virtual_key": "sim"}
    body = {**chat_body(image_host), "model": "gemini-2.5-flash"}
    refused_rt, producer = runtime(dialects + "/v1")
    monkeypatch.setenv("MMQ_FETCH_ALLOW_HOSTS", '["127.0.0.1"]')  # as a local deployment sets it
    allowed_rt, _ = runtime(dialects + "/v1")
    for rt in (refused_rt, allowed_rt):
        rt.keys = VirtualKeys()
        rt.keys.file_entries = {"sim": _secrets(dialects, "gemini")}
    refused = await producer.submit_job("/v1/chat/completions", body, tenant="t", config=config)
    await run_job({"mmq": refused_rt}, refused.id)
    rec = await refused_rt.records.get_job(refused.id)
    assert (
        rec.status is JobStatus.failed
        and rec.error.type == "invalid_media"
        and "127.0.0.1" in rec.error.message
    )
    allowed = await producer.submit_job("/v1/chat/completions", body, tenant="t", config=config)
    await run_job({"mmq": allowed_rt}, allowed.id)
    rec = await allowed_rt.records.get_job(allowed.id)
    assert rec.status is JobStatus.succeeded, rec.error
    answer = json.loads(await allowed_rt.storage.get(rec.result.body_key))["choices"][0]["message"]["content"]
    assert "blue" in answer.lower() and rec.usage["media"]["fetched"] == 1


async def test_claude_on_vertex_runs_through_the_worker_against_its_simulator_dialect(runtime, dialects):
    """provider "vertex-anthropic": accepted at submit, sent by a worker as rawPredict (model in the URL,
    anthropic_version in the body, bearer token, project and region from the virtual key), answered in
    the OpenAI shape."""
    import httpx

    rt, producer = runtime(dialects + "/v1")
    rt.keys = VirtualKeys()
    rt.keys.file_entries = {"claude-vertex": _secrets(dialects, "vertex-anthropic")}
    model = "claude-sonnet-4-5@20250929"
    body = {**chat_body(data_url(png_bytes((20, 40, 200)))), "model": model, "max_tokens": 300}
    config = {"provider": "vertex-anthropic", "virtual_key": "claude-vertex"}
    path = "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict"
    async with httpx.AsyncClient() as http:
        before = (await http.get(f"{dialects}/sim/stats")).json()["by_path"].get(path, 0)
    job = await producer.submit_job("/v1/chat/completions", body, tenant="t", config=config)
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.succeeded, (rec.error, rec.attempts)
    assert [(a.target, a.status) for a in rec.attempts] == [("root", 200)]
    result = json.loads(await rt.storage.get(rec.result.body_key))
    assert result["object"] == "chat.completion" and result["model"] == model  # the URL's model
    assert "mostly blue" in result["choices"][0]["message"]["content"]
    assert result["usage"]["prompt_tokens"] > 0 and rec.usage["prompt_tokens"] > 0
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{dialects}/sim/stats")).json()["by_path"][path] == before + 1


def _gs_chat(model: str) -> dict:
    parts = [
        {"type": "text", "text": "Describe."},
        {"type": "image_url", "image_url": {"url": "gs://bucket/shots/chair.png"}},
    ]
    return {"model": model, "messages": [{"role": "user", "content": parts}]}


async def test_gs_uris_are_accepted_at_submit_and_go_only_to_vertex(runtime, dialects):
    rt, producer = runtime(dialects + "/v1")
    rt.keys = VirtualKeys()
    rt.keys.file_entries = {p: _secrets(dialects, p) for p in ("vertex", "openai", "vertex-anthropic")}
    submit = producer.submit_job
    url = "/v1/chat/completions"
    on_vertex = await submit(
        url, _gs_chat("gemini-2.5-flash"), tenant="t", config={"virtual_key": "vertex", "provider": "vertex"}
    )
    fallback = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "virtual_key": "openai", "name": "oa"},
            {"provider": "vertex", "virtual_key": "vertex", "name": "vx"},
        ],
    }
    falls_back = await submit(url, _gs_chat("gemini-2.5-flash"), tenant="t", config=fallback)
    claude = {"provider": "vertex-anthropic", "virtual_key": "vertex-anthropic"}
    elsewhere = await submit(url, _gs_chat("claude-sonnet-4-5@20250929"), tenant="t", config=claude)
    for job in (on_vertex, falls_back, elsewhere):
        await run_job({"mmq": rt}, job.id)

    rec = await rt.records.get_job(on_vertex.id)
    assert rec.status is JobStatus.succeeded, rec.error
    answer = json.loads(await rt.storage.get(rec.result.body_key))["choices"][0]["message"]["content"]
    assert "gs://bucket/shots/chair.png (image/png)" in answer  # the provider got the URI, not bytes

    rec = await rt.records.get_job(falls_back.id)
    assert rec.status is JobStatus.succeeded, rec.error
    assert [(a.target, a.skipped, a.status) for a in rec.attempts] == [("oa", True, None), ("vx", False, 200)]
    assert "Cloud Storage URI" in rec.attempts[0].error

    rec = await rt.records.get_job(elsewhere.id)
    assert rec.status is JobStatus.failed and rec.error.type == "invalid_media"
    assert rec.error.message.startswith(
        "messages[0].content[1]: gs://bucket/shots/chair.png is a Cloud Storage URI, which only a Vertex AI "
        "target (provider 'vertex') reads; vertex-anthropic cannot"
    )
    assert not [a for a in rec.attempts if not a.skipped]  # nothing was sent, nothing fetched
