"""An image URL the worker fetches for a target: a transient failure is retried on the job's policy, and
one that persists falls back to the next target, which may take the URL itself (issue: a 404/503 ended
the job at once, with no retry and no fallback)."""

from __future__ import annotations

import json

import httpx

from mmq.contract import JobStatus
from mmq.simulator import SimulatorConfig
from mmq.simulator import create_app as create_simulator
from tests.conftest import chat_body, png_bytes
from worker.credentials import VirtualKeys
from worker.pipeline import run_job

IMAGE_URL = "http://127.0.0.1:9/catalog/item.png"


class Hosts(httpx.AsyncBaseTransport):
    """An image server whose answers are scripted, and simulator apps by host."""

    def __init__(self, image_statuses: list[int], **providers: httpx.AsyncBaseTransport) -> None:
        self.image_statuses = image_statuses
        self.providers = providers
        self.image_requests = 0
        self.bodies: dict[str, list[dict]] = {host: [] for host in providers}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/catalog/item.png":
            status = self.image_statuses[min(self.image_requests, len(self.image_statuses) - 1)]
            self.image_requests += 1
            if status != 200:
                return httpx.Response(status, text="busy")
            return httpx.Response(
                200, content=png_bytes((10, 120, 30)), headers={"content-type": "image/png"}
            )
        host = request.url.host
        await request.aread()
        self.bodies[host].append(json.loads(request.content))
        return await self.providers[host].handle_async_request(request)


def sim() -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=create_simulator(SimulatorConfig()))


async def test_a_transient_fetch_failure_is_retried(make_runtime):
    hosts = Hosts([503, 503, 200], sim=sim())
    rt, producer = make_runtime(hosts, fetch_allow_hosts=["127.0.0.1"])
    job = await producer.submit_job("/v1/chat/completions", chat_body(IMAGE_URL), tenant="t")
    await run_job({"mmq": rt}, job.id)
    done = await rt.records.get_job(job.id)
    assert done.status is JobStatus.succeeded, done.error
    assert hosts.image_requests == 3
    sent = hosts.bodies["sim"][0]["messages"][0]["content"][1]["image_url"]["url"]
    assert sent.startswith("data:image/png;base64,")  # the self-hosted target got the bytes


async def test_a_lasting_fetch_failure_falls_back_to_a_target_that_takes_the_url_itself(make_runtime):
    hosts = Hosts([404], a=sim(), **{"api.openai.com": sim()})
    rt, producer = make_runtime(hosts, fetch_allow_hosts=["127.0.0.1"])
    rt.keys = VirtualKeys(
        environ={
            "MMQ_VK_LOCAL": "key-local-123",
            "MMQ_VK_LOCAL_BASE_URL": "http://a/v1",  # self-hosted: the worker fetches for it
            "MMQ_VK_CLOUD": "key-cloud-456",
            "MMQ_VK_CLOUD_BASE_URL": "https://api.openai.com/v1",  # OpenAI's own: it fetches URLs itself
        }
    )
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "virtual_key": "local", "name": "local"},
            {"provider": "openai", "virtual_key": "cloud", "name": "cloud"},
        ],
    }
    job = await producer.submit_job("/v1/chat/completions", chat_body(IMAGE_URL), tenant="t", config=config)
    await run_job({"mmq": rt}, job.id)
    done = await rt.records.get_job(job.id)
    assert hosts.bodies["a"] == []  # nothing went to the target that needed bytes
    [body] = hosts.bodies["api.openai.com"]
    assert body["messages"][0]["content"][1]["image_url"]["url"] == IMAGE_URL  # handed over as given
    assert [(a.target, a.skipped) for a in done.attempts] == [("local", True), ("cloud", False)]
    assert "404" in done.attempts[0].error
    # (the stand-in for OpenAI then tries the URL itself and, like OpenAI, cannot download it)
    assert done.attempts[1].status == 400 and done.error.code == "invalid_image_url"


async def test_a_lasting_fetch_failure_with_no_other_target_fails_the_job_naming_the_url(make_runtime):
    hosts = Hosts([404], sim=sim())
    rt, producer = make_runtime(hosts, fetch_allow_hosts=["127.0.0.1"])
    job = await producer.submit_job("/v1/chat/completions", chat_body(IMAGE_URL), tenant="t")
    await run_job({"mmq": rt}, job.id)
    done = await rt.records.get_job(job.id)
    assert done.status is JobStatus.failed and "item.png" in done.error.message
    # a 404 is not retried: one fetch for the cache key's look-up, one for the target
    assert hosts.image_requests <= 2
