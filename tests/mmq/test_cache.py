"""Cache keys: what makes two requests the same job, at each level; the perceptual index on real Redis."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from PIL import Image, PngImagePlugin

from mmq.cache import Cache, CacheEntry, cache_key
from mmq.connections import connect
from mmq.contract import CacheLevel, CacheOptions, JobResult
from mmq.fingerprint import Fingerprints, blob_digest, pixel_fingerprint
from mmq.request_models import BLOB_SCHEME, Kind
from mmq.storage import blob_key
from tests.conftest import chat_body, data_url


def photo(seed: int = 1, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A noisy picture: lossy codecs really change its pixels, unlike a flat colour."""
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata(
        [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])]
    )
    return img.resize((size[0] * 2, size[1] * 2), Image.Resampling.BILINEAR)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


async def key(
    body: dict,
    *,
    kind: Kind = Kind.chat,
    level: CacheLevel = CacheLevel.exact,
    tenant: str = "t",
    config: dict | None = None,
    metadata: dict | None = None,
    media: dict | None = None,
    load=None,
) -> str | None:
    async def no_load(ref: str) -> bytes | None:
        return None

    options = CacheOptions(level=level)
    return await cache_key(
        kind,
        body,
        tenant=tenant,
        config=config,
        metadata=metadata or {},
        media=media,
        options=options,
        fingerprint=Fingerprints(level, load or no_load),
    )


PNG = encode(photo(), "PNG")


async def test_spelled_out_defaults_and_output_neutral_fields_do_not_change_the_key():
    plain = chat_body(data_url(PNG))
    spelled = chat_body(data_url(PNG))
    spelled["messages"][0]["content"][1]["image_url"]["detail"] = "auto"
    spelled |= {"n": 1, "temperature": 1, "user": "u-42", "metadata": {"run": "x"}, "store": False}
    assert await key(plain) == await key(spelled)

    as_string = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    as_parts = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
    assert await key(as_string) == await key(as_parts)


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(temperature=0.2),
        lambda b: b.update(model="gpt-4o"),
        lambda b: b["messages"][0]["content"][0].update(text="Describe it briefly."),
        lambda b: b["messages"][0]["content"][1]["image_url"].update(detail="low"),
        lambda b: b.update(max_tokens=50),
    ],
)
async def test_anything_that_can_change_the_answer_changes_the_key(change):
    body = chat_body(data_url(PNG))
    changed = chat_body(data_url(PNG))
    change(changed)
    assert await key(body) != await key(changed)


async def test_tenant_routing_config_and_downscaling_are_part_of_the_key():
    body = chat_body(data_url(PNG))
    base = await key(body)
    assert base != await key(body, tenant="other")
    assert base != await key(body, config={"provider": "anthropic"})
    assert base != await key(body, media={"max_side": 512})
    # routing metadata only matters when the config routes on it
    single = {"provider": "openai"}
    assert await key(body, config=single, metadata={"a": 1}) == await key(
        body, config=single, metadata={"a": 2}
    )
    conditional = {
        "strategy": {"mode": "conditional", "conditions": [], "default": "x"},
        "targets": [{"name": "x", "provider": "openai"}],
    }
    assert await key(body, config=conditional, metadata={"a": 1}) != await key(
        body, config=conditional, metadata={"a": 2}
    )


async def test_the_same_bytes_as_a_data_url_or_a_stored_blob_give_one_key():
    ref = BLOB_SCHEME + blob_key(hashlib.sha256(PNG).hexdigest(), "image/png")
    assert blob_digest(ref) == hashlib.sha256(PNG).hexdigest()
    assert await key(chat_body(data_url(PNG))) == await key(chat_body(ref))  # no read needed at exact level


async def test_an_http_image_the_producer_cannot_fetch_leaves_the_key_to_the_worker():
    assert await key(chat_body("https://example.com/a.png")) is None


async def test_audio_is_keyed_by_its_bytes_not_its_file_name():
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28)
    a = {"model": "whisper-1", "file": data_url(wav, "audio/wav"), "filename": "monday.wav"}
    b = {"model": "whisper-1", "file": data_url(wav, "audio/wav"), "filename": "tuesday.wav"}
    c = {"model": "whisper-1", "file": data_url(wav + b"\x01", "audio/wav"), "filename": "monday.wav"}
    assert await key(a, kind=Kind.transcription) == await key(b, kind=Kind.transcription)
    assert await key(a, kind=Kind.transcription) != await key(c, kind=Kind.transcription)


def with_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "PNG", exif=exif.tobytes())


async def test_pixels_level_matches_lossless_re_encodings_and_other_metadata_but_not_changed_pixels():
    img = photo()
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "catalog-export 2.1")
    same_picture = {
        "png": PNG,
        "png with text metadata": encode(img, "PNG", pnginfo=info),
        "png, max compression": encode(img, "PNG", compress_level=9),
        "lossless webp": encode(img, "WEBP", lossless=True),
        "tiff": encode(img, "TIFF"),
        "bmp": encode(img, "BMP"),
        "rotated pixels with an orientation tag that rotates them back": with_orientation(
            img.transpose(Image.Transpose.ROTATE_90), 6
        ),
    }
    keys = {
        name: await key(chat_body(data_url(data)), level=CacheLevel.pixels)
        for name, data in same_picture.items()
    }
    assert len(set(keys.values())) == 1, keys
    exact = {await key(chat_body(data_url(data))) for data in same_picture.values()}
    assert len(exact) == len(same_picture)  # exact level: every encoding is its own job

    jpeg = encode(img, "JPEG", quality=90)
    decoded_to_png = encode(Image.open(io.BytesIO(jpeg)), "PNG")
    assert await key(chat_body(data_url(jpeg)), level=CacheLevel.pixels) == await key(
        chat_body(data_url(decoded_to_png)), level=CacheLevel.pixels
    )
    assert await key(chat_body(data_url(jpeg)), level=CacheLevel.pixels) != keys["png"]  # lossy: other pixels

    changed = img.copy()
    changed.putpixel((3, 3), (0, 0, 0) if img.getpixel((3, 3)) != (0, 0, 0) else (255, 255, 255))
    assert await key(chat_body(data_url(encode(changed, "PNG"))), level=CacheLevel.pixels) != keys["png"]


