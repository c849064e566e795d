"""The README's promise: a corrupt image fails in the worker before any provider is paid; AVIF is an
image (decoded and converted where a provider does not take it) and HEIC is refused by name (issue: a
truncated JPEG reached the provider; AVIF/HEIC were sniffed as audio/mp4)."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from mmq.contract import JobStatus
from mmq.errors import InvalidJob
from mmq.media import sniff, to_data_url
from tests.conftest import chat_body
from worker.pipeline import run_job
from worker.prepare import image_facts


def _image(fmt: str, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 90, 30)).save(buf, fmt)
    return buf.getvalue()


HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64


def test_avif_and_heic_are_images_not_audio():
    assert sniff(_image("AVIF")) == "image/avif"
    assert sniff(HEIC_HEAD) == "image/heic"


class Provider(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(await request.aread())
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "ok"}}]})


async def _run(make_runtime, data: bytes, mime: str):
    provider = Provider()
    rt, producer = make_runtime(provider)
    job = await producer.submit_job("/v1/chat/completions", chat_body(to_data_url(data, mime)), tenant="t")
    await run_job({"mmq": rt}, job.id)
    return await rt.records.get_job(job.id), provider


async def test_a_truncated_jpeg_fails_before_any_provider_call(make_runtime):
    whole = _image("JPEG", (640, 480))
    done, provider = await _run(make_runtime, whole[: len(whole) * 2 // 3], "image/jpeg")
    assert done.status is JobStatus.failed and done.error.type == "invalid_media", done.error
    assert "could not be decoded" in done.error.message
    assert provider.bodies == []  # nothing paid


async def test_an_avif_image_is_decoded_and_sent_in_a_type_the_provider_takes(make_runtime):
    done, provider = await _run(make_runtime, _image("AVIF"), "image/avif")
    assert done.status is JobStatus.succeeded, done.error
    [body] = provider.bodies
    assert b"image/avif" not in body and (b"data:image/jpeg" in body or b"data:image/png" in body)


async def test_a_heic_photo_is_refused_by_name():
    # (at submit the producer already refuses its type; this is the worker's own check, for stored media)
    with pytest.raises(InvalidJob) as refused:
        await image_facts(HEIC_HEAD, "photos/cat.heic")
    assert "photos/cat.heic" in str(refused.value) and "HEIC" in str(refused.value)
    assert "JPEG or PNG" in str(refused.value)
