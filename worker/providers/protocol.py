"""The adapter protocol: what a provider module writes, and nothing else.

An adapter is three pure pieces and no I/O:
- `translate(target, kind, request, audio)`: the OpenAI-shaped request → the native WireRequest(s):
  URL, headers (auth included), query, body and what the answer must be. It raises InvalidJob for a
  request the provider cannot honour (a routing_error for a kind it does not do);
- `parse(kind, request, response, body)`: a 2xx answer, its body already decoded by the send path →
  a ProviderResponse in the OpenAI shape. It raises ProviderError for an answer that is a failure
  (a content filter, a blocked prompt, a body without the fields a result needs);
- `error(response)`: a non-2xx answer → the ProviderError it means (message, code, retryable,
  retry_after_s), the adapter's reading of its provider's error shape.
Two hooks have defaults: `sign` (headers computed over the exact bytes just before they go out, for
Bedrock's SigV4) and `combine` (joins the answers of a job translated to several calls).

`call`, the pipeline's entry point (worker.providers.base.Adapter), is the one shared send path,
worker.providers.send.send, for every adapter; no adapter sends HTTP itself. Field renames go through
the parameter-map engine, worker.providers.params.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import httpx

from mmq.errors import ProviderError
from mmq.request_models import Kind
from worker.providers import send as shared
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest


class WireAdapter(ABC):
    name: str
    kinds: frozenset[Kind]
    media: MediaRules

    @abstractmethod
    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> WireRequest | Sequence[WireRequest]:
        """The request(s) to send, in order; several only when one job takes several calls."""

    @abstractmethod
    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        """A 2xx answer (body decoded per the wire's `expect`) in the OpenAI shape."""

    @abstractmethod
    def error(self, response: httpx.Response) -> ProviderError:
        """What a non-2xx answer means."""

    def sign(self, target: Target, wire: WireRequest) -> WireRequest:
        """The wire as it goes out, called just before each exchange. By default unchanged."""
        return wire

    def combine(self, kind: Kind, request: dict[str, Any], parts: list[ProviderResponse]) -> ProviderResponse:
        """One answer from the answers of a job sent as several calls. The only such jobs are image jobs
        made one image per call, so by default their `data` lists are joined in call order (image
        answers carry no usage) and the last request id is kept."""
        if kind is not Kind.image:
            raise NotImplementedError(f"{self.name}: combining {kind} answers")
        first = parts[0]
        data = [item for part in parts for item in (part.body or {}).get("data", [])]
        request_id = next((p.request_id for p in reversed(parts) if p.request_id), None)
        return ProviderResponse(
            first.status, body={**(first.body or {}), "data": data}, request_id=request_id
        )

    async def call(
        self,
        client: httpx.AsyncClient,
        target: Target,
        kind: Kind,
        request: dict[str, Any],
        audio: AudioInput | None = None,
    ) -> ProviderResponse:
        return await shared.send(client, self, target, kind, request, audio)
