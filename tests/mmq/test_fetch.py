"""mmq.fetch: the SSRF guard's address decisions, and fetches against a loopback server only.

No test may reach a non-loopback address even if the guard were broken: names go through a stub
resolver, refusals use a transport that answers nothing, and the real-server tests wrap the transport in
`LoopbackOnly`, which fails the test instead of connecting anywhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import pickle
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

from mmq.addresses import address_allowed, parse_host
from mmq.errors import InvalidJob, ProviderError
from mmq.fetch import (
    FetchedMedia,
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    fetch_media,
    system_resolver,
)
from tests.conftest import png_bytes
from worker.http import make_client

PNG = png_bytes((200, 30, 30))
LOOPBACK = frozenset({"127.0.0.1"})


# -- helpers -----------------------------------------------------------------------------------------


@dataclass
class StubResolver:
    """DNS for tests: fixed answers per name (a list of answers per call for rebinding), calls recorded."""

    answers: dict[str, list[str] | list[list[str]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, f"stub resolver does not know {host}")
        answer = self.answers[host]
        if answer and isinstance(answer[0], list):  # one answer per call: simulates rebinding
            return list(answer[min(self.calls.count(host), len(answer)) - 1])
        return list(answer)  # type: ignore[arg-type]


NAMES: dict[str, list[str] | list[list[str]]] = {
    "private.test": ["10.0.0.7"],
    "metadata.test": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
    "public-then-private.test": ["93.184.216.34", "192.168.0.10"],
    "private-then-public.test": ["192.168.0.10", "93.184.216.34"],
    "ula.test": ["2606:4700::1111", "fd00::5"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "cgnat.test": ["100.64.3.4"],
    "media.test": ["127.0.0.1"],
    "other.test": ["127.0.0.1"],
    "public.example": ["93.184.216.34"],
    "rebind.test": [["127.0.0.1"], ["10.0.0.1"]],
}


def policy(resolver: StubResolver, **overrides) -> FetchPolicy:
    base = {"allow_hosts": LOOPBACK, "resolver": resolver, "total_timeout_s": 5.0, "connect_timeout_s": 2.0}
    return FetchPolicy(**(base | overrides))


class LoopbackOnly(httpx.AsyncBaseTransport):
    """Passes a request on only if it targets a loopback IP literal (i.e. was pinned); records them all."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        try:
            pinned_to_loopback = ipaddress.ip_address(request.url.host).is_loopback
        except ValueError:
            pinned_to_loopback = False
        if not pinned_to_loopback:
            pytest.fail(f"a request left loopback or was not pinned to an IP: {request.url}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def inner_transport(kind: str, verify: ssl.SSLContext | bool = True) -> httpx.AsyncBaseTransport:
    if kind == "aiohttp":
        return AiohttpTransport(verify=verify)
    return httpx.AsyncHTTPTransport(verify=verify)


@pytest.fixture(params=["httpcore", "aiohttp"])
async def guarded(request) -> AsyncIterator[tuple[httpx.AsyncClient, LoopbackOnly]]:
    """The worker's client (make_client) over a real transport of each kind, behind LoopbackOnly."""
    guard = LoopbackOnly(inner_transport(request.param))
    client = make_client(transport=guard)
    yield client, guard
    await client.aclose()


@pytest.fixture
async def no_network() -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Request]]]:
    """A client whose transport never connects: refusals must happen before any request."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500, text="this transport should not have been used")

    client = make_client(transport=httpx.MockTransport(handler))
    yield client, seen
    await client.aclose()


# -- the loopback server -----------------------------------------------------------------------------


@dataclass
class Server:
    base: str
    port: int
    seen: list[tuple[str, str]]  # (path and query, Host header) per request

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


def _app(seen: list[tuple[str, str]]) -> web.Application:
    async def record(request: web.Request, handler):
        seen.append((request.path_qs, request.headers.get("Host", "")))
        return await handler(request)

    async def png(_: web.Request) -> web.Response:
        return web.Response(body=PNG, headers={"Content-Type": "text/plain"})  # a lying header

    async def text(_: web.Request) -> web.Response:
        return web.Response(body=b"just words", headers={"Content-Type": "Text/Plain; charset=utf-8"})

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.query["n"]), content_type="application/octet-stream")

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(int(request.query["n"]) // 500):
            await resp.write(b"y" * 500)
        await resp.write_eof()
        return resp

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(200):  # one byte every 50 ms: no read timeout ever fires
                await resp.write(b"z")
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["n"]), headers={"Retry-After": "7"})

    app = web.Application(middlewares=[web.middleware(record)])
    app.router.add_get("/png", png)
    app.router.add_get("/text", text)
    app.router.add_get("/sized", sized)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/status/{n}", status)
    return app


async def _start(
    seen: list[tuple[str, str]], ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(_app(seen), handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    seen: list[tuple[str, str]] = []
    runner, port = await _start(seen)
    yield Server(f"http://127.0.0.1:{port}", port, seen)
    await runner.cleanup()


# -- pure decisions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.0.0.1.", "10.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("fe80::1%25eth0", "fe80::1%eth0"),
        ("example.com", None),
        ("localhost", None),
        ("0x7f.example", None),
        ("xn--bcher-kva.de", None),
    ],
)
def test_parse_host(host: str, expected: str | None) -> None:
    assert parse_host(host) == (None if expected is None else ipaddress.ip_address(expected))


@pytest.mark.parametrize(
    "host", ["1.2.3.999", "256.0.0.0.1", "1.2.3.4.5", "08.0.0.1", "0xg.1", "a.1", "1..1", "[::zz]"]
)
def test_parse_host_rejects_numbers_that_are_not_addresses(host: str) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        parse_host(host)


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "127.255.255.254",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "172.31.255.255",
        "192.168.1.1",
        "fc00::1",
        "fd12:3456::1",
        "169.254.169.254",
        "169.254.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "100.64.0.1",
        "100.127.255.254",
        "192.0.2.10",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "not-an-ip",
    ],
)
def test_address_refused(ip: str) -> None:
    assert not address_allowed(ip, frozenset())


@pytest.mark.parametrize(
    "ip",
    ["8.8.8.8", "93.184.216.34", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_address_allowed(ip: str) -> None:
    assert address_allowed(ip, frozenset())


@pytest.mark.parametrize(
    ("ip", "allow", "expected"),
    [
        ("127.0.0.1", {"127.0.0.1"}, True),
        ("::ffff:127.0.0.1", {"127.0.0.1"}, True),  # the same address in IPv6 clothing
        ("127.0.0.1", {"2130706433"}, True),  # allow-list entries are normalised like hosts
        ("::1", {"[0:0::1]"}, True),
        ("127.0.0.2", {"127.0.0.1"}, False),
        ("10.0.0.1", {"127.0.0.1"}, False),
        ("2002:7f00:1::", {"127.0.0.1"}, False),  # a 6to4 tunnel is not the allowed host
    ],
)
def test_allow_hosts(ip: str, allow: Iterable[str], expected: bool) -> None:
    assert address_allowed(ip, allow) is expected


def test_errors_fit_the_pipeline_and_pickle() -> None:
    refused = FetchRefused("http://u:secret@example.com/a.png", "because")
    assert isinstance(refused, InvalidJob) and refused.type == "invalid_media"
    assert "http://example.com/a.png" in str(refused) and "secret" not in str(refused)
    failed = FetchFailed("http://example.com/a.png", "server answered 503", status=503, retryable=True)
    assert isinstance(failed, ProviderError) and failed.retryable and failed.provider == "fetch"
    for exc in (refused, failed):
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc) and str(copy) == str(exc) and copy.__dict__ == exc.__dict__


# -- refusals before any request ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.0.0.1:8080/x.png", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1"),
        ("http://[::ffff:a9fe:a9fe]/", "169.254.169.254"),
        ("http://1.2.3.999/", "Invalid IPv4"),  # httpx itself rejects this one
        ("http://1.2.3.4.5/", "not a valid IPv4"),
        ("http://a.0x1/", "not a valid IPv4"),
        ("https://private.test/a.png", "10.0.0.7"),
        ("http://metadata.test/latest/meta-data/", "169.254.169.254"),
        ("http://localhost/", "loopback"),
        ("http://LOCALHOST./", "loopback"),
        ("http://public-then-private.test/", "192.168.0.10"),
        ("http://private-then-public.test/", "192.168.0.10"),
        ("http://ula.test/", "fd00::5"),
        ("http://mapped.test/", "127.0.0.1"),
        ("http://cgnat.test/", "carrier-grade NAT"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://example.com/a.png", "scheme 'ftp'"),
        ("gopher://example.com:70/_x", "scheme 'gopher'"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme 'data'"),
        ("//example.com/a.png", "scheme '(none)'"),
        ("http:///a.png", "no host"),
    ],
)
async def test_refused_without_a_request(no_network, url: str, reason: str) -> None:
    client, seen = no_network
    with pytest.raises(FetchRefused) as caught:
        await fetch_media(client, url, policy(StubResolver(NAMES), allow_hosts=frozenset()))
    assert caught.value.type == "invalid_media"
    assert reason in str(caught.value)
    assert "refusing to fetch" in str(caught.value)
    assert seen == []


async def test_numeric_hosts_are_decided_without_dns(no_network) -> None:
    client, _ = no_network
    resolver = StubResolver(NAMES)
    for url in ("http://2130706433/", "http://0x7f000001/", "http://127.1/", "http://[::1]/"):
        with pytest.raises(FetchRefused):
            await fetch_media(client, url, policy(resolver, allow_hosts=frozenset()))
    assert resolver.calls == []


async def test_unknown_name_is_a_non_retryable_failure(no_network) -> None:
    client, seen = no_network
    with pytest.raises(FetchFailed) as caught:
        await fetch_media(client, "http://nowhere.test/a.png", policy(StubResolver(NAMES)))
    assert caught.value.code == "dns_error" and not caught.value.retryable
    assert seen == []


# -- pinning (mock transport: nothing leaves the process) --------------------------------------------


async def test_https_is_pinned_to_the_checked_ip_with_sni_and_host() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG, headers={"content-type": "application/octet-stream"})

    async with make_client(transport=httpx.MockTransport(handler)) as client:
        got = await fetch_media(client, "https://public.example/img/a.png?v=1", policy(StubResolver(NAMES)))
    assert got == FetchedMedia(PNG, "image/png", "https://public.example/img/a.png?v=1", sniffed=True)
    [request] = seen
    assert str(request.url) == "https://93.184.216.34/img/a.png?v=1"
    assert request.headers["host"] == "public.example"
    assert request.extensions["sni_hostname"] == "public.example"
    assert request.headers["connection"] == "close"  # httpcore pools by IP, not by SNI
    assert "cookie" not in request.headers


async def test_a_name_in_allow_hosts_may_resolve_to_a_private_address() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG)

    async with make_client(transport=httpx.MockTransport(handler)) as client:
        resolver = StubResolver(NAMES)
        got = await fetch_media(
            client, "http://private.test/a.png", policy(resolver, allow_hosts={"private.test"})
        )
        assert got.content_type == "image/png"
        # Only that name: another name with the same private answer is still refused.
        with pytest.raises(FetchRefused, match=r"10\.0\.0\.7"):
            await fetch_media(client, "http://Private.Test./a.png", policy(resolver, allow_hosts={"x.test"}))
    assert [(str(r.url), r.headers["host"]) for r in seen] == [("http://10.0.0.7/a.png", "private.test")]


async def test_statuses_map_to_retryable_or_not() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(int(request.url.path.strip("/")), headers={"retry-after": "7"})

    async with make_client(transport=httpx.MockTransport(handler)) as client:
        results = {}
        for status in (400, 403, 404, 410, 429, 500, 503):
            with pytest.raises(FetchFailed) as caught:
                await fetch_media(client, f"http://public.example/{status}", policy(StubResolver(NAMES)))
            results[status] = (caught.value.status, caught.value.retryable, caught.value.retry_after_s)
    assert results == {
        400: (400, False, None),
        403: (403, False, None),
        404: (404, False, None),
        410: (410, False, None),
        429: (429, True, 7.0),
        500: (500, True, 7.0),
        503: (503, True, 7.0),
    }


# -- against the loopback server ---------------------------------------------------------------------


async def test_png_is_sniffed_not_taken_from_the_header(guarded, server: Server) -> None:
    client, guard = guarded
    got = await fetch_media(client, server.url("/png"), policy(StubResolver()))
    assert got.data == PNG
    assert got.content_type == "image/png" and got.sniffed
    assert got.final_url == server.url("/png")
    assert [str(r.url) for r in guard.requests] == [server.url("/png")]


async def test_header_is_used_only_when_sniffing_finds_nothing(guarded, server: Server) -> None:
    client, _ = guarded
    got = await fetch_media(client, server.url("/text"), policy(StubResolver()))
    assert (got.data, got.content_type, got.sniffed) == (b"just words", "text/plain", False)


async def test_loopback_needs_the_allow_list(guarded, server: Server) -> None:
    client, guard = guarded
    with pytest.raises(FetchRefused, match="loopback"):
        await fetch_media(client, server.url("/png"), policy(StubResolver(), allow_hosts=frozenset()))
    assert guard.requests == [] and server.seen == []


async def test_a_name_is_pinned_to_its_checked_address(guarded, server: Server) -> None:
    client, guard = guarded
    resolver = StubResolver(NAMES)
    got = await fetch_media(client, server.url("/png", host="media.test"), policy(resolver))
    assert got.content_type == "image/png"
    assert got.final_url == server.url("/png", host="media.test")
    assert resolver.calls == ["media.test"]
    [request] = guard.requests
    assert request.url.host == "127.0.0.1"
    assert server.seen == [("/png", f"media.test:{server.port}")]


async def test_rebinding_answer_is_never_used(guarded, server: Server) -> None:
    """The name is resolved once per hop; the connection goes to that checked answer, not a later one."""
    client, guard = guarded
    resolver = StubResolver(NAMES)
    got = await fetch_media(client, server.url("/png", host="rebind.test"), policy(resolver))
    assert got.data == PNG
    assert resolver.calls == ["rebind.test"]
    assert [r.url.host for r in guard.requests] == ["127.0.0.1"]


async def test_redirect_is_followed_and_checked(guarded, server: Server) -> None:
    client, _ = guarded
    got = await fetch_media(client, server.url("/redirect?to=/png"), policy(StubResolver()))
    assert got.content_type == "image/png"
    assert got.final_url == server.url("/png")
    assert [p for p, _ in server.seen] == ["/redirect?to=/png", "/png"]


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.1/",
        "http://metadata.test/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "http://167772161/",  # 10.0.0.1 in decimal
        "http://0x7f000002:{port}/png",  # 127.0.0.2: loopback, but only 127.0.0.1 is allowed
        "http://[::1]:{port}/png",  # loopback, but only 127.0.0.1 is allowed
        "http://localhost:{port}/png",
        "file:///etc/passwd",
    ],
)
async def test_redirect_to_a_refused_host_is_not_followed(guarded, server: Server, target: str) -> None:
    client, guard = guarded
    target = target.format(port=server.port)
    with pytest.raises(FetchRefused) as caught:
        await fetch_media(client, server.url("/redirect?to=" + target), policy(StubResolver(NAMES)))
    assert "refusing to fetch" in str(caught.value)
    assert len(guard.requests) == 1  # only the allowed first hop was ever sent
    assert len(server.seen) == 1


async def test_redirect_limit(guarded, server: Server) -> None:
    client, _ = guarded
    with pytest.raises(FetchRefused, match="more than 3 redirects"):
        await fetch_media(client, server.url("/loop"), policy(StubResolver(), max_redirects=3))
    assert len(server.seen) == 4


async def test_body_at_the_limit_is_accepted(guarded, server: Server) -> None:
    client, _ = guarded
    got = await fetch_media(client, server.url("/sized?n=1000"), policy(StubResolver(), max_bytes=1000))
    assert len(got.data) == 1000 and got.content_type == "application/octet-stream" and not got.sniffed


async def test_oversize_content_length_is_refused_up_front(guarded, server: Server) -> None:
    client, _ = guarded
    with pytest.raises(FetchRefused, match="Content-Length 1001 exceeds the 1000-byte limit"):
        await fetch_media(client, server.url("/sized?n=1001"), policy(StubResolver(), max_bytes=1000))


async def test_oversize_body_without_content_length_is_refused(guarded, server: Server) -> None:
    client, _ = guarded
    with pytest.raises(FetchRefused, match="body exceeds the 1000-byte limit"):
        await fetch_media(client, server.url("/chunked?n=5000"), policy(StubResolver(), max_bytes=1000))


async def test_empty_body_is_refused(guarded, server: Server) -> None:
    client, _ = guarded
    with pytest.raises(FetchRefused, match="empty"):
        await fetch_media(client, server.url("/sized?n=0"), policy(StubResolver()))


async def test_trickling_server_is_cut_off_by_the_total_deadline(guarded, server: Server) -> None:
    client, _ = guarded
    started = time.perf_counter()
    with pytest.raises(FetchFailed) as caught:
        await fetch_media(client, server.url("/slow"), policy(StubResolver(), total_timeout_s=0.5))
    elapsed = time.perf_counter() - started
    assert caught.value.code == "timeout" and caught.value.retryable
    assert 0.4 < elapsed < 2.0


async def test_server_error_is_retryable(guarded, server: Server) -> None:
    client, _ = guarded
    with pytest.raises(FetchFailed) as caught:
        await fetch_media(client, server.url("/status/503"), policy(StubResolver()))
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after_s) == (503, True, 7.0)
    with pytest.raises(FetchFailed) as caught:
        await fetch_media(client, server.url("/status/404"), policy(StubResolver()))
    assert (caught.value.status, caught.value.retryable) == (404, False)


async def test_connection_refused_is_retryable(guarded) -> None:
    client, _ = guarded
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchFailed) as caught:
        await fetch_media(client, f"http://127.0.0.1:{port}/png", policy(StubResolver()))
    assert caught.value.retryable and caught.value.code in {"connection_error", "timeout"}


# -- https with a pinned IP: SNI and certificate checks still use the name ---------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ),
            *("-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=media.test"),
            *("-addext", "subjectAltName=DNS:media.test"),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return crt, key


@pytest.mark.parametrize("kind", ["httpcore", "aiohttp"])
async def test_https_pinned_ip_still_verifies_the_name(cert: tuple[Path, Path], kind: str) -> None:
    crt, key = cert
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    client_ctx = ssl.create_default_context(cafile=str(crt))
    client_ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT  # a bare self-signed test cert
    seen: list[tuple[str, str]] = []
    runner, port = await _start(seen, server_ctx)
    guard = LoopbackOnly(inner_transport(kind, verify=client_ctx))
    try:
        async with make_client(transport=guard) as client:
            resolver = StubResolver(NAMES)
            got = await fetch_media(client, f"https://media.test:{port}/png", policy(resolver))
            assert got.content_type == "image/png" and got.data == PNG
            assert guard.requests[0].url.host == "127.0.0.1"
            # Same IP, another name: the certificate (for media.test) must not be accepted.
            with pytest.raises(FetchFailed) as caught:
                await fetch_media(client, f"https://other.test:{port}/png", policy(resolver))
            # httpx-aiohttp maps aiohttp's certificate error to ConnectTimeout; either way it is no answer.
            assert caught.value.code in {"connection_error", "timeout"}
            assert "certificate" in str(caught.value).lower() or "ssl" in str(caught.value).lower()
    finally:
        await runner.cleanup()
    assert seen == [("/png", f"media.test:{port}")]


async def test_policy_defaults_and_system_resolver() -> None:
    p = FetchPolicy()
    assert (p.max_bytes, p.total_timeout_s, p.max_redirects, p.allow_hosts) == (
        20 * 1024 * 1024,
        30.0,
        5,
        frozenset(),
    )
    assert p.resolver is system_resolver
    assert await system_resolver("127.0.0.1") == ["127.0.0.1"]  # a numeric host: no DNS query is made
