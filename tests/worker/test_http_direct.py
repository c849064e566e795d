"""The worker's direct path to its aiohttp pool sends what httpx would and fails as httpx would.

A raw asyncio server on loopback records the bytes received, so headers and body are checked on the
wire, not on a mock."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest

from mmq.errors import parse_retry_after
from worker.http import make_client
from worker.providers.base import WireRequest
from worker.providers.send import _through_httpx


async def _server(reply: bytes | None):
    """A one-route HTTP server: records each request's bytes; answers `reply` (None: never answers)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        seen.append(head + await reader.readexactly(length))
        if reply is None:
            await asyncio.sleep(30)
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions", seen


def _gzip_json_reply(body: dict) -> bytes:
    data = gzip.compress(json.dumps(body).encode())
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
        + f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
        + data
    )


def _headers(raw: bytes) -> dict[str, str]:
    lines = raw.split(b"\r\n\r\n")[0].decode().split("\r\n")[1:]
    return {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}


async def test_direct_sends_the_same_body_and_headers_as_httpx_and_decodes_the_answer():
    server, url, seen = await _server(_gzip_json_reply({"choices": [{"message": {"content": "é"}}]}))
    client = make_client(timeout_s=10)
    body = {"model": "m", "messages": [{"role": "user", "content": "naïve ✓"}], "temperature": 0.5}
    try:
        wire = WireRequest(url=url, headers={"authorization": "Bearer sk-x"}, json=body)
        direct = await client.direct("POST", url, wire.headers, json=body)
        via_httpx = await _through_httpx(client, wire)
    finally:
        await client.aclose()
        server.close()
    assert direct.status_code == 200 and direct.json() == via_httpx.json()
    assert direct.json()["choices"][0]["message"]["content"] == "é"
    sent_direct, sent_httpx = seen
    assert sent_direct.split(b"\r\n\r\n", 1)[1] == sent_httpx.split(b"\r\n\r\n", 1)[1]  # the same bytes
    a, b = _headers(sent_direct), _headers(sent_httpx)
    for name in ("authorization", "content-type", "user-agent", "accept", "content-length"):
        assert a[name] == b[name], name
    assert a["user-agent"] == "mmq/0.1"


async def test_a_refused_connection_is_httpx_s_connect_error():
    server, url, _ = await _server(b"")
    server.close()
    await server.wait_closed()  # nothing listens on that port now
    client = make_client(timeout_s=5)
    try:
        with pytest.raises(httpx.TransportError):
            await client.direct("POST", url, {}, json={})
    finally:
        await client.aclose()


async def test_no_answer_is_httpx_s_timeout():
    server, url, _ = await _server(None)
    client = make_client(timeout_s=0.5)
    try:
        with pytest.raises(httpx.TimeoutException):
            await client.direct("POST", url, {}, json={"a": 1})
    finally:
        await client.aclose()
        server.close()


async def test_a_client_on_a_test_transport_has_no_direct_path():
    client = make_client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    assert await client.direct("POST", "http://127.0.0.1:1/", {}, json={}) is None
    await client.aclose()


async def test_an_error_answer_reads_as_httpx_s_would_headers_text_and_charset():
    body = "quota dépassée".encode("latin-1")
    reply = (
        b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=ISO-8859-1\r\n"
        b"Retry-After-Ms: 1500\r\nX-RateLimit-Remaining-Requests: 0\r\n"
        + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )
    server, url, _ = await _server(reply)
    client = make_client(timeout_s=10)
    try:
        answer = await client.direct("POST", url, {}, json={})
    finally:
        await client.aclose()
        server.close()
    assert answer.status_code == 429 and not answer.is_success and answer.reason_phrase == "Too Many Requests"
    assert answer.headers.get("retry-after-ms") == "1500"  # names are case-insensitive, as in httpx
    assert answer.headers.get("x-ratelimit-remaining-requests") == "0"
    assert answer.text == "quota dépassée"  # the declared charset, not UTF-8
    assert parse_retry_after(answer.headers) == 1.5
