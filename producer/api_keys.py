"""API keys kept in Redis, so that `mmq keys create|list|revoke` take effect on the API's next request,
with no restart and no config file to edit.

A key is shown once, when it is made; Redis keeps only its SHA-256 (`{p}:apikey:{sha256}`, mmq/keys.py)
with its tenant, a name, when it was made, its first 8 characters (`mmq_AbCd`, to tell keys apart in a
list) and, once revoked, when. Nothing kept can be turned back into the key. Keys of `MMQ_API_KEYS` /
`MMQ_API_KEYS_FILE` (the configured ones) have no record until revoked: revoking one writes a record
that says so, and a revoked record wins over the configuration (producer/auth.py reads both).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from mmq.keys import Keys

PREFIX_CHARS = 8  # "mmq_" and 4 random characters: 24 of the key's 256 random bits
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "mmq_" + secrets.token_urlsafe(32)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class KeyInfo:
    """What is known of a key, never the key: its hash, tenant, name, when made, first characters."""

    key_hash: str
    tenant: str
    name: str = ""
    created: float | None = None
    prefix: str = ""
    revoked: float | None = None
    source: str = "mmq keys"  # or "MMQ_API_KEYS" / "MMQ_API_KEYS_FILE": configured, not made in Redis

    @property
    def id(self) -> str:
        """A short handle for `mmq keys revoke` (the hash's first 12 hex digits)."""
        return self.key_hash[:12]


class ApiKeyStore:
    def __init__(self, redis: Redis, prefix: str = "mmq") -> None:
        self.redis = redis
        self.keys = Keys(prefix)

    async def lookup(self, key_hash: str) -> tuple[str, bool] | None:
        """(tenant, revoked) of a key's record, or None when it has none. One round trip."""
        tenant, revoked = await self.redis.hmget(self.keys.api_key(key_hash), "tenant", "revoked")
        if tenant is None and revoked is None:
            return None
        return _text(tenant), revoked is not None

    async def create(self, tenant: str, name: str = "") -> tuple[str, KeyInfo]:
        """A new key for `tenant`: the key itself (to show once) and what is kept of it."""
        key = new_key()
        info = KeyInfo(hash_key(key), tenant, name, time.time(), key[:PREFIX_CHARS])
        pipe = self.redis.pipeline(transaction=True)
        record = {"tenant": tenant, "name": name, "created": repr(info.created), "prefix": info.prefix}
        pipe.hset(self.keys.api_key(info.key_hash), mapping=record)
        pipe.zadd(self.keys.api_keys(), {info.key_hash: info.created})
        await pipe.execute()
        return key, info

    async def all(self) -> list[KeyInfo]:
        """Every key with a record, oldest first."""
        hashes = [_text(h) for h in await self.redis.zrange(self.keys.api_keys(), 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for h in hashes:
            pipe.hgetall(self.keys.api_key(h))
        found = []
        for h, raw in zip(hashes, await pipe.execute(), strict=True):
            if not raw:
                continue
            v = {_text(k): _text(x) for k, x in raw.items()}
            found.append(
                KeyInfo(
                    key_hash=h,
                    tenant=v.get("tenant", ""),
                    name=v.get("name", ""),
                    created=float(v["created"]) if v.get("created") else None,
                    prefix=v.get("prefix", ""),
                    revoked=float(v["revoked"]) if v.get("revoked") else None,
                    source=v.get("source") or "mmq keys",
                )
            )
        return found

    async def revoke(self, info: KeyInfo) -> float:
        """Marks the key revoked (a configured key gets a record saying so); returns when."""
        now = time.time()
        record = {"tenant": info.tenant, "revoked": repr(now)}
        if info.source != "mmq keys":  # a configured key: the record remembers where it came from
            record["source"] = info.source
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.api_key(info.key_hash), mapping=record)
        pipe.zadd(self.keys.api_keys(), {info.key_hash: info.created or now}, nx=True)
        await pipe.execute()
        return now
