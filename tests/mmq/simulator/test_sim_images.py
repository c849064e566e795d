from __future__ import annotations

import base64
import io

import httpx
from PIL import Image


async def generate(sim: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await sim.post("/images/generations", json={"model": "gpt-image-1", **body})


async def test_generates_real_png_of_requested_size(sim: httpx.AsyncClient) -> None:
    resp = await generate(sim, prompt="a lighthouse at dusk", size="320x200", n=2)
    assert resp.status_code == 200
    body = resp.json()
    assert len(body["data"]) == 2
    assert body["data"][0]["revised_prompt"] == "[mmq simulator] a lighthouse at dusk"
    assert body["usage"]["total_tokens"] > 0
    images = [Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))) for item in body["data"]]
    for img in images:
        assert img.format == "PNG"
        assert img.size == (320, 200)
        assert img.text["Software"] == "mmq simulator"
        assert img.text["prompt"] == "a lighthouse at dusk"
    # the index changes the background colour; the same request renders identical bytes
    corners = [img.convert("RGB").getpixel((0, 0)) for img in images]
    assert corners[0] != corners[1]
    # the caption is really drawn: the centre band holds a second (ink) colour
    assert len(images[0].convert("RGB").getcolors()) == 2
    again = (await generate(sim, prompt="a lighthouse at dusk", size="320x200", n=2)).json()
    assert again["data"][0]["b64_json"] == body["data"][0]["b64_json"]


async def test_default_size_and_url_mode(sim: httpx.AsyncClient) -> None:
    resp = await generate(sim, prompt="x", response_format="url", size="auto")
    url = resp.json()["data"][0]["url"]
    assert url.startswith("http://sim/") and "/sim/files/" in url and url.endswith(".png")
    file = await sim.get(url)
    assert file.status_code == 200
    assert file.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(file.content)).size == (1024, 1024)
    assert (await sim.get("http://sim/sim/files/unknown.png")).status_code == 404


async def test_image_request_validation(sim: httpx.AsyncClient) -> None:
    for body in (
        {"size": "1024x1024"},
        {"prompt": "", "size": "1024x1024"},
        {"prompt": "x", "size": "32x32"},
        {"prompt": "x", "size": "big"},
        {"prompt": "x", "n": 11},
        {"prompt": "x", "response_format": "jpeg"},
    ):
        resp = await generate(sim, **body)
        assert resp.status_code == 400, body
        assert resp.json()["error"]["type"] == "invalid_request_error"
