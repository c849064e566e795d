"""Plain helpers shared by the provider adapter tests: a recording transport, the simulator client type,
Pillow images and OpenAI-shaped request parts. The fixtures that build simulator clients: conftest.py."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image

from mmq.simulator import SimulatorConfig, create_app, encode_speech_wav
from tests.conftest import data_url, png_bytes
from worker.providers.base import AudioInput

PDF = b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n2 0 obj << /Type /Page >> endobj\n%%EOF\n"


# ------------------------------------------------------------------------------------------- transports
class Recorder(httpx.AsyncBaseTransport):
    """Keeps every request, body read, for wire assertions, then hands it to the wrapped transport."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


def mock(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.AsyncClient, Recorder]:
    """A client answered by `answer`, and the recorder that keeps what it sent."""
    transport = Recorder(httpx.MockTransport(answer))
    return httpx.AsyncClient(transport=transport), transport


def refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing should have been sent: {request.url}")


class Sim(httpx.AsyncClient):
    """A client wired to an in-process simulator app (relative URLs go to http://sim)."""

    app: Any
    recorder: Recorder

    @classmethod
    def start(cls, **knobs: Any) -> Sim:
        app = create_app(SimulatorConfig(**knobs))
        recorder = Recorder(httpx.ASGITransport(app=app))
        client = cls(transport=recorder, base_url="http://sim")
        client.app, client.recorder = app, recorder
        return client

    @property
    def sent(self) -> httpx.Request:
        """The last request this client sent."""
        return self.recorder.requests[-1]

    @property
    def faults(self) -> Any:
        """The simulator's fault script: each added fault answers one request."""
        return self.app.state.sim.faults


# ----------------------------------------------------------------------------------------------- media
def image(colour: tuple[int, int, int], fmt: str = "PNG", size: tuple[int, int] = (60, 40)) -> bytes:
    """A one-colour image; the simulator's captions read its size, format and colour back."""
    return png_bytes(colour, size, fmt)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decoded(item: dict[str, Any]) -> Image.Image:
    """The image in an OpenAI images answer's `b64_json` item, loaded."""
    img = Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
    img.load()
    return img


def wav_input(text: str) -> AudioInput:
    """Simulator speech of `text`, as the worker hands audio to an adapter."""
    return AudioInput(data=encode_speech_wav(text), content_type="audio/wav", filename="speech.wav")


def form_fields(request: httpx.Request) -> dict[str, list[str]]:
    """Text fields of a multipart body (the `file` part is reported by its filename)."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    fields: dict[str, list[str]] = {}
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)[1].decode()  # type: ignore[index]
        filename = re.search(rb'filename="([^"]+)"', head)
        fields.setdefault(name, []).append(filename[1].decode() if filename else value[:-2].decode())
    return fields


# --------------------------------------------------------------------------------- OpenAI request parts
def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def image_part(url: str, detail: str = "auto") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def file_part(data: bytes, mime: str, filename: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"file_data": data_url(data, mime)}
    if filename:
        spec["filename"] = filename
    return {"type": "file", "file": spec}
