"""`mmq.Client`: a small synchronous client of the mmq HTTP API, for scripts and notebooks.

    import mmq
    client = mmq.Client("http://127.0.0.1:8000", api_key="mmq_…")
    batch = client.submit("requests.jsonl", metadata={"night": "2026-12-03"})
    batch = client.wait(batch.id)
    for line in client.results(batch.id):
        print(line["custom_id"], line["response"]["body"])

It speaks HTTP to `mmq api` (or `mmq run --serve`), so a script sees exactly what its API key's tenant
sees, and it needs neither Redis nor the storage credentials. The transport can be swapped
(`transport=httpx.MockTransport(...)` or an ASGI app) for tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from mmq.contract import BatchCounts, BatchStatus

_ENDED = frozenset({BatchStatus.completed, BatchStatus.cancelled, BatchStatus.expired})


class MMQError(RuntimeError):
    """The API refused a call; `status` is its HTTP status and the message its explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"mmq API answered {status}: {message}")
        self.status = status


class Batch:
    """A batch as the API shows it: id, status, counts, metadata, times."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.raw = data
        self.id: str = data["id"]
        self.status = BatchStatus(data["status"])
        self.counts = BatchCounts.model_validate(data.get("counts") or {})
        self.metadata: dict[str, str] = data.get("metadata") or {}
        self.created_at: float | None = data.get("created_at")
        self.finished_at: float | None = data.get("finished_at")

    @property
    def ended(self) -> bool:
        return self.status in _ENDED

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"Batch({self.id}, {self.status.value}, {c.done}/{c.total} done: "
            f"{c.succeeded} succeeded, {c.failed} failed, {c.cached} cached)"
        )


class Client:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("detail") or body.get("error", {}).get("message") or body
            except ValueError:
                detail = response.text
            raise MMQError(response.status_code, str(detail))
        return response

    def submit(
        self,
        requests: str | Path | Iterable[dict[str, Any]],
        *,
        config: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        cache: dict[str, Any] | bool | None = None,
        media: dict[str, Any] | None = None,
        priority: str = "normal",
        not_before: float | None = None,
        deadline: float | None = None,
        webhook_url: str | None = None,
        max_cost: float | str | None = None,
        on_budget: str | None = None,
        tier: str | None = None,
    ) -> Batch:
        """A batch from OpenAI Batch lines: a JSONL file (streamed, any size) or an iterable of dicts.
        Options as the API's `POST /api/batches` (`max_cost`: the batch's budget in USD; `tier`:
        realtime | batch | auto, how its jobs are called); a bad option
        refuses the whole batch (MMQError)."""
        if isinstance(requests, str | Path):
            params: dict[str, str] = {**(metadata or {}), "priority": priority}
            options = {"config": config, "cache": cache, "media": media}
            params |= {k: json.dumps(v) for k, v in options.items() if v is not None}
            times = {"not_before": not_before, "deadline": deadline}
            params |= {k: repr(v) for k, v in times.items() if v is not None}
            if webhook_url:
                params["webhook_url"] = webhook_url
            budget = {"max_cost": max_cost, "on_budget": on_budget, "tier": tier}
            params |= {k: str(v) for k, v in budget.items() if v is not None}
            with open(requests, "rb") as f:
                response = self._call(
                    "POST",
                    "/api/batches",
                    params=params,
                    content=iter(lambda: f.read(1 << 20), b""),
                    headers={"content-type": "application/jsonl"},
                )
        else:
            body = {
                "requests": list(requests),
                "metadata": metadata or {},
                "config": config,
                "cache": cache,
                "media": media,
                "priority": priority,
                "not_before": not_before,
                "deadline": deadline,
                "webhook_url": webhook_url,
                "max_cost": None if max_cost is None else str(max_cost),
                "on_budget": on_budget,
                "tier": tier,
            }
            response = self._call("POST", "/api/batches", json=body)
        return Batch(response.json())

    def batch(self, batch_id: str) -> Batch:
        return Batch(self._call("GET", f"/api/batches/{batch_id}").json())

    def wait(self, batch_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0) -> Batch:
        """Polls until the batch ends (completed, cancelled, expired); TimeoutError after
        `timeout_s` (None: no limit)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            batch = self.batch(batch_id)
            if batch.ended:
                return batch
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{batch!r} has not ended after {timeout_s:g} s")
            time.sleep(poll_s)

    def results(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """The batch's output lines (OpenAI Batch output shape), streamed, in submission order."""
        with self._http.stream("GET", f"/api/batches/{batch_id}/output.jsonl") as response:
            if response.status_code >= 400:
                response.read()
                raise MMQError(response.status_code, response.text)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/jobs/{job_id}").json()

    def cancel(self, batch_id: str) -> Batch:
        return Batch(self._call("POST", f"/api/batches/{batch_id}/cancel").json())

    def retry_failed(self, batch_id: str) -> Batch:
        return Batch(self._call("POST", f"/api/batches/{batch_id}/retry-failed").json())
