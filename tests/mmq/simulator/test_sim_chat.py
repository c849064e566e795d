from __future__ import annotations

import base64
import io
import struct
import zlib

import httpx
from PIL import Image

from mmq.simulator import colour_name, describe_image


def image_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (300, 200), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def vision_request(*urls: str, text: str = "What is in this picture?") -> dict[str, object]:
    parts: list[dict[str, object]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": parts}]}


def test_describe_image_and_colour_names() -> None:
    info = describe_image(image_bytes((209, 42, 42)))
    assert info == {
        "width": 300,
        "height": 200,
        "format": "PNG",
        "dominant_rgb": (209, 42, 42),
        "colour": "red",
    }
    # a mostly-green image with a small red square is still green
    img = Image.new("RGB", (100, 100), (30, 160, 40))
    img.paste((255, 0, 0), (0, 0, 20, 20))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert describe_image(buf.getvalue())["colour"] == "green"
    expected = {
        (255, 0, 0): "red",
        (0, 0, 255): "blue",
        (255, 255, 0): "yellow",
        (255, 165, 0): "orange",
        (128, 0, 128): "purple",
        (255, 192, 203): "pink",
        (0, 255, 255): "cyan",
        (255, 255, 255): "white",
        (0, 0, 0): "black",
        (128, 128, 128): "grey",
        (139, 69, 19): "brown",
    }
    assert {rgb: colour_name(rgb) for rgb in expected} == expected


async def test_red_png_is_described(sim: httpx.AsyncClient) -> None:
    resp = await sim.post("/chat/completions", json=vision_request(data_url(image_bytes((209, 42, 42)))))
    assert resp.status_code == 200
    assert resp.headers["x-mmq-simulator"] == "1"
    assert resp.headers["x-request-id"].startswith("sim-")
    body = resp.json()
    content = body["choices"][0]["message"]["content"]
    assert content == (
        "[mmq simulator] Image 1: 300x200 PNG, mostly red (#d12a2a). Prompt: What is in this picture?"
    )
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-sim-")
    assert body["model"] == "gpt-4o-mini"
    assert body["system_fingerprint"] == "mmq-simulator"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["refusal"] is None
    usage = body["usage"]
    assert usage["prompt_tokens"] > 85 + 170  # one high-detail tile at least
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_two_images_in_order_and_deterministic_id(sim: httpx.AsyncClient) -> None:
    req = vision_request(
        data_url(image_bytes((20, 40, 230), (64, 32), "JPEG"), "image/jpeg"),
        data_url(image_bytes((240, 220, 30), (10, 10))),
    )
    first = (await sim.post("/chat/completions", json=req)).json()
    content = first["choices"][0]["message"]["content"]
    assert "Image 1: 64x32 JPEG, mostly blue" in content
    assert "Image 2: 10x10 PNG, mostly yellow" in content
    assert content.index("Image 1") < content.index("Image 2")
    second = (await sim.post("/chat/completions", json=req)).json()
    assert second["id"] == first["id"]


async def test_text_only_n_and_max_tokens(sim: httpx.AsyncClient) -> None:
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there " * 40}]
    body = (await sim.post("/chat/completions", json={"model": "m", "messages": msgs, "n": 3})).json()
    assert len(body["choices"]) == 3
    assert body["choices"][2]["index"] == 2
    content = body["choices"][0]["message"]["content"]
    assert content == "[mmq simulator] You said: " + ("hello there " * 40)[:200]

    short = await sim.post("/chat/completions", json={"model": "m", "messages": msgs, "max_tokens": 3})
    choice = short.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["message"]["content"]) <= 12
    assert short.json()["usage"]["completion_tokens"] == 3


async def test_corrupt_images_are_rejected(sim: httpx.AsyncClient) -> None:
    for url in ("data:image/png;base64,not*base64!!", data_url(b"\x89PNG\r\n\x1a\n truncated garbage")):
        resp = await sim.post("/chat/completions", json=vision_request(url))
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["code"] == "invalid_image_format"
        assert error["type"] == "invalid_request_error"
        assert error["message"] == "You uploaded an unsupported image. Please make sure your image is valid."
        assert resp.headers["x-mmq-simulator"] == "1"


async def test_request_validation(sim: httpx.AsyncClient) -> None:
    bad_json = await sim.post(
        "/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"
    no_model = await sim.post("/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert no_model.status_code == 400
    empty = await sim.post("/chat/completions", json={"model": "m", "messages": []})
    assert empty.status_code == 400
    assert empty.json()["error"]["param"] == "messages"
    assert set(empty.json()["error"]) == {"message", "type", "param", "code"}


async def test_http_image_urls(make_sim) -> None:
    client = make_sim()
    png = image_bytes((0, 200, 0), (40, 30))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ok.png":
            return httpx.Response(200, content=png)
        return httpx.Response(404)

    client.app.state.sim.http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    ok = await client.post("/chat/completions", json=vision_request("https://img.example/ok.png"))
    assert "Image 1: 40x30 PNG, mostly green" in ok.json()["choices"][0]["message"]["content"]
    gone = await client.post("/chat/completions", json=vision_request("https://img.example/missing.png"))
    assert gone.status_code == 400
    assert gone.json()["error"]["code"] == "invalid_image_url"
    assert gone.json()["error"]["message"] == "Error while downloading https://img.example/missing.png."


async def test_pdf_file_parts(sim: httpx.AsyncClient) -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Pages /Count 2 >>\n<< /Type /Page >>\n<< /Type /Page >>\n%%EOF"
    part = {"type": "file", "file": {"filename": "doc.pdf", "file_data": data_url(pdf, "application/pdf")}}
    req = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "sum"}, part]}]}
    resp = await sim.post("/chat/completions", json=req)
    assert resp.json()["choices"][0]["message"]["content"] == (
        "[mmq simulator] File 1: PDF (doc.pdf), about 2 pages. Prompt: sum"
    )
    part["file"]["file_data"] = data_url(b"plain text", "text/plain")
    assert (await sim.post("/chat/completions", json=req)).status_code == 400


async def test_routes_without_v1_prefix_and_unknown_route(sim: httpx.AsyncClient) -> None:
    req = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    resp = await sim.post("http://sim/chat/completions", json=req)
    assert resp.status_code == 200
    missing = await sim.post("/nope", json={})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert missing.headers["x-mmq-simulator"] == "1"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


async def test_decompression_bomb_guard_stays_on(sim: httpx.AsyncClient) -> None:
    # a tiny PNG claiming 40000x40000 pixels: Pillow refuses it before decoding anything
    ihdr = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(100)))
    resp = await sim.post("/chat/completions", json=vision_request(data_url(png + png_chunk(b"IEND", b""))))
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_image_format"
    assert "decompression-bomb" in resp.json()["error"]["message"]


def test_a_product_on_a_plain_backdrop_is_named_by_its_own_colour() -> None:
    img = Image.new("RGB", (320, 320), (235, 235, 235))
    img.paste((30, 60, 200), (100, 60, 220, 300))  # a blue product, ~28% of the frame
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    info = describe_image(buf.getvalue())
    assert info["colour"] == "white" and info["subject_colour"] == "blue"
    assert "subject_colour" not in describe_image(image_bytes((209, 42, 42)))
