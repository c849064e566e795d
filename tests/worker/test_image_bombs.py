"""Decompression bombs: an image declaring more than `image_max_pixels` pixels is refused from its header,
before any pixel is decoded, at every place mmq decodes images (producer check, prepare's verification,
the cache fingerprints, the media stage).

The bombs are tiny and cheap to build: an 81 Mpx PNG of one grey is 79 KB of valid zlib, a GIF declaring a
9000x9000 screen is 37 bytes, an animated WebP declaring a 9000x9000 canvas 140 bytes. Decoded as the
worker used to, each cost it 300 MB to 1.3 GB.
"""

from __future__ import annotations

import functools
import hashlib
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import GifImagePlugin, Image, ImageFile, ImageOps, WebPImagePlugin

from mmq import media
from mmq.contract import CacheLevel, CacheOptions, JobStatus
from mmq.errors import InvalidJob
from mmq.fingerprint import Fingerprints, pixel_fingerprint
from mmq.request_models import Kind
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.options import LineError
from producer.submit import BatchLine, Producer
from tests.conftest import chat_body, data_url, png_bytes
from worker.media_ready import MediaOptions, ready_for
from worker.pipeline import run_job
from worker.prepare import check_image, prepare
from worker.providers import REGISTRY, MediaRules

W, H = 9000, 9000  # 81 Mpx: over the default limit, under Pillow's own warning (~89 Mpx)
PIXELS = "81,000,000 pixels"
WHERE = "messages[0].content[1]"


