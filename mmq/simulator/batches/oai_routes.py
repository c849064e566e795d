"""Routes of the OpenAI-format Files + Batches APIs on each provider's paths, guarded like the realtime ones.

    OpenAI  /v1/files…  /v1/batches…                Authorization: Bearer
    Azure   /openai/v1/files…  /openai/v1/batches…  api-key (or an Entra bearer); api-version optional
                                                    (v1, preview, latest)
            /openai/files…  /openai/batches…        the same with a dated ?api-version= (required); create
                                                    echoes the status capitalised ("Validating")
    Groq    /openai/v1/files…  /openai/v1/batches…  Authorization: Bearer
    …files: POST, GET (list); /{file_id}: GET, DELETE; /{file_id}/content: GET
    …batches: POST, GET (list); /{batch_id}: GET; /{batch_id}/cancel: POST
Why here: the /openai/v1 paths are shared by Azure and Groq as in the realtime dialects (a request with
an api-key header or an azure Host is Azure's), and each provider's errors keep its own shape (Azure's
{"error": {"code", "message"}}, Groq's without null fields).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from mmq.simulator.azure import ACCESS_DENIED, AzureError, DialectRoute, _check_version, azure_key, is_azure
from mmq.simulator.batches import oai_batches, oai_files
from mmq.simulator.batches.oai_surfaces import AZURE, GROQ, OPENAI, Surface
from mmq.simulator.batches.routing import by_method
from mmq.simulator.errors import ApiError
from mmq.simulator.groq import _dialect as groq_dialect
from mmq.simulator.guard import Handler, KeyReader, bearer_key, guarded

Factory = Callable[[Surface], Handler]
_TABLE: tuple[tuple[str, Mapping[str, Factory]], ...] = (
    ("/files", {"POST": oai_files.upload, "GET": oai_files.listing}),
    ("/files/{file_id}", {"GET": oai_files.retrieve, "DELETE": oai_files.delete}),
    ("/files/{file_id}/content", {"GET": oai_files.content}),
    ("/batches", {"POST": oai_batches.create, "GET": oai_batches.listing}),
    ("/batches/{batch_id}", {"GET": oai_batches.retrieve}),
    ("/batches/{batch_id}/cancel", {"POST": oai_batches.cancel}),
)


def _azure_render(exc: ApiError) -> Response:
    if isinstance(exc, AzureError):
        return exc.response()
    if exc.status == 401:
        return AzureError(401, "401", ACCESS_DENIED, headers=exc.headers).response()
    return AzureError(exc.status, str(exc.code or exc.type), exc.message, headers=exc.headers).response()


def _versioned(handler: Handler, dated: bool) -> Handler:
    async def endpoint(request: Request) -> Response:
        _check_version(request, dated)
        return await handler(request)

    return endpoint


def _routes(
    surface: Surface,
    prefix: str,
    *,
    key: KeyReader,
    stats_suffix: str = "",
    render: Callable[[ApiError], Response] | None = None,
    wrap: Callable[[Handler], Handler] = lambda h: h,
    accept: Callable[[Scope], bool] | None = None,
    dated: bool | None = None,  # Azure: whether api-version must be a date (None: no check)
) -> list[Route]:
    routes: list[Route] = []
    for path, factories in _TABLE:
        handlers = {}
        for method, factory in factories.items():
            handler = factory(surface)
            if dated and factory is oai_batches.create:
                handler = oai_batches.create(surface, capitalised=True)
            handlers[method] = handler if dated is None else _versioned(handler, dated)
        endpoint = wrap(guarded(by_method(handlers), prefix + path + stats_suffix, key=key, render=render))
        if accept is None:
            routes.append(Route(prefix + path, endpoint, methods=list(handlers)))
        else:
            routes.append(DialectRoute(prefix + path, endpoint, methods=list(handlers), accept=accept))
    return routes


def _is_groq(scope: Scope) -> bool:
    return not is_azure(scope)


def openai_family_routes() -> list[Route]:
    return [
        *_routes(OPENAI, "/v1", key=bearer_key),
        *_routes(
            AZURE,
            "/openai/v1",
            key=azure_key,
            stats_suffix=" (azure)",
            render=_azure_render,
            accept=is_azure,
            dated=False,
        ),
        *_routes(AZURE, "/openai", key=azure_key, render=_azure_render, dated=True),
        *_routes(GROQ, "/openai/v1", key=bearer_key, wrap=groq_dialect, accept=_is_groq),
    ]
