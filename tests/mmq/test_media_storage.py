from __future__ import annotations

import os

import pytest

from mmq.errors import parse_retry_after
from mmq.media import MediaError, parse_data_url, sniff
from mmq.storage import (
    INLINE_IO_BYTES,
    BlobNotFound,
    LocalStorage,
    StorageKeyError,
    open_storage,
    put_blob,
    validate_key,
)
from tests.conftest import data_url, png_bytes
from worker.retry import backoff_s


def test_sniff_trusts_bytes_not_names():
    assert sniff(png_bytes((1, 2, 3))) == "image/png"
    assert sniff(png_bytes((1, 2, 3), fmt="JPEG")) == "image/jpeg"
    assert sniff(b"%PDF-1.7\n...") == "application/pdf"
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "audio/wav"
    assert sniff(b"hello world") is None


def test_data_urls():
    mime, data = parse_data_url(data_url(b"abc", "image/png"))
    assert (mime, data) == ("image/png", b"abc")
    with pytest.raises(MediaError, match="base64"):
        parse_data_url("data:image/png;base64,***")
    with pytest.raises(MediaError, match="malformed"):
        parse_data_url("data:nothing")


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "/abs", "a//b", "", "a/./b", "a\\b"])
def test_storage_keys_cannot_escape_the_root(key, tmp_path):
    with pytest.raises(StorageKeyError):
        validate_key(key)
    with pytest.raises(StorageKeyError):
        LocalStorage(tmp_path).path(key)


async def test_blobs_are_content_addressed(tmp_path):
    storage = open_storage(f"file://{tmp_path}")
    data = png_bytes((9, 9, 9))
    k1 = await put_blob(storage, data, "image/png")
    k2 = await put_blob(storage, data, "image/png")
    assert k1 == k2 and k1.startswith("blobs/sha256/") and k1.endswith(".png")
    assert await storage.get(k1) == data
    assert len(list(tmp_path.rglob("*.png"))) == 1


def test_retry_after_in_every_form():
    assert parse_retry_after({"retry-after": "2"}) == 2
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"}, now=4096000000) > 0
    assert parse_retry_after({"retry-after": "garbage"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_capped_jittered_and_honours_retry_after():
    delays = [backoff_s(10, base_s=1, cap_s=8) for _ in range(200)]
    assert max(delays) <= 8 and min(delays) >= 0 and len(set(delays)) > 100
    assert all(backoff_s(1, base_s=1, cap_s=8, retry_after_s=2.0) >= 2.0 for _ in range(50))


async def test_many_writes_at_once_from_two_storages_on_one_folder_all_land(tmp_path):
    """Small writes run on the loop, large ones in threads; two LocalStorage objects on one folder (an
    API and a worker in one process) never share a temp name, and no temp file is left behind."""
    import asyncio

    from mmq.storage import INLINE_IO_BYTES, LocalStorage

    a, b = LocalStorage(tmp_path), LocalStorage(tmp_path)
    small, large = b"s" * 100, b"L" * (INLINE_IO_BYTES + 1)
    await asyncio.gather(
        *(
            store.put(f"results/t/{i}-{n}.bin", small if i % 2 else large)
            for n, store in enumerate((a, b))
            for i in range(20)
        )
    )
    for n in range(2):
        for i in range(20):
            assert await a.get(f"results/t/{i}-{n}.bin") == (small if i % 2 else large)
    assert not list(tmp_path.rglob(".tmp-*"))


async def test_local_files_read_back_whole_on_both_sides_of_the_inline_limit(tmp_path):
    storage = LocalStorage(tmp_path)
    for size in (0, 1, INLINE_IO_BYTES, INLINE_IO_BYTES + 1, 3 * INLINE_IO_BYTES + 7):
        data = os.urandom(size)
        await storage.put(f"r/f{size}", data)
        assert await storage.get(f"r/f{size}") == data
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.startswith(".tmp-")]  # no temp left
    for missing in ("r/none", "r"):  # a folder's name is no blob either
        with pytest.raises(BlobNotFound):
            await storage.get(missing)
