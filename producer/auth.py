"""Who a bearer key acts for: one key table for every surface (/api, /v1, the console).

A key is known by its SHA-256 only, from three places, read on every request so that a change takes
effect on the next one, without a restart and without a cache to wait for:
- keys made by `mmq keys create`, kept in Redis (producer/api_keys.py): one HMGET per request, which
  also says whether a key was revoked. A revoked record wins over the two configured sources below;
- `MMQ_API_KEYS` (JSON `{sha256: tenant}`), read at start;
- `MMQ_API_KEYS_FILE` (the same shape), read again whenever the file changes (a stat per request): a key
  added to it works on the next request, one removed stops working. A file that no longer parses keeps
  the keys last read from it, with a warning in the log (at start, it stops the API as before).

The API's RequestGuard (producer/guard.py) resolves the key of every request with a body before reading
the body, and leaves the tenant it found in the request's state: the route's dependency reuses it, so a
request costs one look-up.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from redis.asyncio import Redis

from mmq.settings import Settings
from producer.api_keys import ApiKeyStore, KeyInfo, hash_key, new_key

__all__ = ["KeyTable", "Tenant", "bearer_token", "current_tenant", "hash_key", "new_key", "request_tenant"]

log = logging.getLogger(__name__)

RESOLVED = "mmq_tenant"  # the request state's field where the guard leaves the tenant it resolved
UNAUTHORIZED = "missing or unknown API key (send Authorization: Bearer <key>)"  # a revoked key is unknown


def bearer_token(header: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None."""
    return header[7:].strip() or None if header.lower().startswith("bearer ") else None


def read_keys_file(path: Path) -> dict[str, str]:
    """A keys file: a JSON object {sha256 hex: tenant}. ValueError naming what is wrong."""
    data: Any = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError('expected a JSON object {"<sha256 of the key>": "<tenant>", ...}')
    return data


class KeyTable:
    def __init__(self, settings: Settings) -> None:
        # MMQ_API_KEYS; a dict of its own that the app exposes as `app.state.tenant_keys`
        self.configured: dict[str, str] = dict(settings.api_keys)
        self.file = settings.api_keys_file
        self.store: ApiKeyStore | None = None
        self._file_keys: dict[str, str] = {}
        self._file_stamp: tuple[int, int, int] | None = None
        self.file_keys(strict=True)

    def bind(self, redis: Redis, prefix: str) -> None:
        """Reads the keys kept in Redis from now on (the app's lifespan, once Redis is open)."""
        self.store = ApiKeyStore(redis, prefix)

    def file_keys(self, *, strict: bool = False) -> dict[str, str]:
        """MMQ_API_KEYS_FILE's keys, read again when the file's modification time, size or inode changed."""
        if self.file is None:
            return {}
        try:
            st = os.stat(self.file)
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp == self._file_stamp:
            return self._file_keys
        if stamp is None:  # gone: its keys are gone too
            keys: dict[str, str] = {}
        else:
            try:
                keys = read_keys_file(self.file)
            except (OSError, ValueError) as e:
                if strict:
                    raise
                log.warning(
                    "MMQ_API_KEYS_FILE %s not read (%s); the keys last read from it stay", self.file, e
                )
                self._file_stamp = stamp  # warned once per change of the file, not per request
                return self._file_keys
        self._file_keys, self._file_stamp = keys, stamp
        return keys

    async def tenant_of_hash(self, key_hash: str) -> str | None:
        if self.store is not None:
            found = await self.store.lookup(key_hash)
            if found is not None:
                tenant, revoked = found
                return None if revoked else tenant
        return self.configured.get(key_hash) or self.file_keys().get(key_hash)

    async def tenant_of(self, token: str | None) -> str | None:
        return await self.tenant_of_hash(hash_key(token)) if token else None

    def configured_keys(self) -> list[KeyInfo]:
        """The keys of MMQ_API_KEYS and MMQ_API_KEYS_FILE (what `mmq keys list` shows beside Redis')."""
        found = {h: KeyInfo(h, t, source="MMQ_API_KEYS") for h, t in self.configured.items()}
        found |= {h: KeyInfo(h, t, source="MMQ_API_KEYS_FILE") for h, t in self.file_keys().items()}
        return list(found.values())


async def request_tenant(request: Request) -> str | None:
    """The tenant of the request's bearer key (None: no key, an unknown or a revoked one)."""
    state = request.scope.get("state")
    if isinstance(state, dict) and RESOLVED in state:
        return state[RESOLVED]
    keys: KeyTable = request.app.state.keys
    return await keys.tenant_of(bearer_token(request.headers.get("authorization", "")))


async def current_tenant(request: Request) -> str:
    """The `/api` routes' dependency: the tenant of the request's bearer key, or a 401."""
    found = await request_tenant(request)
    if found is None:
        raise HTTPException(401, UNAUTHORIZED, headers={"www-authenticate": "Bearer"})
    return found


Tenant = Annotated[str, Depends(current_tenant)]
