"""Batch webhooks go through the SSRF guard: a tenant's webhook URL can never make a worker POST to
loopback or the operator's private network, unless the operator lists that receiver."""

from __future__ import annotations

import httpx

from worker.batch_tasks import notify_batch


class Recorder(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(204)


async def _notify(rt, producer, url: str) -> str:
    # created without submit's check, as a batch stored before the operator's list changed would be
    batch = await producer.create_batch(tenant="t", webhook_url=url)
    return await notify_batch({"mmq": rt, "job_try": 1}, batch.id)


async def test_a_webhook_to_a_private_address_is_never_sent(make_runtime):
    transport = Recorder()
    rt, producer = make_runtime(transport)
    for url in (
        "http://127.0.0.1:6379/",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "http://10.0.0.7/",
    ):
        assert await _notify(rt, producer, url) == "refused", url
    assert transport.seen == []


async def test_an_operator_listed_receiver_gets_the_webhook_pinned_to_its_checked_address(make_runtime):
    transport = Recorder()
    rt, producer = make_runtime(transport, webhook_allow_hosts=["localhost", "127.0.0.1"])
    assert await _notify(rt, producer, "http://localhost:8080/hook") == "delivered"
    [sent] = transport.seen
    assert sent.method == "POST" and sent.url.host in ("127.0.0.1", "::1")
    assert sent.headers["host"] == "localhost:8080" and b'"type": "batch.' in sent.content