def _chunk(cid: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + cid + data + struct.pack(">I", zlib.crc32(cid + data))


@functools.cache
def png_bomb(w: int = W, h: int = H) -> bytes:
    """A valid greyscale PNG of one colour, streamed through zlib (never w*h bytes in memory at once)."""
    comp = zlib.compressobj(9)
    rows = b"\x00" * (w + 1) * 100  # 100 rows of a filter byte and w zeros
    idat = b"".join(comp.compress(rows) for _ in range(h // 100))
    idat += comp.compress(b"\x00" * (w + 1) * (h % 100)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_header(w: int, h: int) -> bytes:
    """Only a PNG's header, its pixel data cut off: enough for a check that must not decode."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def _small(fmt: str, **kw) -> bytearray:
    buf = io.BytesIO()
    Image.new("L" if fmt != "GIF" else "P", (2, 2)).save(buf, fmt, **kw)
    return bytearray(buf.getvalue())


def gif_bomb(w: int = W, h: int = H) -> bytes:
    """A 1x1 frame on a w x h logical screen: Pillow allocates the whole screen for frame 0."""
    gif = _small("GIF")
    gif[6:10] = struct.pack("<HH", w, h)
    return bytes(gif)


def webp_bomb(w: int = W, h: int = H) -> bytes:
    """An animated WebP of two 16x16 frames on a w x h canvas (VP8X)."""
    buf = io.BytesIO()
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    webp = bytearray(buf.getvalue())
    at = webp.index(b"VP8X") + 8 + 4  # chunk header, then flags + reserved
    webp[at : at + 6] = (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return bytes(webp)


def jpeg_bomb(w: int = W, h: int = H) -> bytes:
    jpeg = _small("JPEG")
    at = jpeg.index(b"\xff\xc0") + 5  # SOF0: marker, length, precision, then height, width
    jpeg[at : at + 4] = struct.pack(">HH", h, w)
    return bytes(jpeg)


def bmp_bomb(w: int = W, h: int = H) -> bytes:
    bmp = _small("BMP")
    bmp[18:26] = struct.pack("<ii", w, h)
    return bytes(bmp)


def tiff_bomb(w: int = W, h: int = H) -> bytes:
    tiff = _small("TIFF")
    assert tiff[:2] == b"II"
    ifd = struct.unpack_from("<I", tiff, 4)[0]
    for n in range(struct.unpack_from("<H", tiff, ifd)[0]):
        entry = ifd + 2 + 12 * n
        tag = struct.unpack_from("<H", tiff, entry)[0]
        if tag in (256, 257):  # ImageWidth, ImageLength: as LONGs
            struct.pack_into("<HHII", tiff, entry, tag, 4, 1, w if tag == 256 else h)
    return bytes(tiff)


BOMBS = {
    "png": png_bomb,
    "gif": gif_bomb,
    "webp": webp_bomb,
    "jpeg": jpeg_bomb,
    "bmp": bmp_bomb,
    "tiff": tiff_bomb,
}
PNG_BOMB = png_bomb()


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every pixel decode attempted (format names); the decode itself is stopped."""
    seen: list[str] = []

    def spy(self: ImageFile.ImageFile) -> None:
        seen.append(self.format or "?")
        raise RuntimeError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", spy)
    return seen


@pytest.fixture
async def client():
    async with httpx.AsyncClient() as c:
        yield c


def assert_refused(e: InvalidJob, pixels: str = PIXELS, limit: str = "50,000,000") -> None:
    message = str(e)
    assert e.type == "invalid_media"
    assert message.startswith(f"{WHERE}: ") and pixels in message
    assert f"limit of {limit} pixels" in message and "MMQ_IMAGE_MAX_PIXELS" in message


# ---------------------------------------------------------------- the one check


def test_the_default_is_well_below_pillows_guard():
    assert Settings.model_fields["image_max_pixels"].default == media.DEFAULT_IMAGE_MAX_PIXELS == 50_000_000
    assert media.DEFAULT_IMAGE_MAX_PIXELS < (Image.MAX_IMAGE_PIXELS or 0) * 0.6


@pytest.mark.parametrize("fmt", sorted(BOMBS))
def test_the_declared_size_is_read_from_the_header_and_refused_before_any_decode(fmt, decodes):
    bomb = BOMBS[fmt]()
    assert len(bomb) < 100_000
    with pytest.raises(InvalidJob) as e:
        media.open_image(bomb, media.DEFAULT_IMAGE_MAX_PIXELS, WHERE)
    assert_refused(e.value)
    assert "(9000x9000)" in str(e.value)
    assert decodes == []


@pytest.mark.parametrize(
    ("size", "pixels"), [((10_000, 10_000), "100,000,000 pixels"), ((20_000, 10_000), "200,000,000 pixels")]
)
def test_pillows_own_guard_is_reported_the_same_way(size, pixels):
    # 100 Mpx trips Pillow's warning (an error here), 200 Mpx its error: both read as our refusal
    with pytest.raises(InvalidJob) as e:
        media.open_image(png_header(*size), media.DEFAULT_IMAGE_MAX_PIXELS, WHERE)
    assert_refused(e.value, pixels)


def test_a_limit_above_pillows_guard_is_capped_by_it():
    with pytest.raises(InvalidJob) as e:
        media.open_image(png_header(10_000, 10_000), 10**9, WHERE)
    assert f"limit of {Image.MAX_IMAGE_PIXELS:,} pixels" in str(e.value)


def test_an_image_at_the_limit_opens_lazily():
    with media.open_image(png_bytes((1, 2, 3), (120, 80)), 120 * 80, WHERE) as img:
        assert img.size == (120, 80) and img.getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(InvalidJob, match=r"9,720 pixels \(120x81\)"):
        media.open_image(png_bytes((1, 2, 3), (120, 81)), 120 * 80, WHERE)


# ---------------------------------------------------------------- the media stage


@pytest.mark.parametrize("fmt", ["png", "gif", "webp"])
@pytest.mark.parametrize(
    "rules",
    [REGISTRY["openai"].media, REGISTRY["anthropic"].media, MediaRules(max_image_side=500)],
    ids=["as-is", "bytes", "downscaled"],
)
async def test_the_media_stage_refuses_a_bomb_without_decoding_it(fmt, rules, client, decodes):
    mime = f"image/{fmt}"
    with pytest.raises(InvalidJob) as e:
        await ready_for(chat_body(data_url(BOMBS[fmt](), mime)), rules, "p", client)
    assert_refused(e.value)
    assert decodes == []


async def test_the_media_stage_takes_its_limit_from_media_options(client):
    small = data_url(png_bytes((9, 9, 9), (64, 48)))
    with pytest.raises(InvalidJob) as e:
        await ready_for(chat_body(small), MediaRules(), "p", client, MediaOptions(max_pixels=3000))
    assert_refused(e.value, "3,072 pixels", "3,000")
    out, _ = await ready_for(chat_body(small), MediaRules(), "p", client, MediaOptions(max_pixels=3072))
    assert out == chat_body(small)


async def test_an_animated_image_is_decoded_first_frame_only(client, monkeypatch):
    """10 frames of 1000x1000 under a 2 Mpx limit: 10 Mpx in all, 1 Mpx decoded. The canvas is what is
    limited, not frames x canvas (ordinary short animations would be refused for nothing)."""
    frames = [Image.new("P", (1000, 1000), i) for i in range(10)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    seeks: list[int] = []
    real_seek = GifImagePlugin.GifImageFile.seek

    def seek(self: GifImagePlugin.GifImageFile, frame: int) -> None:
        seeks.append(frame)
        real_seek(self, frame)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "seek", seek)
    _, report = await ready_for(
        chat_body(data_url(buf.getvalue(), "image/gif")),
        MediaRules(max_image_side=100),
        "p",
        client,
        MediaOptions(max_pixels=2_000_000),
    )
    assert report.downscaled == 1 and set(seeks) == {0}


# ---------------------------------------------------------------- prepare's verification


async def test_prepare_refuses_a_bomb_before_verifying_it(decodes, tmp_path):
    with pytest.raises(InvalidJob) as e:
        await check_image(PNG_BOMB, WHERE)
    assert_refused(e.value)
    request = chat_body(data_url(PNG_BOMB))
    with pytest.raises(InvalidJob) as e:
        await prepare(Kind.chat, request, open_storage(f"file://{tmp_path}"))
    assert_refused(e.value)
    assert decodes == []


async def test_prepare_takes_its_limit_as_a_keyword(tmp_path):
    request = chat_body(data_url(png_bytes((9, 9, 9), (64, 48))))
    storage = open_storage(f"file://{tmp_path}")
    with pytest.raises(InvalidJob) as e:
        await prepare(Kind.chat, request, storage, max_pixels=3000)
    assert_refused(e.value, "3,072 pixels", "3,000")
    assert await prepare(Kind.chat, request, storage, max_pixels=3072) is None
    assert await check_image(png_bytes((9, 9, 9), (64, 48)), WHERE) == "image/png"


# ---------------------------------------------------------------- cache fingerprints


@pytest.mark.parametrize("level", [CacheLevel.pixels, CacheLevel.perceptual])
async def test_fingerprints_key_a_bomb_by_its_bytes_without_decoding_it(level, decodes):
    async def no_load(ref: str) -> bytes | None:
        return None

    assert await pixel_fingerprint(PNG_BOMB) is None
    found = await Fingerprints(level, no_load)(data_url(PNG_BOMB), "image")
    assert found is not None and found.token.startswith("sha256:") and found.phash is None
    assert decodes == []


async def test_fingerprints_take_their_limit_from_the_caller():
    async def no_load(ref: str) -> bytes | None:
        return None

    small = data_url(png_bytes((9, 9, 9), (64, 48)))
    assert (await Fingerprints(CacheLevel.pixels, no_load, 3000)(small, "image")).token.startswith("sha256:")
    assert (await Fingerprints(CacheLevel.pixels, no_load, 3072)(small, "image")).token.startswith("px:")


@pytest.mark.parametrize("orientation", [1, 6])
async def test_pixel_keys_are_what_they_were_when_hashed_in_strips(orientation):
    """The fingerprint hashes the upright RGBA in strips (memory): the digest is the whole-image one."""
    img = Image.effect_noise((300, 700), 64).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(buf.getvalue())) as opened:
        rgba = ImageOps.exif_transpose(opened).convert("RGBA")
    whole = hashlib.sha256(f"{rgba.width}x{rgba.height}:".encode() + rgba.tobytes()).hexdigest()
    found = await pixel_fingerprint(buf.getvalue())
    assert found is not None and found.token == "px:" + whole
    assert rgba.size == ((700, 300) if orientation == 6 else (300, 700))


# ---------------------------------------------------------------- producer and the whole job


@pytest.fixture
async def producer(tmp_path):
    from mmq.connections import embedded_redis

    redis = embedded_redis()
    settings = Settings(redis_url=None, storage_url=f"file://{tmp_path / 'store'}")
    yield Producer(redis, open_storage(settings.storage_url), settings)
    await redis.aclose()


async def test_the_producer_refuses_a_bomb_at_submit(producer, decodes, tmp_path):
    with pytest.raises(LineError) as e:
        await producer.submit_job("/v1/chat/completions", chat_body(data_url(PNG_BOMB)), tenant="t")
    assert WHERE in str(e.value) and PIXELS in str(e.value) and "MMQ_IMAGE_MAX_PIXELS" in str(e.value)
    batch = await producer.submit_batch(
        [BatchLine(body=chat_body(data_url(gif_bomb())), url="/v1/chat/completions", line_no=1)], tenant="t"
    )
    assert batch.counts.failed == 1 and batch.counts.queued == 0
    assert decodes == []
    assert [f for f in (tmp_path / "store").rglob("*") if f.is_file()] == []  # nothing stored


async def test_the_producer_uses_its_settings_and_leaves_corrupt_images_to_the_worker(producer):
    producer = Producer(producer.redis, producer.storage, Settings(redis_url=None, image_max_pixels=3000))
    with pytest.raises(LineError, match="limit of 3,000 pixels"):
        await producer.submit_job(
            "/v1/chat/completions", chat_body(data_url(png_bytes((9, 9, 9), (64, 48)))), tenant="t"
        )
    corrupt = png_bytes((1, 1, 1))[:40]
    job = await producer.submit_job("/v1/chat/completions", chat_body(data_url(corrupt)), tenant="t")
    assert job.status is JobStatus.queued


@pytest.mark.parametrize("level", [None, CacheLevel.exact, CacheLevel.pixels, CacheLevel.perceptual])
async def test_a_bomb_that_reaches_the_worker_fails_its_job_before_any_decode_or_call(
    make_runtime, level, decodes
):
    calls: list[httpx.Request] = []
    rt, producer = make_runtime(httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500)))
    # a producer with a looser limit than the worker's (or an older one) lets it through
    lenient = Producer(
        producer.redis, producer.storage, Settings(redis_url=None, image_max_pixels=85_000_000)
    )
    cache = CacheOptions(level=level) if level else False
    job = await lenient.submit_job(
        "/v1/chat/completions", chat_body(data_url(PNG_BOMB)), tenant="t", cache=cache
    )
    assert job.status is JobStatus.queued
    decodes.clear()  # the lenient producer may have tried, for its cache key
    await run_job({"mmq": rt}, job.id)
    rec = await rt.records.get_job(job.id)
    assert rec.status is JobStatus.failed and rec.error.type == "invalid_media"
    assert PIXELS in rec.error.message and "MMQ_IMAGE_MAX_PIXELS" in rec.error.message
    assert rec.attempts == [] and calls == [] and decodes == []


# ---------------------------------------------------------------- memory

_MEASURE = """
import asyncio, base64, io, sys
import httpx
from PIL import Image
from mmq.errors import InvalidJob
from mmq.fingerprint import pixel_fingerprint
from worker.media_ready import ready_for
from worker.prepare import check_image
from worker.providers import MediaRules

data = open(sys.argv[1], "rb").read()
url = "data:image/png;base64," + base64.b64encode(data).decode()
part = {"type": "image_url", "image_url": {"url": url}}
body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}


def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


async def main():
    async with httpx.AsyncClient() as client:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # peak RSS := current RSS: imports and set-up are not counted
        before = peak_mb()
        if sys.argv[2] == "decode":
            Image.open(io.BytesIO(data)).load()
        else:
            for step in (
                check_image(data, "x"),
                pixel_fingerprint(data),
                ready_for(body, MediaRules(max_image_side=500), "p", client),
            ):
                try:
                    await step
                except InvalidJob:
                    pass
        print(peak_mb() - before)


asyncio.run(main())
"""


def _peak_growth_mb(tmp_path: Path, mode: str) -> float:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc to measure peak RSS")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(PNG_BOMB)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb), mode],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return float(out.stdout)


def test_refusing_an_81_megapixel_png_does_not_allocate(tmp_path):
    """Peak RSS growth in a fresh process (Pillow's pixel buffers are C allocations tracemalloc does not
    see).
    Decoding the same 79 KB file, measured the same way, shows the measurement would catch a decode."""
    assert _peak_growth_mb(tmp_path, "decode") > 70  # 81 MB of greyscale pixels, at least
    assert _peak_growth_mb(tmp_path, "refuse") < 20
