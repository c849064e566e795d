"""API keys: only their SHA-256 is kept in config, mapped to a tenant."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "mmq_" + secrets.token_urlsafe(32)


def bearer_token(header: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None."""
    return header[7:].strip() or None if header.lower().startswith("bearer ") else None


def tenant_for(token: str | None, keys: dict[str, str]) -> str | None:
    if not token:
        return None
    return keys.get(hash_key(token))


def current_tenant(request: Request) -> str:
    """The `/api` routes' dependency: the tenant of the request's bearer key, or a 401."""
    found = tenant_for(bearer_token(request.headers.get("authorization", "")), request.app.state.tenant_keys)
    if found is None:
        raise HTTPException(401, "missing or unknown API key (send Authorization: Bearer <key>)")
    return found


Tenant = Annotated[str, Depends(current_tenant)]
