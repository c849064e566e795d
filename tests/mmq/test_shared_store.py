"""One deployment, one store (mmq/shared_store.py) on a real Redis: processes that start together on a
fresh deployment agree on its store; a process on another store is stopped, at once once the deployment
is established."""

from __future__ import annotations

import asyncio
import time

import pytest

from mmq.connections import connect
from mmq.shared_store import MARKER, StoreMismatch, check_shared_store
from mmq.storage import LocalStorage


class SlowStore(LocalStorage):
    """A store whose calls take a moment, as S3's do, each process's writes its own while: processes
    starting together interleave (one writes its marker after another has read its own back)."""

    def __init__(self, root, write_s: float) -> None:
        super().__init__(root)
        self.write_s = write_s

    async def get(self, key: str) -> bytes:
        await asyncio.sleep(0.01)
        return await super().get(key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.sleep(self.write_s)
        await super().put(key, data)


@pytest.fixture
async def redis(redis_url):
    r = connect(redis_url)
    yield r
    await r.aclose()


async def test_processes_starting_together_on_a_fresh_deployment_agree_on_its_store(redis, tmp_path):
    # a compose file brings the API and the workers up at once: each sees an empty store; the store's
    # last writer would win where Redis' first did, and every process after would be refused
    stores = [SlowStore(tmp_path / "store", write_s=0.01 + 0.03 * i) for i in range(8)]
    await asyncio.gather(*(check_shared_store(redis, s, "t-race") for s in stores))
    marker = (await stores[0].get(MARKER)).decode()
    assert (await redis.get("t-race:store")).decode() == marker
    assert await redis.pttl("t-race:store") == -1  # established: the claim made permanent
    await check_shared_store(redis, LocalStorage(tmp_path / "store"), "t-race")  # a later process too


async def test_a_process_on_another_store_is_stopped_at_once_once_established(redis, tmp_path):
    await check_shared_store(redis, LocalStorage(tmp_path / "store"), "t-other")
    started = time.monotonic()
    with pytest.raises(StoreMismatch, match="MMQ_STORAGE_URL"):
        await check_shared_store(redis, LocalStorage(tmp_path / "elsewhere"), "t-other")
    assert time.monotonic() - started < 5  # an empty store against an established one: no waiting
    other = LocalStorage(tmp_path / "marked")
    await other.put(MARKER, b"another-deployment")
    with pytest.raises(StoreMismatch):
        await check_shared_store(redis, other, "t-other")


async def test_a_first_process_that_died_before_its_marker_is_taken_over(redis, tmp_path):
    await redis.set("t-dead:store", "never-written", ex=1)  # its claim, and nothing in any store
    store = LocalStorage(tmp_path / "store")
    await check_shared_store(redis, store, "t-dead", wait_s=10)
    assert (await redis.get("t-dead:store")).decode() == (await store.get(MARKER)).decode()
