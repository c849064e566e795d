"""Console sign-in: server-side sessions in Redis, the session cookie, and the CSRF checks.

A session is a random id in an HttpOnly, SameSite=Strict cookie scoped to `/console`; Redis keeps only the
id's SHA-256 (`{p}:console:session:{sha256}`, a hash of the tenant, the SHA-256 of the API key that opened
it and the session's CSRF token), for `SESSION_TTL_S`. A session is worth what its key is worth: it is
refused as soon as the key is no longer in the API's key table (producer/auth.py: a key revoked with
`mmq keys revoke` or removed from config signs its sessions out on their next request), and it opens only
the console, never `/api` or `/v1` (the cookie is not even sent there).

CSRF: every state-changing request (a POST) must carry the session's token — a hidden form field or the
`X-CSRF-Token` header — compared in constant time, and, when the browser says where it comes from, come
from this site (`Sec-Fetch-Site`, else `Origin`). Sign-in itself is guarded by a login token (double submit:
a SameSite=Strict cookie and the same value in the form), so another site cannot sign a browser into an
account of its choosing. Why a cookie and not a bearer key kept in the page: producer/console/__init__.py.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from redis.asyncio import Redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from producer.auth import KeyTable, hash_key

COOKIE = "mmq_console"
LOGIN_COOKIE = "mmq_console_login"
COOKIE_PATH = "/console"
SESSION_TTL_S = 12 * 3600
LOGIN_TTL_S = 3600
MAX_FORM_BYTES = 8 * 1024  # a console form holds a token or an API key: nothing larger is read


@dataclass(frozen=True)
class Session:
    tenant: str
    csrf: str
    key_hash: str


class SignInRequired(Exception):
    """No session, or one that is over: pages redirect to sign-in, fragments and media answer 401."""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Sessions:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, sid: str) -> str:
        return f"{self.prefix}:console:session:{_digest(sid)}"

    async def open(self, api_key: str, keys: KeyTable) -> tuple[str, Session] | None:
        """A new session for a known API key (None for an unknown one): its cookie value and itself."""
        key_hash = hash_key(api_key)
        tenant = await keys.tenant_of_hash(key_hash) if api_key else None
        if tenant is None:
            return None
        sid, session = secrets.token_urlsafe(32), Session(tenant, secrets.token_urlsafe(32), key_hash)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key(sid), mapping={"tenant": tenant, "csrf": session.csrf, "key": key_hash})
        pipe.expire(self.key(sid), SESSION_TTL_S)
        await pipe.execute()
        return sid, session

    async def get(self, sid: str | None, keys: KeyTable) -> Session | None:
        if not sid or len(sid) > 128:
            return None
        raw = await self.redis.hgetall(self.key(sid))
        if not raw:
            return None
        v = {_text(k): _text(x) for k, x in raw.items()}
        session = Session(v.get("tenant", ""), v.get("csrf", ""), v.get("key", ""))
        # the key that opened it must still be a key of the same tenant
        if not session.tenant or await keys.tenant_of_hash(session.key_hash) != session.tenant:
            return None
        return session

    async def close(self, sid: str | None) -> None:
        if sid and len(sid) <= 128:
            await self.redis.delete(self.key(sid))


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site. Sec-Fetch-Site, which every
    current browser sends and no proxy rewrites, decides; without it, Origin's host must be this one
    (its scheme is not compared: behind a TLS-terminating proxy the app sees http). A client that sends
    neither (curl, an old browser) is judged by its token alone."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")} - {""}
    return urlsplit(origin).netloc in hosts


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form of at most MAX_FORM_BYTES (413 beyond; the rest is never read). The console's
    forms carry a token or a key: this bounds what an anonymous sign-in request can make the server read."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise HTTPException(413, f"a console form is at most {MAX_FORM_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"a console form is at most {MAX_FORM_BYTES} bytes")
    if not body:
        return {}
    if content_type != "application/x-www-form-urlencoded":
        raise HTTPException(415, "console forms are application/x-www-form-urlencoded")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16))
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "malformed form") from None


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())


async def check_csrf(request: Request, session: Session) -> dict[str, str]:
    """The request's form, once its CSRF token (form field `csrf` or header X-CSRF-Token) is the
    session's and its origin is this one; 403 otherwise."""
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    header = request.headers.get("x-csrf-token")
    if header is not None and tokens_match(session.csrf, header):
        return await read_form(request)
    form = await read_form(request)
    if not tokens_match(session.csrf, form.get("csrf")):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    return form
