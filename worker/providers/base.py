"""What every provider adapter takes and gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from mmq.contract import Kind


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
    honours_detail: bool = False  # the provider reads OpenAI's `detail`; otherwise `low` means downscale


class Adapter(Protocol):
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
