"""The one shared send path: every adapter's HTTP exchange, status check and answer decoding.

Why one: before it, each adapter posted with httpx, checked the status, read the error body and decided
what an unusable 200 meant in its own words, and the copies drifted. Here, for each WireRequest an
adapter's `translate` gives:

1. `adapter.sign(target, wire)` runs just before the bytes go out (Bedrock's SigV4 signs the exact body
   at that moment; for everyone else it changes nothing);
2. a JSON or bytes body goes straight to the worker's aiohttp pool (worker/http.py: httpx's request
   building cost more CPU than the exchange); anything else is built on the httpx.AsyncClient the
   worker passes in, its body rendered in memory first (the aiohttp transport reads a streamed
   multipart body synchronously), then sent;
3. a non-2xx answer is classified by `adapter.error(response)` and raised as that ProviderError;
4. a 2xx answer is decoded as the wire said it would be (`expect`: json / bytes / text), once, here:
   JSON that does not decode, or an empty body where bytes were expected, is a retryable
   `unparseable_response` ProviderError;
5. `adapter.parse(kind, request, response, body)` turns it into a ProviderResponse in the OpenAI shape.
   A parse that fails on the body's shape (KeyError, IndexError, TypeError, ValueError,
   AttributeError) is the same retryable unparseable failure: a 200 that does not parse is never a
   result. A ProviderError that parse raises (a content filter, a blocked prompt) gets the adapter's
   name and the answer's status.

A job that needs several calls (one image per call at Stability and some Bedrock models) translates to
several WireRequests: they are sent one after the other, never in a burst, the first failure ends the
job, and `adapter.combine` joins the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from mmq.errors import ProviderError, unparseable
from mmq.request_models import Kind
from worker.http import Answer
from worker.providers.base import AudioInput, ProviderResponse, Target, WireRequest

if TYPE_CHECKING:
    from worker.providers.protocol import WireAdapter

# what a parse raises when a 2xx body does not have the shape it expects
SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


async def send(
    client: httpx.AsyncClient,
    adapter: WireAdapter,
    target: Target,
    kind: Kind,
    request: dict[str, Any],
    audio: AudioInput | None = None,
) -> ProviderResponse:
    """translate → (sign → HTTP exchange → error | decode → parse) per wire request → combine."""
    planned = adapter.translate(target, kind, request, audio)
    wires: Sequence[WireRequest] = (planned,) if isinstance(planned, WireRequest) else planned
    if not wires:
        raise ValueError(f"{adapter.name}: translate gave no request to send")
    parts = [await exchange(client, adapter, target, kind, request, wire) for wire in wires]
    return parts[0] if len(parts) == 1 else adapter.combine(kind, request, parts)


async def exchange(
    client: httpx.AsyncClient,
    adapter: WireAdapter,
    target: Target,
    kind: Kind,
    request: dict[str, Any],
    wire: WireRequest,
) -> ProviderResponse:
    """One HTTP exchange: the answer parsed, or the ProviderError it amounts to."""
    wire = adapter.sign(target, wire)
    response = await _direct(client, wire)
    if response is None:
        response = await _through_httpx(client, wire)
    if not response.is_success:
        raise adapter.error(response)
    body = decoded(adapter.name, response, wire)
    try:
        return adapter.parse(kind, request, response, body)
    except ProviderError as err:
        err.provider, err.status = adapter.name, response.status_code
        raise
    except SHAPE_ERRORS as err:
        raise unparseable(adapter.name, response.text, response.status_code) from err


async def _direct(client: httpx.AsyncClient, wire: WireRequest) -> Answer | None:
    """A JSON or bytes body without a query string goes straight to the worker's aiohttp pool (see
    worker/http.py); None: send it through httpx."""
    direct = getattr(client, "direct", None)
    if direct is None or wire.params or wire.form is not None or wire.files is not None:
        return None
    return await direct(wire.method, wire.url, wire.headers, json=wire.json, content=wire.content)


async def _through_httpx(client: httpx.AsyncClient, wire: WireRequest) -> httpx.Response:
    built = client.build_request(
        wire.method,
        wire.url,
        headers=dict(wire.headers),
        params=wire.params,
        json=wire.json,
        data=wire.form,
        files=wire.files,
        content=wire.content,
    )
    await built.aread()
    return await client.send(built)


def decoded(provider: str, response: httpx.Response | Answer, wire: WireRequest) -> Any:
    """The 2xx body as `wire.expect` says: a JSON value, the bytes, or the text."""
    if wire.expect == "json":
        try:
            return response.json()
        except ValueError:
            raise unparseable(provider, response.text, response.status_code) from None
    if wire.expect == "bytes":
        if not response.content:
            raise unparseable(
                provider, None, response.status_code, f"HTTP {response.status_code} with an empty body"
            )
        return response.content
    return response.text
