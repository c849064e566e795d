"""Media made ready per provider: conversion, downscaling, fetching, refusals — never a silent drop."""

from __future__ import annotations

import base64
import copy
import io

import httpx
import pytest
from aiohttp import web
from PIL import Image

from mmq.errors import InvalidJob
from mmq.fetch import FetchPolicy
from mmq.media import parse_data_url, sniff
from mmq.request_models import Kind
from tests.conftest import data_url
from worker.media_ready import MediaOptions, ready_for
from worker.providers import REGISTRY, MediaRules

BYTES_PROVIDERS = ["anthropic", "gemini", "bedrock"]


def image(fmt: str, size=(120, 80), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new("RGB", size, colour).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def chat(*urls: str, detail: str | None = None) -> dict:
    parts: list[dict] = [{"type": "text", "text": "what is this?"}]
    for url in urls:
        img: dict = {"url": url}
        if detail:
            img["detail"] = detail
        parts.append({"type": "image_url", "image_url": img})
    return {"model": "m", "messages": [{"role": "user", "content": parts}]}


def sent_images(request: dict) -> list[bytes]:
    return [
        parse_data_url(p["image_url"]["url"])[1]
        for p in request["messages"][0]["content"]
        if p["type"] == "image_url"
    ]


@pytest.fixture
async def client():
    async with httpx.AsyncClient() as c:
        yield c


@pytest.mark.parametrize("provider", BYTES_PROVIDERS)
@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("GIF", "image/gif"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("BMP", "image/bmp")],
)
async def test_each_format_reaches_the_provider_in_a_type_it_takes(provider, fmt, mime, client):
    rules = REGISTRY[provider].media
    original = image(fmt)
    out, report = await ready_for(chat(data_url(original, mime)), rules, provider, client)
    [sent] = sent_images(out)
    assert sniff(sent) in rules.image_types
    with Image.open(io.BytesIO(sent)) as img:
        assert img.size == (120, 80) and img.convert("RGB").getpixel((5, 5))[0] > 150  # same picture
    assert report.converted == (mime not in rules.image_types)
    if mime in rules.image_types:
        assert sent == original  # accepted as it is: untouched


async def test_an_image_over_the_side_limit_is_downscaled_keeping_its_aspect(client):
    rules = MediaRules(max_image_side=500)
    out, report = await ready_for(chat(data_url(image("PNG", (2000, 1000)))), rules, "p", client)
    [sent] = sent_images(out)
    with Image.open(io.BytesIO(sent)) as img:
        assert img.size == (500, 250)
    assert report.downscaled == 1 and report.bytes_out < report.bytes_in


async def test_proactive_downscaling_applies_even_where_the_provider_would_take_the_original(client):
    out, report = await ready_for(
        chat(data_url(image("JPEG", (1600, 1200)), "image/jpeg")),
        REGISTRY["openai"].media,
        "openai",
        client,
        MediaOptions(max_side=800),
    )
    [sent] = sent_images(out)
    with Image.open(io.BytesIO(sent)) as img:
        assert max(img.size) == 800
    assert report.as_usage()["downscaled"] == 1


async def test_detail_low_downscales_where_the_provider_has_no_such_switch(client):
    big = data_url(image("PNG", (1024, 1024)))
    out, _ = await ready_for(chat(big, detail="low"), MediaRules(), "p", client)
    with Image.open(io.BytesIO(sent_images(out)[0])) as img:
        assert img.size == (512, 512)
    out, _ = await ready_for(chat(big, detail="low"), REGISTRY["openai"].media, "openai", client)
    assert out == chat(big, detail="low")  # OpenAI reads `detail` itself


async def test_an_image_that_cannot_fit_the_byte_limit_fails_clearly(client):
    noisy = Image.effect_noise((600, 600), 100).convert("RGB")
    buf = io.BytesIO()
    noisy.save(buf, "PNG")
    rules = MediaRules(image_types=frozenset({"image/png"}), max_image_bytes=2_000)
    with pytest.raises(InvalidJob, match=r"messages\[0\]\.content\[1\].*2000-byte limit"):
        await ready_for(chat(data_url(buf.getvalue())), rules, "p", client)


async def test_too_many_images_fail_the_job_instead_of_dropping_some(client):
    url = data_url(image("PNG"))
    with pytest.raises(InvalidJob, match="3 images in one request; p takes at most 2"):
        await ready_for(chat(url, url, url), MediaRules(max_images=2), "p", client)


async def test_documents_csv_goes_as_text_and_a_spreadsheet_is_refused(client):
    csv = "data:text/csv;base64," + base64.b64encode(b"sku,colour\n1,red\n").decode()
    req = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": csv}}]}],
    }
    rules = MediaRules(document_types=frozenset({"application/pdf", "text/plain"}))
    out, _ = await ready_for(req, rules, "p", client)
    assert out["messages"][0]["content"][0]["file"]["file_data"].startswith("data:text/plain;base64,")
    xlsx = "data:application/zip;base64," + base64.b64encode(b"PK\x03\x04" + b"\0" * 40).decode()
    req["messages"][0]["content"][0]["file"]["file_data"] = xlsx
    with pytest.raises(InvalidJob, match="does not take"):
        await ready_for(req, rules, "p", client)


