"""API keys: only their SHA-256 is kept in config, mapped to a tenant."""

from __future__ import annotations

import hashlib
import secrets


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "mmq_" + secrets.token_urlsafe(32)


def tenant_for(token: str | None, keys: dict[str, str]) -> str | None:
    if not token:
        return None
    return keys.get(hash_key(token))