async def test_pixels_level_reads_stored_blobs_and_falls_back_to_bytes_for_undecodable_data():
    ref = BLOB_SCHEME + blob_key(hashlib.sha256(PNG).hexdigest(), "image/png")
    reads: list[str] = []

    async def load(r: str) -> bytes | None:
        reads.append(r)
        return PNG

    assert await key(chat_body(ref), level=CacheLevel.pixels, load=load) == await key(
        chat_body(data_url(encode(photo(), "WEBP", lossless=True))), level=CacheLevel.pixels
    )
    assert reads == [ref]
    assert await pixel_fingerprint(b"\x89PNG\r\n\x1a\n" + b"not really") is None
    corrupt = data_url(b"\x89PNG\r\n\x1a\n" + b"not really")
    assert await key(chat_body(corrupt), level=CacheLevel.pixels) == await key(chat_body(corrupt))


async def test_perceptual_keys_carry_the_hash_beside_a_scope_without_the_image():
    # a tint keeps the mean colour inside one coarse bucket (a grey mean sits on a bucket edge)
    base = Image.blend(photo(), Image.new("RGB", photo().size, (40, 150, 90)), 0.5)
    recompressed = Image.open(io.BytesIO(encode(base, "JPEG", quality=80)))  # other pixels, same picture
    same_layout = Image.blend(photo(seed=99), Image.new("RGB", base.size, (40, 150, 90)), 0.5)
    k1, k2, k3 = [
        await key(chat_body(data_url(encode(img, "PNG"))), level=CacheLevel.perceptual)
        for img in (base, recompressed, same_layout)
    ]
    scope = k1.split(":")[1]
    assert k1.startswith("p:") and k2.split(":")[1] == scope == k3.split(":")[1]
    bits = [int(k.split(":")[2], 16) for k in (k1, k2, k3)]
    assert (bits[0] ^ bits[1]).bit_count() <= 4 < (bits[0] ^ bits[2]).bit_count()


async def test_perceptual_level_never_matches_flat_images_of_other_colours_or_shapes():
    """A dHash sees only gradients: every flat swatch has the same one. The coarse colour and aspect
    ratio in the scope keep a blue swatch from taking a red one's caption."""
    red = encode(Image.new("RGB", (30, 20), (200, 0, 0)), "PNG")
    blue = encode(Image.new("RGB", (30, 20), (0, 0, 200)), "PNG")
    wide_red = encode(Image.new("RGB", (60, 20), (200, 0, 0)), "PNG")
    big_red = encode(Image.new("RGB", (300, 200), (200, 0, 0)), "PNG")  # the same picture, larger
    keys = [
        await key(chat_body(data_url(x)), level=CacheLevel.perceptual) for x in (red, blue, wide_red, big_red)
    ]
    scopes = [k.split(":")[1] for k in keys]
    assert scopes[0] != scopes[1] and scopes[0] != scopes[2]
    assert keys[0] == keys[3]


def test_band_index_finds_every_hash_within_the_guaranteed_distance():
    cache = Cache(connect("redis://127.0.0.1:6379/13"), bands=8)  # no Redis call is made here
    rng = random.Random(5)
    for _ in range(500):
        h = rng.getrandbits(64)
        flipped = h
        for bit in rng.sample(range(64), rng.randrange(0, 8)):  # up to bands-1 differing bits
            flipped ^= 1 << bit
        assert set(cache._bands_of([h])) & set(cache._bands_of([flipped]))


async def test_perceptual_lookup_on_real_redis_returns_the_nearest_entry_within_the_distance(redis_url):
    redis = connect(redis_url)
    try:
        cache = Cache(redis, "mmqtest", bands=8)
        scope = "s" * 64
        base = 0x0F0F_F0F0_1234_5678
        stored = {base: "job_a", base ^ 0b111: "job_b"}  # 0 and 3 bits from `base`
        for bits, job in stored.items():
            await cache.put(
                f"p:{scope}:{bits:016x}", CacheEntry(job_id=job, result=JobResult(body_key="b/x"))
            )
        two_off = base ^ (1 << 40) ^ (1 << 2)
        found = await cache.find_near(
            f"p:{scope}:{two_off:016x}", CacheOptions(level="perceptual", threshold=2)
        )
        assert found is not None and found.job_id == "job_a"
        far = base ^ 0xFF00_0000_0000_0000
        assert await cache.find_near(f"p:{scope}:{far:016x}", CacheOptions(level="perceptual")) is None
        other_scope = f"p:{'o' * 64}:{base:016x}"
        assert await cache.find_near(other_scope, CacheOptions(level="perceptual")) is None
    finally:
        await redis.aclose()
