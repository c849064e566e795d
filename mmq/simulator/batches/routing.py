"""One route, several methods: each batch API path serves a handler per HTTP method.

Why: Starlette's Route takes one endpoint, and the guard should wrap a path once (its stats count the
path), so a path's GET / POST / DELETE handlers are dispatched here behind a single guarded endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.guard import Handler


def by_method(handlers: Mapping[str, Handler]) -> Handler:
    async def endpoint(request: Request) -> Response:
        return await handlers[request.method](request)

    return endpoint
