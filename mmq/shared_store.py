"""One deployment, one store: every process that shares a Redis must share its MMQ_STORAGE_URL.

Requests, media and results live in the store and the records in Redis point into it, so an API that
writes to `./mmq-data` in one folder and a worker reading `./mmq-data` in another fail every job with
"stored input … is missing", long after the mistake. Each process checks at start: the store holds a
marker object with a random id and Redis remembers it; a process whose store carries another id (or
none, once the deployment is established) is on the wrong store and stops with a message naming
MMQ_STORAGE_URL, before it writes anything.

The first registration is decided in Redis, not in the store: processes of a fresh deployment often
start together (compose brings the API and the workers up at once), and a store's last writer wins
where Redis' SET NX has exactly one winner. The winner claims the id for CLAIM_S, writes its marker,
then makes the claim permanent; the others wait for that marker (a claim whose winner died lapses, and
one of them takes over). An empty store against an established deployment fails at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from mmq.keys import Keys
from mmq.storage import BlobNotFound, Storage

MARKER = "mmq-store-id"  # the marker object's storage key


class StoreMismatch(Exception):
    """This process's store is not the one the others on this Redis use."""


CLAIM_S = 10  # how long a first process has to write its marker before another may take over
WAIT_S = 15.0  # how long a process waits for a first process's marker


async def _marker(storage: Storage) -> str | None:
    try:
        return (await storage.get(MARKER)).decode().strip()
    except BlobNotFound:
        return None


async def check_shared_store(
    redis: Any, storage: Storage, prefix: str = "mmq", wait_s: float = WAIT_S
) -> None:
    """Raises StoreMismatch unless `storage` is the store this Redis's deployment uses (the first process
    to check registers its store)."""
    key = Keys(prefix).store()
    deadline = time.monotonic() + wait_s
    while True:
        mine = await _marker(storage)
        if mine is not None:
            await redis.set(key, mine, nx=True)  # (a store from before the registration: adopted)
            if _text(await redis.get(key)) == mine:
                return
            raise _mismatch(storage)
        candidate = uuid.uuid4().hex
        if await redis.set(key, candidate, nx=True, ex=CLAIM_S):  # the deployment's first process
            await storage.put(MARKER, candidate.encode())
            await redis.persist(key)
            return
        # another process registered first: if this is its store, its marker lands in a moment
        if await redis.pttl(key) == -1:  # established (maybe just now): a store still without it is wrong
            if await _marker(storage) is None:
                raise _mismatch(storage)
            continue
        if time.monotonic() > deadline:
            raise _mismatch(storage)
        await asyncio.sleep(0.1)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _mismatch(storage: Storage) -> StoreMismatch:
    return StoreMismatch(
        f"MMQ_STORAGE_URL={storage.url} is not the store the other mmq processes on this Redis use "
        "(its marker differs): the API, the CLI and every worker must share one MMQ_STORAGE_URL "
        "(an absolute folder or an s3:// URL; a relative file:// path depends on where each starts)"
    )
