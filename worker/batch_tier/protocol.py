"""The native batch protocol: what a provider's batch API module writes for the batch tier's engine.

A provider batch is the provider's own asynchronous API (OpenAI Files + Batches, Anthropic Message
Batches, Gemini batch mode…: ../shared/reference/native_batch.md). The engine (worker/batch_tier/)
packs jobs, records its intent, creates, polls, cancels and harvests; a `NativeBatchAPI` only speaks
one provider's wire for those five operations and normalises what comes back:
- `line(custom_id, wire)`: one request of the batch, from the realtime adapter's own translation of the
  job (`WireRequest`: the same native body the realtime call would send), as the provider's batch item;
- `create(...)`: upload (where the provider takes a file) and create, tagged with `metadata` so that a
  crash between the create and the engine's record can be recovered (`find`);
- `get`, `find`, `cancel`: the batch as a `ProviderBatch` with its state mapped onto five values;
- `results(batch)`: every line that has an outcome, as `LineResult`s, whose `body` the realtime
  adapter's `parse` turns into the OpenAI shape (the engine does that, so a batch answer and a realtime
  answer are read by the same code).

No engine state lives here: no Redis, no storage. HTTP goes through the worker's httpx client (the
same pool, the same SSRF rules: only the target's own base URL is called, with the target's key).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from mmq.request_models import Kind
from worker.providers.base import Target, WireRequest

# validating: accepted, not started; running: lines are being done; cancelling: asked to stop (lines may
# still finish and be billed); ended: final (completed, expired or cancelled: results are readable);
# failed: the batch itself failed (invalid file, quota): no line ran, none is billed
State = Literal["validating", "running", "cancelling", "ended", "failed"]
WINDOW_S = 24 * 3600  # a provider batch's completion window, where the batch has no deadline of its own


@dataclass(frozen=True)
class ProviderBatch:
    id: str
    state: State
    raw_status: str  # the provider's own word ("in_progress", "canceling", "BATCH_STATE_RUNNING", …)
    total: int | None = None  # counts where the provider shows them (Anthropic: only at the end)
    done: int | None = None
    failed: int | None = None
    error: str | None = None  # why a failed batch failed ("token_limit_exceeded: …")
    metadata: Mapping[str, str] = field(default_factory=dict)
    # where its results are (output/error file ids, results URL, responses file name…): opaque to the
    # engine, handed back to `results`
    handles: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LineResult:
    """One line's outcome. `ok`: `body` is the native success body (what the realtime endpoint answers,
    for the adapter's `parse`). Otherwise `error_code`/`error_message`, and `retryable`: the line did
    not run through no fault of its own (expired, cancelled, a 5xx/429 inside the batch) and may run
    again; a 4xx is the request's fault and fails the job."""

    custom_id: str
    ok: bool
    status_code: int | None = None
    body: Any = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False


class NativeBatchAPI(ABC):
    provider: str  # the realtime adapter's provider name (worker.providers.REGISTRY)
    kinds: frozenset[Kind]  # what its batch API takes (chat; image for OpenAI and Gemini)
    max_requests: int
    max_bytes: int  # of the serialised batch (file or JSON body), base64 media included
    one_model: bool  # every line must name the same model (OpenAI, Azure, Gemini)
    custom_id_pattern: str = r"^[A-Za-z0-9_-]{1,64}$"  # mmq's job ids fit the strictest (Anthropic)
    # the fewest lines a batch may hold (Bedrock's quota, default 100): a smaller group runs realtime,
    # never padded with lines that would be paid for
    min_requests: int = 1

    @property
    def enabled(self) -> bool:
        """Whether the operator's settings let this API be used (Bedrock's needs an S3 location and an
        IAM role); when not, its jobs run realtime."""
        return True

    @abstractmethod
    def line(self, custom_id: str, kind: Kind, wire: WireRequest) -> dict[str, Any]:
        """One batch item (a JSONL line or an inline request) from the realtime call's wire request."""

    @abstractmethod
    async def create(
        self,
        client: httpx.AsyncClient,
        target: Target,
        kind: Kind,
        model: str,
        lines: Sequence[dict[str, Any]],
        metadata: Mapping[str, str],
        window_s: int = WINDOW_S,
    ) -> ProviderBatch:
        """Upload (if the provider takes a file) and create the batch, tagged with `metadata`. Raises
        ProviderError (mmq.errors) on a refusal, `retryable` when it may succeed later (429, 5xx)."""

    @abstractmethod
    async def get(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch: ...

    @abstractmethod
    async def find(
        self, client: httpx.AsyncClient, target: Target, key: str, value: str
    ) -> ProviderBatch | None:
        """The batch whose metadata has `key` = `value` (the engine's pack id), newest first, or None:
        how a crash between create and the engine's record is recovered without creating twice."""

    tagged: bool = True  # its batches carry the pack's id (`find`); False: `find_by_shape` stands in

    async def find_by_shape(
        self,
        client: httpx.AsyncClient,
        target: Target,
        lines: int,
        sent_at: float,
        taken: frozenset[str],
    ) -> ProviderBatch | None:
        """For an API whose batches carry no tag: the one batch of `lines` requests created around
        `sent_at` (when the create was sent) whose id no other pack holds (`taken`), or None when there
        is none, or more than one (then a second create is the lesser harm than adopting another pack's
        batch)."""
        return None

    @abstractmethod
    async def cancel(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch: ...

    @abstractmethod
    def results(
        self, client: httpx.AsyncClient, target: Target, batch: ProviderBatch
    ) -> AsyncIterator[LineResult]:
        """Every line with an outcome in an ended batch (output and error files, or the results stream)."""
