"""Anthropic Message Batches: the batch tier's client for chat jobs on provider "anthropic".

Why: Anthropic runs a batch of Messages requests asynchronously at half price within 24 h
(../shared/reference/native_batch.md §3). The wire:

    create   POST {base}/v1/messages/batches {"requests": [{"custom_id", "params": <Messages body>}]}:
             inline JSON, no file; models may differ per request
    get      GET {base}/v1/messages/batches/{id}
    cancel   POST {base}/v1/messages/batches/{id}/cancel
    results  GET the batch's `results_url` (JSONL, streamed), once it has ended
    list     GET {base}/v1/messages/batches?limit&after_id (`listed`, newest first)

Where and with which key: exactly as the realtime adapter's own `translate` says (its wire's URL, the
Messages endpoint, gives the batches URL beside it; its headers carry x-api-key, anthropic-version and
the target's own headers). A `results_url` is only fetched when it is on the target's base URL
(scheme, host, port and path): the key is never sent anywhere else.

`find` returns None without a call: a Message Batch has no metadata, name or tag, and its custom_ids
(mmq's job ids) are readable only from the results of an ended batch, so nothing the API shows ties a
provider batch to the engine's pack. A crash between the create and the engine's record is recovered by
shape instead (`find_by_shape`): the engine notes when it sent the create, and a recovery adopts the one
listed batch of the pack's size created within SHAPE_WINDOW_S of then that no other pack holds. Two
such batches (packs of one size made by two workers in the same seconds) adopt neither: a second create
is the lesser harm than answering one pack's jobs from another's batch.

States: processing_status in_progress → running (there is no validating step), canceling →
cancelling, ended → ended. Counts (`request_counts`) are only known at the end: `done` = succeeded,
`failed` = errored + canceled + expired.

Results: succeeded → ok, `body` the Message (what POST /v1/messages answers, for the adapter's
`parse`); errored → the error's type and message, retryable only for a transient type (api_error,
overloaded_error, rate_limit_error, timeout_error: the realtime adapter's list); canceled and expired →
retryable (they did not run).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from mmq.errors import ProviderError
from mmq.request_models import Kind
from worker.batch_tier.apis import _http
from worker.batch_tier.protocol import LineResult, NativeBatchAPI, ProviderBatch, State
from worker.providers.anthropic import RETRYABLE_TYPES, AnthropicAdapter
from worker.providers.base import Target, WireRequest

STATES: dict[str, State] = {"in_progress": "running", "canceling": "cancelling", "ended": "ended"}
PAGE = 100  # the list endpoint takes up to 1000
# a batch's created_at against the moment its create was sent: clocks apart, and the create's own time
SHAPE_WINDOW_S = 120.0
# what an errored line's type means as an HTTP status (Anthropic's error types: the realtime answers)
STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
# the smallest request the realtime translation accepts: only its URL and headers are used
_PROBE = {"model": "-", "messages": [{"role": "user", "content": "-"}]}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def line_result(item: Mapping[str, Any]) -> LineResult | None:
    """One results line as a LineResult; None for a line without a custom_id."""
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None
    result = item.get("result")
    result = result if isinstance(result, Mapping) else {}
    kind = result.get("type")
    if kind == "succeeded":
        return LineResult(custom_id, ok=True, status_code=200, body=result.get("message"))
    if kind == "errored":
        outer = result.get("error")
        outer = outer if isinstance(outer, Mapping) else {}
        inner = outer.get("error") if isinstance(outer.get("error"), Mapping) else outer
        error_type = str(inner.get("type") or "api_error")
        return LineResult(
            custom_id,
            ok=False,
            status_code=STATUS_OF_TYPE.get(error_type),
            body=outer or None,
            error_code=error_type,
            error_message=str(inner.get("message") or error_type),
            retryable=error_type in RETRYABLE_TYPES,
        )
    if kind in ("canceled", "expired"):
        what = "the batch was cancelled" if kind == "canceled" else "the batch expired"
        return LineResult(
            custom_id, ok=False, error_code=kind, error_message=f"not run: {what}", retryable=True
        )
    return LineResult(
        custom_id,
        ok=False,
        error_code="unknown_result",
        error_message=f"unknown result type {kind!r}",
        retryable=False,
    )


class AnthropicBatches(NativeBatchAPI):
    provider = "anthropic"
    kinds = frozenset({Kind.chat})
    max_requests = 100_000
    max_bytes = 256 * 1024 * 1024
    one_model = False
    tagged = False  # no metadata: a crashed create is found by `find_by_shape`

    def __init__(self, adapter: AnthropicAdapter | None = None) -> None:
        self.adapter = adapter or AnthropicAdapter()

    # ------------------------------------------------------------------------------------ the dialect
    def place(self, target: Target) -> tuple[str, dict[str, str]]:
        """(the batches URL, the headers): the realtime translation's, beside /v1/messages."""
        wire = self.adapter.translate(target, Kind.chat, dict(_PROBE))
        return wire.url + "/batches", dict(wire.headers)

    async def _json(
        self, client: httpx.AsyncClient, target: Target, method: str, path: str = "", **kwargs: Any
    ) -> dict[str, Any]:
        url, headers = self.place(target)
        response = await _http.call(
            client, self.adapter.error, self.provider, method, url + path, headers, **kwargs
        )
        return _http.json_object(response, self.provider, f"{method} {url + path}")

    def _path_id(self, batch_id: str) -> str:
        if not isinstance(batch_id, str) or not _ID.match(batch_id):
            raise ProviderError(
                f"not a message batch id: {str(batch_id)[:80]!r}", code="invalid_id", provider=self.provider
            )
        return "/" + quote(batch_id, safe="")

    def batch(self, obj: Mapping[str, Any]) -> ProviderBatch:
        raw = str(obj.get("processing_status") or "")
        state: State = STATES.get(raw, "running")  # unknown: not terminal
        counts = obj.get("request_counts")
        counts = counts if isinstance(counts, Mapping) else {}
        done: int | None = None
        failed: int | None = None
        if state == "ended":
            done = _int(counts.get("succeeded"))
            failed = sum(_int(counts.get(name)) for name in ("errored", "canceled", "expired"))
            total: int | None = done + failed + _int(counts.get("processing"))
        else:  # only `processing` moves before the end (reference §3)
            total = _int(counts.get("processing")) or None
        return ProviderBatch(
            id=str(obj.get("id")),
            state=state,
            raw_status=raw,
            total=total,
            done=done,
            failed=failed,
            handles={
                "results_url": obj.get("results_url"),
                "created_at": obj.get("created_at"),
                "expires_at": obj.get("expires_at"),
            },
        )

    # ---------------------------------------------------------------------------------- the protocol
    def line(self, custom_id: str, kind: Kind, wire: WireRequest) -> dict[str, Any]:
        if kind not in self.kinds or not isinstance(wire.json, dict):
            raise ValueError(f"anthropic batches take chat requests with a JSON body, not {kind}")
        return {"custom_id": custom_id, "params": wire.json}

    async def create(
        self,
        client: httpx.AsyncClient,
        target: Target,
        kind: Kind,
        model: str,
        lines: Sequence[dict[str, Any]],
        metadata: Mapping[str, str],
        window_s: int = 24 * 3600,
    ) -> ProviderBatch:
        """`metadata` has nowhere to go: a Message Batch carries none (see `find`). The window is
        Anthropic's fixed 24 h."""
        if kind not in self.kinds:
            raise ValueError(f"anthropic batches do not take {kind} jobs")
        return self.batch(await self._json(client, target, "POST", json={"requests": list(lines)}))

    async def get(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        return self.batch(await self._json(client, target, "GET", self._path_id(batch_id)))

    async def find(
        self, client: httpx.AsyncClient, target: Target, key: str, value: str
    ) -> ProviderBatch | None:
        """Always None: nothing a Message Batch shows before it ends can carry the pack's id (the engine
        asks `find_by_shape` instead)."""
        return None

    async def find_by_shape(
        self,
        client: httpx.AsyncClient,
        target: Target,
        lines: int,
        sent_at: float,
        taken: frozenset[str],
    ) -> ProviderBatch | None:
        """The one batch of `lines` requests created within SHAPE_WINDOW_S of `sent_at` that no other
        pack holds. Reads the list newest first and stops at the first batch older than the window."""
        found: list[ProviderBatch] = []
        async for batch in self.listed(client, target):
            when = created_at(batch)
            if when is None:
                continue
            created = when.timestamp()
            if created < sent_at - SHAPE_WINDOW_S:
                break
            if created > sent_at + SHAPE_WINDOW_S or batch.id in taken or batch.total != lines:
                continue
            found.append(batch)
        return found[0] if len(found) == 1 else None

    async def listed(self, client: httpx.AsyncClient, target: Target) -> AsyncIterator[ProviderBatch]:
        """Every batch of the workspace, newest first (for a reconciler: `handles["created_at"]`)."""
        after: str | None = None
        while True:
            params = {"limit": str(PAGE), **({"after_id": after} if after else {})}
            page = await self._json(client, target, "GET", params=params)
            data = page.get("data")
            items = [item for item in data if isinstance(item, Mapping)] if isinstance(data, list) else []
            for item in items:
                yield self.batch(item)
            last = page.get("last_id") or (items[-1].get("id") if items else None)
            if not page.get("has_more") or not isinstance(last, str) or last == after:
                return
            after = last

    async def cancel(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        return self.batch(await self._json(client, target, "POST", self._path_id(batch_id) + "/cancel"))

    async def results(
        self, client: httpx.AsyncClient, target: Target, batch: ProviderBatch
    ) -> AsyncIterator[LineResult]:
        url = batch.handles.get("results_url")
        if not url:
            batch = await self.get(client, target, batch.id)
            url = batch.handles.get("results_url")
        if not url:
            return  # not ended yet: no results to read
        batches_url, headers = self.place(target)
        if not _http.same_origin(str(url), target.base_url or batches_url):
            raise ProviderError(
                f"results_url {str(url)[:200]!r} is not on the target's base URL "
                f"{target.base_url!r}: refused, the key is only ever sent there",
                code="foreign_results_url",
                provider=self.provider,
            )
        async for item in _http.streamed_lines(
            client, self.adapter.error, self.provider, str(url), {**headers, "accept": "application/binary"}
        ):
            result = line_result(item)
            if result is not None:
                yield result


def created_at(batch: ProviderBatch) -> datetime | None:
    """When a listed batch was created (RFC 3339 in `handles`), for reconciling after a crash."""
    raw = batch.handles.get("created_at")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
