"""Download remote media (http/https) for providers that need bytes, without becoming an SSRF proxy.

Every hop (the first URL and each redirect, followed here and never by httpx) is checked the same way:

1. the scheme must be http or https (file:, ftp:, gopher:, data: ... are refused; data: URLs are
   `mmq.media.parse_data_url`'s job);
2. a numeric host is parsed the way inet_aton and browsers do (decimal `2130706433`, hex `0x7f000001`,
   octal `0177.0.0.1`, short `127.1`), so it is judged as the address it really is;
3. a name is resolved with `policy.resolver` and EVERY answer must be allowed (public, or listed in
   `policy.allow_hosts`); one private answer among public ones refuses the URL;
4. the request goes to the checked IP itself: the URL's host is replaced by that IP, the original
   `Host` header is kept, and for https the `sni_hostname` request extension carries the original name.

DNS rebinding: because of (4) nothing resolves the name a second time, so a different answer after the
check is never used. TLS is not weakened: both transports the worker uses honour `sni_hostname`
(httpcore hands it to the handshake as `server_hostname`; httpx-aiohttp passes it as aiohttp's
`server_hostname`), and that is the name sent as SNI and verified against the certificate. We chose this
over "resolve right before the request and accept the window" because it closes the window for http and
https alike with public httpx API only. httpcore (the default httpx transport) pools TLS connections by
(scheme, IP, port) regardless of SNI, so a kept-alive connection verified for one name could carry a later
request for another name on the same IP; pinned https requests therefore send `Connection: close` (one TLS
handshake per media fetch, a negligible cost next to the download).

Errors: `FetchRefused` (an `InvalidJob`, type "invalid_media") when the URL, an address or the body is
not acceptable; repeating cannot help, so the job fails. `FetchFailed` (a `ProviderError`) when the
server or network failed: retryable for 5xx, 408/425/429, timeouts and connection/DNS hiccups, not
retryable for other statuses, so the pipeline's usual retry handling applies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from mmq.addresses import _address_problem, _allowed_set, _normalise_host, parse_host
from mmq.errors import InvalidJob, ProviderError, parse_retry_after
from mmq.media import sniff

Resolver = Callable[[str], Awaitable[list[str]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_FETCH_STATUSES = frozenset({408, 425, 429})


async def system_resolver(host: str) -> list[str]:
    """All addresses the OS resolver gives for `host`, in its order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one fetch. `allow_hosts` lets named hosts or IPs through even if private/loopback."""

    max_bytes: int = 20 * 1024 * 1024
    connect_timeout_s: float = 10.0
    # A deadline for everything (DNS, redirects, body): read timeouts alone never stop a trickling server.
    total_timeout_s: float = 30.0
    max_redirects: int = 5
    allow_hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=system_resolver, compare=False)


@dataclass(frozen=True)
class FetchedMedia:
    data: bytes
    # From the bytes (mmq.media.sniff); the response header only when sniffing found nothing.
    content_type: str
    final_url: str
    # False when content_type came from the Content-Type header (or is application/octet-stream).
    sniffed: bool = True


def _rebuild(cls: type[BaseException], args: tuple, state: dict) -> BaseException:
    exc = cls.__new__(cls, *args)
    exc.__dict__.update(state)
    return exc


class _Picklable:
    """Our __init__ signatures differ from `args`; rebuild from state so arq/multiprocessing can pickle."""

    def __reduce__(self) -> tuple:
        assert isinstance(self, BaseException)
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


class FetchRefused(_Picklable, InvalidJob):
    """The URL or what it serves is not acceptable (scheme, address, size): never retried."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"refusing to fetch {_display(url)}: {reason}", type="invalid_media")
        self.url = url
        self.reason = reason


class FetchFailed(_Picklable, ProviderError):
    """The server or the network failed; `retryable` says whether another try may succeed."""

    def __init__(
        self,
        url: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            f"fetching {_display(url)}: {message}",
            status=status,
            code=code,
            retryable=retryable,
            retry_after_s=retry_after_s,
            provider="fetch",
        )
        self.url = url


