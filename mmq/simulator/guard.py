"""Knobs applied around every API route (auth -> rate limit -> latency -> error -> hang) and the
raw-ASGI middleware stamping simulator headers on every response."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmq.simulator.errors import ApiError, NativeError
from mmq.simulator.state import SimState

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
# the caller's identity (auth and rate-limit key), or raises the dialect's 401/403
KeyReader = Callable[[Request], str | Awaitable[str]]


def bearer_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). (mmq simulator: any key works)",
            code="invalid_api_key",
        )
    return token


async def _apply_knobs(sim: SimState) -> None:
    cfg = sim.config
    if cfg.latency_ms or cfg.jitter_ms:
        jitter = sim.rng.uniform(-cfg.jitter_ms, cfg.jitter_ms) if cfg.jitter_ms else 0.0
        await asyncio.sleep(max(0.0, cfg.latency_ms + jitter) / 1000)
    if cfg.error_rate and sim.rng.random() < cfg.error_rate:
        raise ApiError(
            sim.rng.choice((500, 503)),
            "The server had an error while processing your request. (mmq simulator injected)",
            type="server_error",
        )
    if cfg.hang_rate and sim.rng.random() < cfg.hang_rate:
        sim.stats.hangs += 1
        await asyncio.sleep(cfg.hang_s)


def guarded(
    handler: Handler,
    path: str,
    *,
    key: KeyReader = bearer_key,
    render: Callable[[ApiError], Response] | None = None,
) -> Handler:
    """Wrap an API handler; `path` is the canonical /v1 path used for stats. `key` reads the caller's
    identity, `render` answers an ApiError in the dialect's shape (default: OpenAI's). Other
    NativeErrors (a dialect's own, from the handler or `key`) answer as they are."""

    async def endpoint(request: Request) -> Response:
        sim: SimState = request.app.state.sim
        sim.stats.count(path)
        limit_headers: dict[str, str] = {}
        try:
            identity = key(request)
            if not isinstance(identity, str):
                identity = await identity
            if sim.limiter is not None:
                verdict = sim.limiter.check(identity)
                limit_headers = verdict.headers
                if not verdict.admitted:
                    raise ApiError(
                        429,
                        f"Rate limit reached for requests (mmq simulator): limit {sim.limiter.limit} per "
                        f"{sim.config.window_s:g}s. Please try again in {verdict.retry_after_s:.3f}s.",
                        type="requests",
                        code="rate_limit_exceeded",
                    )
            scripted = sim.faults.next_error(identity)
            if scripted is not None:
                raise scripted
            await _apply_knobs(sim)
            response = await handler(request)
        except ApiError as exc:
            response = render(exc) if render else exc.response()
        except NativeError as exc:
            response = exc.response()
        except Exception:
            log.exception("simulator handler failed on %s", path)
            failed = ApiError(500, "The simulator failed unexpectedly.", type="server_error")
            response = render(failed) if render else failed.response()
        if response.status_code == 429:
            sim.stats.rate_limited += 1
        elif response.status_code >= 500:
            sim.stats.errors += 1
        if limit_headers:
            response.headers.update(limit_headers)
        return response

    return endpoint


class SimulatorHeaders:
    """Adds x-mmq-simulator and x-request-id to every response, errors and 404s included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._prefix = os.urandom(3).hex()  # keeps ids distinct across simulator processes
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [
            (b"x-mmq-simulator", b"1"),
            (b"x-request-id", f"sim-{self._prefix}{next(self._ids):x}".encode()),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
