"""The web console: a tenant's batches, their progress, and every job's inputs and outputs side by side.

Served by `mmq api` (and the embedded `mmq run --serve`) under /console/ (`/` redirects there). Pages are
rendered on the server (Jinja2, autoescaped) and one small script (static/console.js, no build step, no
CDN: every asset ships in this package) refreshes parts of them while a batch runs, by polling.

    __init__.py      `mount(app)`: the door that sends /console to the console app
    app.py           the console app: its headers (CSP), templates, static files, errors
    session.py       sign-in: sessions in Redis, the cookie, CSRF
    pages.py         the pages (batches, a batch with its provider batches, a job) and the actions
                     (cancel, retry, downloads)
    media_routes.py  a job's input media and result files, full size and as thumbnails
    job_media.py     which media a job has, and how their bytes are served (sniffed type, SVG never inline)
    thumbs.py        thumbnails: Pillow, size-capped, cached in storage
    reads.py         reads Records has no call for: batch pages, filtered job pages, statistics

Sign-in: an HttpOnly, SameSite=Strict session cookie plus a CSRF token on every state-changing request,
rather than the bearer key kept in the page (sessionStorage) and sent by script. Why:
- The console is server-rendered pages with plain <img> and <audio> elements. A navigation or a media
  element cannot send an Authorization header, so a bearer kept in the page would force every page and
  every thumbnail through fetch() and blob: URLs (a client-side app, more script, no working links), or
  put the key in URLs, where it lands in logs, history and Referer headers.
- Script never holds the key. An API key is long-lived and also opens /api and /v1; a bearer in
  sessionStorage is readable by any script that ever runs in the page, while an HttpOnly cookie is not.
  The cookie holds a random session id instead (Redis keeps its SHA-256), which expires after 12 hours,
  ends at sign-out, and is refused once its key is removed from the key table.
- The cookie's cost is CSRF, paid in full: SameSite=Strict, a per-session token compared in constant time
  on every POST, the Origin / Sec-Fetch-Site headers checked when sent, and a login token so no other site
  can sign a browser in. The cookie's path is /console: /api and /v1 never receive it and stay
  bearer-only, so a console session can never authorise an API call.

Why a door: the API's RequestGuard (producer/guard.py) answers 401 to any POST without a bearer key,
before reading its body. The console's POSTs (sign-in, sign-out, cancel, retry) carry a cookie and a
token instead, so `mount` puts ConsoleDoor in front of the guard; it sends /console (and /) to the
console app and everything else on unchanged. The console keeps the guard's promise its own way: a POST
body is an urlencoded form of at most 8 KiB (session.read_form), read only once the request's session
(or, for sign-in, its login token and origin) has been checked.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from producer.console.app import PREFIX, create_console


class ConsoleDoor:
    """ASGI middleware, outermost: /console… and / go to the console app, the rest to the API."""

    def __init__(self, app: ASGIApp, console: ASGIApp) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            if path == "/" or path == PREFIX or path.startswith(PREFIX + "/"):
                await self.console(scope, receive, send)
                return
        await self.app(scope, receive, send)


def mount(app: Any) -> None:
    """Serve the console from the API app `app` (call it once, after the app's own middleware)."""
    app.add_middleware(ConsoleDoor, console=create_console(app))