def _display(url: str) -> str:
    """The URL for messages: without user:password, and not unbounded."""
    try:
        shown = str(httpx.URL(url).copy_with(userinfo=b""))
    except (httpx.InvalidURL, TypeError, ValueError):
        shown = url
    return shown if len(shown) <= 200 else shown[:197] + "..."


# -- one hop -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hop:
    url: httpx.URL  # as given (for Host, SNI, redirects and messages)
    ip: str  # the checked address to connect to


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as e:
        # httpx rejects some numeric tricks (0177.0.0.1) itself; say what they are when we can.
        try:
            address = parse_host(urlsplit(url).hostname or "")
        except ValueError:
            address = None
        detail = f"host is {address}" if address is not None else str(e)
        raise FetchRefused(url, f"malformed URL ({detail})") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise FetchRefused(url, f"scheme {parsed.scheme or '(none)'!r} is not http or https")
    if not parsed.host:
        raise FetchRefused(url, "URL has no host")
    return parsed


async def _check_hop(url: httpx.URL, policy: FetchPolicy, allowed: frozenset[str]) -> _Hop:
    """Resolve and check the host of `url`; returns the address to connect to."""
    shown = str(url)
    host = url.raw_host.decode("ascii")
    try:
        literal = parse_host(host)
    except ValueError as e:
        raise FetchRefused(shown, str(e)) from None
    if literal is not None:
        problem = _address_problem(str(literal), allowed)
        if problem:
            raise FetchRefused(shown, f"host {host} is {literal}: {problem}")
        return _Hop(url, str(literal))

    name = _normalise_host(host)
    try:
        answers = await policy.resolver(name)
    except socket.gaierror as e:
        raise FetchFailed(
            shown,
            f"cannot resolve {name} ({e})",
            code="dns_error",
            retryable=e.errno == socket.EAI_AGAIN,
        ) from None
    if not answers:
        raise FetchFailed(shown, f"{name} has no addresses", code="dns_error")
    if name in allowed:
        problems = [] if all(_is_ip(a) for a in answers) else ["resolver returned a non-address"]
    else:
        problems = [p for p in (_address_problem(a, allowed) for a in answers) if p]
    if problems:
        raise FetchRefused(shown, f"{name} resolves to a disallowed address ({'; '.join(problems)})")
    return _Hop(url, str(ipaddress.ip_address(answers[0])))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _pinned_request(
    client: httpx.AsyncClient,
    hop: _Hop,
    policy: FetchPolicy,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Request:
    """A request to the checked IP that still names the original host (Host header, and SNI for https)."""
    ip = ipaddress.ip_address(hop.ip)
    extensions: dict[str, object] = {}
    sent = {**(headers or {}), "host": hop.url.netloc.decode("ascii"), "accept": "*/*"}
    if hop.url.scheme == "https" and parse_host(hop.url.raw_host.decode("ascii")) is None:
        extensions["sni_hostname"] = hop.url.raw_host.decode("ascii").rstrip(".")
        sent["connection"] = "close"  # never leave a connection verified for this name in an IP-keyed pool
    request = client.build_request(
        method,
        hop.url.copy_with(host=str(ip)),
        headers=sent,
        content=content,
        timeout=httpx.Timeout(policy.total_timeout_s, connect=policy.connect_timeout_s),
        extensions=extensions,
    )
    # The shared client's cookie jar is keyed by the IP we connect to; never send it to media hosts.
    request.headers.pop("cookie", None)
    return request


async def _read_body(url: str, response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise FetchRefused(url, f"Content-Length {int(declared)} exceeds the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decoded bytes: a compressed bomb is counted expanded
        size += len(chunk)
        if size > max_bytes:
            raise FetchRefused(url, f"body exceeds the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _status_error(url: str, response: httpx.Response) -> FetchFailed:
    status = response.status_code
    retryable = status >= 500 or status in RETRYABLE_FETCH_STATUSES
    return FetchFailed(
        url,
        f"server answered {status}",
        status=status,
        retryable=retryable,
        retry_after_s=parse_retry_after(response.headers) if retryable else None,
    )


def _transport_error(url: str, exc: httpx.RequestError) -> FetchFailed:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return FetchFailed(url, detail, code="timeout", retryable=True)
    if isinstance(exc, httpx.TransportError):
        return FetchFailed(url, detail, code="connection_error", retryable=True)
    return FetchFailed(url, detail, code="bad_response")  # e.g. a body that does not decode as declared


# -- the fetch ---------------------------------------------------------------------------------------


async def _fetch(client: httpx.AsyncClient, url: str, policy: FetchPolicy) -> FetchedMedia:
    allowed = _allowed_set(policy.allow_hosts)
    current = _parse_url(url)
    for _ in range(policy.max_redirects + 1):
        hop = await _check_hop(current, policy, allowed)
        shown = str(current)
        try:
            request = _pinned_request(client, hop, policy)
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.RequestError as e:
            raise _transport_error(shown, e) from None
        try:
            status = response.status_code
            if status in REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise FetchFailed(shown, f"redirect {status} without a Location")
                try:
                    target = current.join(location)
                except (httpx.InvalidURL, TypeError, ValueError):
                    raise FetchRefused(shown, f"redirect to a malformed URL {location!r}") from None
                current = _parse_url(str(target))
                continue
            if not 200 <= status < 300:
                raise _status_error(shown, response)
            try:
                data = await _read_body(shown, response, policy.max_bytes)
            except httpx.RequestError as e:
                raise _transport_error(shown, e) from None
            header_type = response.headers.get("content-type", "")
        finally:
            await response.aclose()
        if not data:
            raise FetchRefused(shown, "the body is empty")
        sniffed = sniff(data)
        if sniffed is not None:
            return FetchedMedia(data=data, content_type=sniffed, final_url=shown, sniffed=True)
        declared_type = header_type.split(";")[0].strip().lower() or "application/octet-stream"
        return FetchedMedia(data=data, content_type=declared_type, final_url=shown, sniffed=False)
    raise FetchRefused(url, f"more than {policy.max_redirects} redirects")


async def fetch_media(client: httpx.AsyncClient, url: str, policy: FetchPolicy) -> FetchedMedia:
    """GET `url` with every hop checked and pinned, within `policy`'s size and time limits.

    Raises FetchRefused (InvalidJob) or FetchFailed (ProviderError); see the module docstring.
    """
    try:
        async with asyncio.timeout(policy.total_timeout_s):
            return await _fetch(client, url, policy)
    except TimeoutError:
        raise FetchFailed(
            url, f"no complete answer within {policy.total_timeout_s:g} s", code="timeout", retryable=True
        ) from None


# -- outgoing POSTs (webhooks) -----------------------------------------------------------------------


def check_url(url: str, allow_hosts: Iterable[str] = ()) -> None:
    """What can be judged without DNS, for a URL given at submit time (a webhook): scheme, form, a
    literal address, and `localhost` names. Raises FetchRefused; the full check runs again at send time."""
    parsed = _parse_url(url)
    allowed = _allowed_set(allow_hosts)
    host = _normalise_host(parsed.raw_host.decode("ascii"))
    if host in allowed:
        return
    if host == "localhost" or host.endswith(".localhost"):
        raise FetchRefused(url, f"host {host} is loopback")
    try:
        literal = parse_host(host)
    except ValueError as e:
        raise FetchRefused(url, str(e)) from None
    problem = _address_problem(str(literal), allowed) if literal is not None else None
    if problem:
        raise FetchRefused(url, f"host {host} is {literal}: {problem}")


async def post_guarded(
    client: httpx.AsyncClient, url: str, content: bytes, headers: dict[str, str], policy: FetchPolicy
) -> int:
    """POST `content` to `url` through the same guard as a media fetch (every DNS answer checked, the
    request pinned to the checked IP), following no redirect. Returns the status code; raises
    FetchRefused for a URL the guard refuses and FetchFailed for a network failure."""
    allowed = _allowed_set(policy.allow_hosts)
    hop = await _check_hop(_parse_url(url), policy, allowed)
    request = _pinned_request(client, hop, policy, "POST", content, headers)
    try:
        async with asyncio.timeout(policy.total_timeout_s):
            response = await client.send(request, follow_redirects=False)
    except TimeoutError:
        raise FetchFailed(url, f"no answer within {policy.total_timeout_s:g} s", code="timeout") from None
    except httpx.RequestError as e:
        raise _transport_error(url, e) from None
    return response.status_code
