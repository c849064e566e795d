"""Routing configs driving the job function: fallback, status-code gates, overrides, virtual keys."""

from __future__ import annotations

import httpx
import pytest

from mmq.contract import JobStatus
from mmq.simulator import SimulatorConfig
from mmq.simulator import create_app as create_simulator
from producer.options import LineError
from tests.conftest import chat_body, data_url, png_bytes
from worker.credentials import VirtualKeys
from worker.pipeline import run_job


class ByHost(httpx.AsyncBaseTransport):
    """Two providers on two hosts, each a real simulator app (or a scripted answer)."""

    def __init__(self, **hosts: httpx.AsyncBaseTransport) -> None:
        self.hosts = hosts
        self.seen: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.host, request.headers.get("authorization", "")))
        return await self.hosts[request.url.host].handle_async_request(request)


def sim(**knobs) -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=create_simulator(SimulatorConfig(**knobs)))


def fallback_config(on_status_codes: list[int] | None = None) -> dict:
    strategy: dict = {"mode": "fallback"}
    if on_status_codes:
        strategy["on_status_codes"] = on_status_codes
    return {
        "strategy": strategy,
        "targets": [
            {"provider": "openai", "virtual_key": "primary", "name": "primary"},
            {
                "provider": "openai",
                "virtual_key": "backup",
                "name": "backup",
                "override_params": {"model": "backup-model"},
            },
        ],
    }


# each key goes to the base URL configured with it (mmq.endpoints)
KEYS = VirtualKeys(
    environ={
        "MMQ_VK_PRIMARY": "key-primary-123",
        "MMQ_VK_PRIMARY_BASE_URL": "http://a/v1",
        "MMQ_VK_BACKUP": "key-backup-456",
        "MMQ_VK_BACKUP_BASE_URL": "http://b/v1",
    }
)


async def test_a_503_falls_back_to_the_second_target_with_its_own_key_and_params(make_runtime):
    transport = ByHost(a=sim(error_rate=1.0), b=sim())
    rt, producer = make_runtime(transport)
    rt.keys = KEYS
    job = await producer.submit_job(
        "/v1/chat/completions",
        chat_body(data_url(png_bytes((200, 0, 0)))),
        tenant="t",
        config=fallback_config(),
    )
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.succeeded
    assert [(a.target, a.status in (500, 503)) for a in rec.attempts] == [
        ("primary", True),
        ("backup", False),
    ]
    assert transport.seen == [("a", "Bearer key-primary-123"), ("b", "Bearer key-backup-456")]
    body = await rt.storage.get(rec.result.body_key)
    assert b'"model": "backup-model"' in body or b'"model":"backup-model"' in body
    record = await rt.records.redis.hgetall(rt.records.job_key(job.id))
    assert record and not any(b"key-primary-123" in v for kv in record.items() for v in kv)


async def test_no_fallback_on_a_status_the_config_does_not_list(make_runtime):
    bad = httpx.MockTransport(lambda r: httpx.Response(400, json={"error": {"message": "bad", "code": "x"}}))
    transport = ByHost(a=bad, b=sim())
    rt, producer = make_runtime(transport)
    rt.keys = KEYS
    job = await producer.submit_job(
        "/v1/chat/completions",
        chat_body(data_url(png_bytes((0, 0, 200)))),
        tenant="t",
        config=fallback_config(on_status_codes=[503]),
    )
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.failed and rec.error.provider_status == 400
    assert [h for h, _ in transport.seen] == ["a"]


async def test_configs_are_refused_at_submit_not_in_the_worker(make_runtime):
    _, producer = make_runtime(sim())
    body = chat_body("https://example.test/a.png")
    with pytest.raises(LineError, match="virtual key"):
        await producer.submit_job(
            "/v1/chat/completions", body, tenant="t", config={"provider": "openai", "api_key": "sk-raw"}
        )
    with pytest.raises(LineError, match="no adapter"):
        await producer.submit_job(
            "/v1/chat/completions",
            body,
            tenant="t",
            config={"provider": "nosuchprovider", "virtual_key": "a"},
        )
    with pytest.raises(LineError, match="wieght"):
        await producer.submit_job(
            "/v1/chat/completions",
            body,
            tenant="t",
            config={"strategy": {"mode": "loadbalance"}, "targets": [{"provider": "openai", "wieght": 2}]},
        )


async def test_an_unknown_virtual_key_fails_the_job_with_a_clear_error(make_runtime):
    rt, producer = make_runtime(sim())
    job = await producer.submit_job(
        "/v1/chat/completions",
        chat_body(data_url(png_bytes((0, 90, 0)))),
        tenant="t",
        config={"provider": "openai", "virtual_key": "nowhere"},
    )
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.failed and rec.error.type == "routing_error"
    assert "MMQ_VK_NOWHERE" in rec.error.message


async def test_the_worker_default_config_routes_jobs_that_carry_none(make_runtime):
    transport = ByHost(a=sim(error_rate=1.0), b=sim())
    rt, producer = make_runtime(transport, default_config=fallback_config())
    rt.keys = KEYS
    job = await producer.submit_job(
        "/v1/chat/completions", chat_body(data_url(png_bytes((9, 9, 9)))), tenant="t"
    )
    assert job.config is None
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.succeeded and [a.target for a in rec.attempts] == ["primary", "backup"]
