"""One deployment, one store: every process that shares a Redis must share its MMQ_STORAGE_URL.

Requests, media and results live in the store and the records in Redis point into it, so an API that
writes to `./mmq-data` in one folder and a worker reading `./mmq-data` in another fail every job with
"stored input … is missing", long after the mistake. Each process checks at start: the store holds a
marker object with a random id (created on first use) and Redis remembers the first id it saw; a
process whose store carries another id (or none that Redis knows) is on the wrong store and stops with
a message naming MMQ_STORAGE_URL, before it writes anything.
"""

from __future__ import annotations

import uuid
from typing import Any

from mmq.keys import Keys
from mmq.storage import BlobNotFound, Storage

MARKER = "mmq-store-id"  # the marker object's storage key


class StoreMismatch(Exception):
    """This process's store is not the one the others on this Redis use."""


async def store_id(storage: Storage) -> str:
    """The store's id, created on first use (the id re-read after writing: two first writers agree)."""
    try:
        return (await storage.get(MARKER)).decode().strip()
    except BlobNotFound:
        await storage.put(MARKER, uuid.uuid4().hex.encode())
        return (await storage.get(MARKER)).decode().strip()


async def check_shared_store(redis: Any, storage: Storage, prefix: str = "mmq") -> None:
    """Raises StoreMismatch unless `storage` is the store this Redis's deployment uses (the first process
    to check registers its store)."""
    mine = await store_id(storage)
    key = Keys(prefix).store()
    await redis.set(key, mine, nx=True)
    theirs = await redis.get(key)
    theirs = theirs.decode() if isinstance(theirs, bytes) else theirs
    if theirs != mine:
        raise StoreMismatch(
            f"MMQ_STORAGE_URL={storage.url} is not the store the other mmq processes on this Redis use "
            "(its marker differs): the API, the CLI and every worker must share one MMQ_STORAGE_URL "
            "(an absolute folder or an s3:// URL; a relative file:// path depends on where each starts)"
        )