@pytest.fixture
async def image_server():
    png = image("PNG", (40, 30), (0, 0, 220))

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="text/plain")  # the type is sniffed, not trusted

    app = web.Application()
    app.router.add_get("/p.png", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/p.png", png
    await runner.cleanup()


async def test_a_remote_url_is_fetched_for_a_provider_that_needs_bytes(image_server, client):
    url, png = image_server
    opts = MediaOptions(fetch=FetchPolicy(allow_hosts=frozenset({"127.0.0.1"})))
    out, report = await ready_for(chat(url), MediaRules(remote_urls=False), "p", client, opts)
    assert sent_images(out) == [png] and report.fetched == 1
    out, _ = await ready_for(
        chat(url), MediaRules(remote_urls=True), "p", client, opts, provider_fetches=True
    )
    assert out == chat(url)  # a provider's public endpoint fetches it itself
    out, _ = await ready_for(chat(url), MediaRules(remote_urls=True), "p", client, opts)
    assert sent_images(out) == [png]  # a self-hosted one is handed the bytes, fetched through the guard


async def test_a_loopback_url_is_refused_without_an_allow_list(image_server, client):
    url, _ = image_server
    with pytest.raises(InvalidJob, match=r"127\.0\.0\.1"):
        await ready_for(chat(url), MediaRules(remote_urls=False), "p", client)


async def test_an_image_prepare_checked_is_not_decoded_or_encoded_again_when_it_fits(client, monkeypatch):
    """Each image is sniffed once, opened by Pillow once and base64-encoded once (by prepare); the media
    stage decides from what prepare learned, and decodes only an image it must change."""
    from worker import media_ready
    from worker.prepare import prepare

    png = image("PNG", (600, 400))
    request = chat(data_url(png))
    facts: dict = {}
    await prepare(Kind.chat, request, storage=None, facts=facts)  # type: ignore[arg-type]
    [found] = facts.values()
    assert (found.mime, found.width, found.height, found.nbytes) == ("image/png", 600, 400, len(png))

    def no_second_look(*args, **kwargs):
        raise AssertionError("the image was opened or decoded again")

    monkeypatch.setattr(media_ready, "_size", no_second_look)
    monkeypatch.setattr(media_ready, "parse_data_url", no_second_look)
    out, report = await ready_for(request, MediaRules(), "p", client, MediaOptions(known=facts))
    assert out == request and sent_images(out) == [png] and report.bytes_in == len(png)

    monkeypatch.undo()  # an image that must shrink is decoded, once, by the media stage
    out, report = await ready_for(
        request, MediaRules(max_image_side=300), "p", client, MediaOptions(known=facts)
    )
    assert report.downscaled == 1 and Image.open(io.BytesIO(sent_images(out)[0])).size == (300, 200)


# ----------------------------------------------------------------------------- gs:// (Vertex only)
class _NoNetwork(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"the worker must never fetch {request.url}")


def _gs_chat() -> dict:
    req = chat("gs://bucket/shots/cat.png", detail="low")
    pdf = {"type": "file", "file": {"file_data": "gs://docs/report.pdf", "filename": "report.pdf"}}
    req["messages"][0]["content"].append(pdf)
    return req


async def test_gs_uris_go_to_vertex_as_they_are_and_are_never_fetched():
    async with httpx.AsyncClient(transport=_NoNetwork()) as no_network:
        out, report = await ready_for(
            _gs_chat(), REGISTRY["vertex"].media, "vertex", no_network, MediaOptions(max_side=256)
        )
    assert out == _gs_chat() and report.as_usage() == {}


@pytest.mark.parametrize("provider", ["gemini", "openai", "anthropic", "bedrock", "azure-openai"])
async def test_gs_uris_fail_the_job_at_any_other_target_naming_the_part(provider):
    async with httpx.AsyncClient(transport=_NoNetwork()) as no_network:
        with pytest.raises(InvalidJob) as e:
            await ready_for(_gs_chat(), REGISTRY[provider].media, provider, no_network)
    assert e.value.type == "invalid_media"
    assert str(e.value).startswith(
        "messages[0].content[1]: gs://bucket/shots/cat.png is a Cloud Storage URI, which only a Vertex AI "
        f"target (provider 'vertex') reads; {provider} cannot"
    )


async def test_prepare_leaves_gs_uris_for_the_media_stage(tmp_path):
    from mmq.storage import open_storage
    from worker.prepare import prepare

    request = _gs_chat()
    await prepare(Kind.chat, request, open_storage(f"file://{tmp_path}"))
    assert request == _gs_chat()


async def test_the_request_is_never_changed_and_is_passed_on_as_it_is_when_everything_fits(client):
    rules = REGISTRY["anthropic"].media
    fits = chat(data_url(image("PNG"), "image/png"))
    out, _ = await ready_for(fits, rules, "anthropic", client)
    assert out is fits  # nothing to change: no copy of the request is made
    big = chat(data_url(image("PNG"), "image/png"), data_url(image("PNG", size=(4000, 1000)), "image/png"))
    before = copy.deepcopy(big)
    out, report = await ready_for(big, rules, "anthropic", client, MediaOptions(max_side=1000))
    assert big == before  # the fallback targets still get the request as submitted
    assert out is not big and report.downscaled == 1
    assert out["messages"][0]["content"][1] == big["messages"][0]["content"][1]  # the fitting one kept
    assert out["messages"][0]["content"][2] != big["messages"][0]["content"][2]
