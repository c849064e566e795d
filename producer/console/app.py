"""The console's ASGI app: its routes, its templates, its static files and the headers every answer gets.

A Starlette app of its own beside the API (producer/console/__init__.py says why it is reached through
a door of its own), sharing the API's state: Redis, records, storage, the producer and the key table are
read from the API app when a request comes, so the console sees exactly what the API sees.

Every answer carries a Content-Security-Policy that allows scripts, styles, images, media and fetches
from this origin only and no inline script or style at all (the one script is /console/static/console.js),
forbids framing, and, on media and downloads, also sandboxes the document: a file opened directly (an
SVG or HTML a provider returned, served as an attachment anyway) cannot run anything. Templates are
Jinja2 with autoescaping on for every template: custom_ids, prompts, captions, file names and error texts
are always text, never markup.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmq.budgets import dollars
from mmq.packs import Packs
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import Storage
from producer.auth import KeyTable
from producer.console.session import COOKIE, Session, Sessions, SignInRequired
from producer.progress import format_duration
from producer.submit import Producer

PREFIX = "/console"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
MEDIA_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
STATIC_FILES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}


# ------------------------------------------------------------------------------------------ templates
def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else ""


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else ""


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _usd(micro: int | None) -> str:
    """Micro-USD as dollars: exact up to a millionth, without trailing zeros ("0.000042", "12.5")."""
    return dollars(micro) or "0"


def _duration(seconds: float | None) -> str:
    return format_duration(seconds) if seconds is not None else ""


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}"


def _query(base: dict[str, Any], **changes: Any) -> str:
    merged = {**base, **changes}
    return urlencode({k: v for k, v in merged.items() if v is not None and v != ""})


def make_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("producer.console", "templates"),
        autoescape=True,  # every template, whatever its name: nothing a user or provider wrote is markup
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, iso=_iso, pretty=_pretty, duration=_duration, number=_number, usd=_usd)
    env.globals.update(query=_query, PREFIX=PREFIX)
    return env


def _asset_version() -> str:
    digest = hashlib.sha256()
    for name in sorted(STATIC_FILES):
        digest.update((resources.files("producer.console") / "static" / name).read_bytes())
    return digest.hexdigest()[:12]


# ------------------------------------------------------------------------------------------- context
@dataclass
class Console:
    """What the console's routes share: the API app (whose state holds the stores), the templates, and
    the thumbnail makers' semaphore."""

    api: Any  # the FastAPI app of producer/api.py
    env: Environment
    makers: asyncio.Semaphore
    asset_version: str
    _sessions: Sessions | None = None
    _packs: Packs | None = None

    @property
    def records(self) -> Records:
        return self.api.state.records

    @property
    def storage(self) -> Storage:
        return self.api.state.storage

    @property
    def producer(self) -> Producer:
        return self.api.state.producer

    @property
    def settings(self) -> Settings:
        return self.producer.settings

    @property
    def keys(self) -> KeyTable:
        """The API's key table (producer/auth.py): sessions are worth what their key is worth."""
        return self.api.state.keys

    @property
    def packs(self) -> Packs:
        """The batch tier's records (mmq/packs.py): a batch's provider batches."""
        redis = self.api.state.redis
        if self._packs is None or self._packs.redis is not redis:
            self._packs = Packs(redis, self.settings.key_prefix)
        return self._packs

    @property
    def sessions(self) -> Sessions:
        redis = self.api.state.redis
        if self._sessions is None or self._sessions.redis is not redis:
            self._sessions = Sessions(redis, self.settings.key_prefix)
        return self._sessions

    def render(
        self, request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> HTMLResponse:
        session = getattr(request.state, "session", None)
        base = {"session": session, "asset_version": self.asset_version, "now": time.time()}
        html = self.env.get_template(name).render({**base, **context})
        return HTMLResponse(html, status_code=status_code, headers={"cache-control": "no-store"})


def console_of(request: Request) -> Console:
    return request.app.state.console


async def viewer(request: Request) -> Session:
    """The signed-in viewer's session, or SignInRequired."""
    c = console_of(request)
    session = await c.sessions.get(request.cookies.get(COOKIE), c.keys)
    if session is None:
        raise SignInRequired()
    request.state.session = session
    return session


# ------------------------------------------------------------------------------------------- headers
class SecurityHeaders:
    """Adds the CSP (the page one, or the sandboxing one on media and downloads), nosniff, no framing and
    a same-origin referrer policy to every answer of the console (a same-origin POST keeps its Origin,
    links out send no Referer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                content_type = next((v for k, v in headers if k == b"content-type"), b"")
                page = content_type.startswith((b"text/html", b"text/css", b"text/javascript"))
                csp = PAGE_CSP if page else MEDIA_CSP
                headers += [
                    (b"content-security-policy", csp.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ------------------------------------------------------------------------------------ errors, static
def _wants_page(request: Request) -> bool:
    return (
        request.method in ("GET", "HEAD")
        and "/part/" not in request.url.path
        and "text/html" in request.headers.get("accept", "")
    )


async def on_sign_in_required(request: Request, exc: Exception) -> Response:
    if _wants_page(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target})}", status_code=303)
    return PlainTextResponse("sign in first", status_code=401, headers={"cache-control": "no-store"})


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _wants_page(request) or request.method == "POST":
        c = console_of(request)
        context = {"status": exc.status_code, "message": exc.detail}
        return c.render(request, "error.html", context, status_code=exc.status_code)
    return PlainTextResponse(
        str(exc.detail), status_code=exc.status_code, headers={"cache-control": "no-store"}
    )


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        raise HTTPException(404, "Not found")
    data = (resources.files("producer.console") / "static" / name).read_bytes()
    return Response(
        data, media_type=STATIC_FILES[name], headers={"cache-control": "public, max-age=86400, immutable"}
    )


async def root(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


def create_console(api: Any) -> ASGIApp:
    """The console app for the API app `api` (see producer/console/__init__.py for how it is reached)."""
    from producer.console import media_routes, pages

    routes = [
        Route("/", root, methods=["GET"]),
        Route(PREFIX, root, methods=["GET"]),
        Route(f"{PREFIX}/static/{{name}}", static_file, methods=["GET"]),
        *pages.routes(PREFIX),
        *media_routes.routes(PREFIX),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={SignInRequired: on_sign_in_required, HTTPException: on_http_error},
    )
    app.state.console = Console(api, make_environment(), asyncio.Semaphore(2), _asset_version())
    return SecurityHeaders(app)
