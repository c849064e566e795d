"""Where a job may be sent and which credential goes with it: a tenant's config never steers a worker-held
key to a host the operator did not configure, and self-hosted targets never fetch a tenant's URLs."""

from __future__ import annotations

import json

import httpx
import pytest

from mmq.contract import JobStatus
from mmq.endpoints import check_custom_host, is_public_cloud, same_endpoint, under
from producer.options import LineError
from tests.conftest import chat_body, data_url, png_bytes
from worker.credentials import VirtualKeys
from worker.pipeline import run_job
from worker.providers.base import Target

CANARY = "sk-canary-worker-default-key-0001"


class Recorder(httpx.AsyncBaseTransport):
    """Every request the worker makes, answered like a chat completion."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.seen.append(request)
        answer = {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return httpx.Response(200, json=answer)


def tenant_host_config(host: str, **leaf) -> dict:
    return {"strategy": {"mode": "single"}, "targets": [{"provider": "openai", "custom_host": host, **leaf}]}


def test_base_urls_compare_by_scheme_host_port_and_path():
    assert same_endpoint("HTTP://Sim:80/v1/", "http://sim/v1")
    assert not same_endpoint("http://sim/v1", "https://sim/v1")
    assert under("http://h:8000/v1/x", "http://h:8000/v1")
    assert not under("http://h:8000/v10", "http://h:8000/v1")
    assert not under("http://h.evil:8000/v1", "http://h:8000/v1")
    assert not under("http://user@h:8000/v1", "http://h:8000")
    with pytest.raises(ValueError, match="MMQ_CUSTOM_HOSTS"):
        check_custom_host("http://127.0.0.1:9999/v1", ["http://127.0.0.1:8000"])
    assert is_public_cloud("azure-openai", "https://acme.openai.azure.com/openai")
    assert not is_public_cloud("azure-openai", "http://acme.openai.azure.com.evil/openai")


async def test_a_custom_host_off_the_operator_list_is_refused_at_submit(make_runtime):
    _, producer = make_runtime(Recorder())
    with pytest.raises(LineError, match="MMQ_CUSTOM_HOSTS"):
        await producer.submit_job(
            "/v1/chat/completions",
            chat_body(data_url(png_bytes((1, 2, 3)))),
            tenant="t",
            config=tenant_host_config("http://127.0.0.1:4444/v1"),
        )


async def test_the_worker_default_key_never_reaches_a_tenants_host(make_runtime):
    """The reported attack: a config's custom_host got the worker's own key in Authorization."""
    transport = Recorder()
    rt, producer = make_runtime(transport, custom_hosts=["http://tenant-box:4444"])
    rt.target = Target(name="openai", provider="openai", base_url="http://sim/v1", api_key=CANARY)
    job = await producer.submit_job(
        "/v1/chat/completions",
        chat_body(data_url(png_bytes((1, 2, 3)))),
        tenant="t",
        config=tenant_host_config("http://tenant-box:4444/v1"),
    )
    await run_job({"mmq": rt}, job.id)
    assert (await rt.records.get_job(job.id)).status is JobStatus.succeeded
    [sent] = transport.seen
    assert sent.url.host == "tenant-box"
    assert CANARY not in json.dumps(dict(sent.headers)) and "authorization" not in sent.headers


async def test_the_worker_checks_custom_hosts_again(make_runtime):
    """A config that was allowed at submit (or a default config) is checked against the worker's list."""
    transport = Recorder()
    rt, producer = make_runtime(transport, custom_hosts=["http://tenant-box:4444"])
    job = await producer.submit_job(
        "/v1/chat/completions",
        chat_body(data_url(png_bytes((1, 2, 4)))),
        tenant="t",
        config=tenant_host_config("http://tenant-box:4444/v1"),
    )
    rt.settings = rt.settings.model_copy(update={"custom_hosts": []})
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.failed and rec.error.type == "routing_error"
    assert "MMQ_CUSTOM_HOSTS" in rec.error.message
    assert transport.seen == []


async def test_a_virtual_key_goes_only_to_its_own_base_url(make_runtime):
    transport = Recorder()
    rt, producer = make_runtime(transport, custom_hosts=["http://tenant-box:4444"])
    rt.keys = VirtualKeys(
        environ={"MMQ_VK_PROD": "vk-secret-1", "MMQ_VK_PROD_BASE_URL": "http://prod-llm/v1"}
    )
    stolen = await producer.submit_job(
        "/v1/chat/completions",
        chat_body(data_url(png_bytes((1, 2, 5)))),
        tenant="t",
        config=tenant_host_config("http://tenant-box:4444/v1", virtual_key="prod"),
    )
    await run_job({"mmq": rt}, stolen.id)
    rec = await rt.records.get_job(stolen.id)
    assert rec.status is JobStatus.failed and rec.error.type == "routing_error"
    assert "never sent to custom_host" in rec.error.message
    assert transport.seen == []

    own = await producer.submit_job(
        "/v1/chat/completions",
        chat_body(data_url(png_bytes((1, 2, 6)))),
        tenant="t",
        config={"provider": "openai", "virtual_key": "prod"},
    )
    await run_job({"mmq": rt}, own.id)
    assert (await rt.records.get_job(own.id)).status is JobStatus.succeeded
    [sent] = transport.seen
    assert (sent.url.host, sent.headers["authorization"]) == ("prod-llm", "Bearer vk-secret-1")


async def test_a_self_hosted_target_never_gets_a_tenants_image_url(make_runtime):
    """The worker's default target is a self-hosted server (http://sim/v1): it would fetch the URL from
    inside the operator's network, so the worker fetches it through the SSRF guard, which refuses it."""
    transport = Recorder()
    rt, producer = make_runtime(transport)
    job = await producer.submit_job(
        "/v1/chat/completions", chat_body("http://127.0.0.1:6379/"), tenant="t", cache=False
    )
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.failed and rec.error.type == "invalid_media"
    assert "refusing to fetch" in rec.error.message
    assert transport.seen == []


async def test_the_public_openai_endpoint_receives_image_urls_as_given(make_runtime):
    transport = Recorder()
    rt, producer = make_runtime(transport)
    rt.target = Target(name="openai", provider="openai", base_url="https://api.openai.com/v1", api_key="k")
    url = "https://images.example.com/sku-1.jpg"
    job = await producer.submit_job("/v1/chat/completions", chat_body(url), tenant="t", cache=False)
    await run_job({"mmq": rt}, job.id)
    assert (await rt.records.get_job(job.id)).status is JobStatus.succeeded
    [sent] = transport.seen
    assert sent.url.host == "api.openai.com" and url in sent.content.decode()
