"""The HTTP shared by the provider batch clients: one exchange, the origin rule, JSONL in and out.

Why one place: every batch API (openai.py, anthropic.py, gemini.py) does the same four things around
its own wire, and a copy per provider would drift the way the realtime adapters' copies did before
worker/providers/send.py:
- `call`: one request on the worker's httpx client; a non-2xx answer becomes the ProviderError the
  realtime adapter's own `error` reads from it (the provider's error shape, Retry-After, retryable for
  429/5xx), and a connection failure a retryable ProviderError (for a create, the engine's `find`
  then tells whether the provider got it);
- `same_origin`: a URL the provider hands back (Anthropic's `results_url`) is only fetched, with the
  target's credential, when it is on the target's own base URL: scheme, host, port and path prefix;
- `jsonl` / `lines`: serialise batch items the way they are measured (UTF-8, no BOM, one compact JSON
  object per line) and read a JSONL answer line by line as it streams in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from mmq.errors import ProviderError

log = logging.getLogger(__name__)

ErrorReader = Callable[[httpx.Response], ProviderError]


def transport_error(exc: Exception, provider: str) -> ProviderError:
    return ProviderError(
        f"{type(exc).__name__}: {exc}", code="transport_error", retryable=True, provider=provider
    )


async def call(
    client: httpx.AsyncClient,
    error: ErrorReader,
    provider: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    **kwargs: Any,
) -> httpx.Response:
    """The 2xx answer of one exchange, else the ProviderError it means."""
    try:
        request = client.build_request(method, url, headers=dict(headers), **kwargs)
        # rendered in memory first: the worker's aiohttp transport reads a streamed multipart body
        # synchronously (worker/providers/send.py does the same)
        await request.aread()
        response = await client.send(request)
    except (httpx.TransportError, TimeoutError) as exc:
        raise transport_error(exc, provider) from exc
    if not response.is_success:
        raise error(response)
    return response


def json_of(response: httpx.Response, provider: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderError(
            f"HTTP {response.status_code} with a body that is not JSON: {response.text[:200]!r}",
            status=response.status_code,
            code="unparseable_response",
            retryable=True,
            provider=provider,
        ) from None


def json_object(response: httpx.Response, provider: str, what: str) -> dict[str, Any]:
    """The answer as a JSON object (`what`: "METHOD url", for the message); an empty answer is {}.
    Anything else is a retryable unparseable failure, as a realtime call's would be."""
    body = json_of(response, provider) if response.content else {}
    if not isinstance(body, dict):
        raise ProviderError(
            f"{what}: expected a JSON object, got {str(body)[:200]!r}",
            code="unparseable_response",
            retryable=True,
            provider=provider,
        )
    return body


async def streamed_lines(
    client: httpx.AsyncClient,
    error: ErrorReader,
    provider: str,
    url: str,
    headers: Mapping[str, str],
) -> AsyncIterator[dict[str, Any]]:
    """Each JSON object of a JSONL answer, read as it streams (output files can hold base64 images).
    A line that is not a JSON object is logged and skipped: its job has no outcome here, which the
    engine treats as a line that did not run."""
    try:
        async with client.stream("GET", url, headers=dict(headers)) as response:
            if not response.is_success:
                await response.aread()
                raise error(response)
            async for raw in response.aiter_lines():
                if not raw.strip():
                    continue
                try:
                    item = json.loads(raw)
                except ValueError:
                    item = None
                if isinstance(item, dict):
                    yield item
                else:
                    log.warning(
                        "%s batch results: skipped a line that is not a JSON object: %.200r", provider, raw
                    )
    except (httpx.TransportError, TimeoutError) as exc:
        raise transport_error(exc, provider) from exc


def jsonl(items: Iterable[Mapping[str, Any]]) -> bytes:
    """Batch items as a JSONL file: UTF-8 (no BOM: Azure refuses it), one compact object a line."""
    return b"".join(encoded(item) + b"\n" for item in items)


def encoded(item: Mapping[str, Any]) -> bytes:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def same_origin(url: str, base_url: str) -> bool:
    """Whether `url` is on the target's base URL (scheme, host, port, and under its path)."""
    got, base = urlsplit(url), urlsplit(base_url)
    try:
        if _place(got.scheme, got.hostname, got.port) != _place(base.scheme, base.hostname, base.port):
            return False
    except ValueError:  # a port that is not a number
        return False
    if got.username or got.password:
        return False
    prefix = base.path.rstrip("/")
    return got.path == prefix or got.path.startswith(prefix + "/")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _place(scheme: str, host: str | None, port: int | None) -> tuple[str, str | None, int | None]:
    scheme = scheme.lower()
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme)
