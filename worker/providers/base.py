"""What every provider adapter takes and gives back: the values that cross the adapter boundary.

The pipeline hands an adapter a `Target`, the OpenAI-shaped request and maybe an `AudioInput`, and gets a
`ProviderResponse` back (`Adapter.call`, the only thing it calls). Inside, an adapter's `translate`
gives the shared send path (worker/providers/send.py) a `WireRequest`: the plain description of one
HTTP exchange, with nothing provider-specific left to decide. `MediaRules` tell the worker's media stage
what a provider accepts. The adapter protocol itself lives in worker/providers/protocol.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from mmq.request_models import Kind


@dataclass(frozen=True)
class Target:
    """One place a job can be sent. `api_key` is resolved on the worker and never serialized."""

    name: str
    provider: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioInput:
    data: bytes
    content_type: str
    filename: str


@dataclass
class ProviderResponse:
    """The provider's answer in the OpenAI shape: `body` for JSON answers, `content` for raw bytes."""

    status: int
    body: dict[str, Any] | None = None
    content: bytes | None = None
    content_type: str | None = None
    text: str | None = None  # transcription formats text / srt / vtt
    request_id: str | None = None
    usage: dict[str, Any] | None = None


Expect = Literal["json", "bytes", "text"]


@dataclass(frozen=True)
class WireRequest:
    """One HTTP exchange, as an adapter's `translate` describes it and the shared `send` performs it.

    At most one body: `json`, or form fields (`form`, multipart once `files` are given), or raw
    `content`. `expect` is what a 2xx answer must be: "json" (decoded by `send`; a body that does not
    decode is a retryable unparseable failure), "bytes" (non-empty) or "text"."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"
    params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None  # the query string
    json: Any = None
    form: Mapping[str, Any] | None = None
    files: Any = None  # multipart parts, in any form httpx takes
    content: bytes | None = None
    expect: Expect = "json"

    def __post_init__(self) -> None:
        bodies = (
            self.json is not None,
            self.form is not None or self.files is not None,
            self.content is not None,
        )
        if sum(bodies) > 1:
            raise ValueError("a WireRequest carries one body: json, form/files or content")


@dataclass(frozen=True)
class MediaRules:
    """What a provider accepts in chat content. The worker's media stage (not the adapter) converts,
    downsizes, fetches or refuses within these limits, so adapters only translate shapes."""

    image_types: frozenset[str] = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
    max_image_bytes: int | None = None
    max_image_side: int | None = None  # pixels, longest side
    max_images: int | None = None  # per request
    document_types: frozenset[str] = frozenset({"application/pdf"})
    remote_urls: bool = True  # the provider fetches http(s) URLs itself; False = the worker inlines bytes
    # the provider reads gs:// Cloud Storage objects itself (Vertex AI); elsewhere a gs:// part fails the
    # job at this target, as the worker never fetches from Cloud Storage
    gcs_uris: bool = False
    honours_detail: bool = False  # the provider reads OpenAI's `detail`; otherwise `low` means downscale


class Adapter(Protocol):
    """What the pipeline calls. Every adapter implements it through worker.providers.protocol.WireAdapter,
    whose `call` is the shared send path."""

    name: str
    kinds: frozenset[Kind]
    media: MediaRules

    async def call(
        self,
        client: httpx.AsyncClient,
        target: Target,
        kind: Kind,
        request: dict[str, Any],
        audio: AudioInput | None = None,
    ) -> ProviderResponse: ...
