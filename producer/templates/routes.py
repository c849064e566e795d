"""HTTP routes for prompt templates (this package), mounted by producer.api.create_app.

    POST /api/templates                       a template (JSON) → the saved version (201 new, 200 unchanged)
    GET  /api/templates                       the latest version of each
    GET  /api/templates/{name}[?version=]     one version (`name@version` works too); default the latest
    GET  /api/templates/{name}/versions       every version, oldest first
    POST /api/templates/{name}/batches        rows as CSV (text/csv) or JSONL (application/jsonl), streamed
                                              → the batch; query parameters: version, config, cache, media
                                              (JSON text, replacing the template's), priority, not_before,
                                              deadline, webhook_url (as /api/batches), the rest metadata

Tenants see only their own templates: another tenant's name is a 404, as for batches.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from mmq.batch_options import BatchOptions
from producer.auth import Tenant
from producer.options import LineError, allowed_hosts
from producer.submit import Producer
from producer.templates.model import Template, TemplateError, TemplateNotFound, TemplateSpec
from producer.templates.rows import aiter_text_lines, read_rows, row_format
from producer.templates.run import run_template
from producer.templates.store import TemplateStore
from producer.views import batch_view


def _store(request: Request) -> TemplateStore:
    producer: Producer = request.app.state.producer
    settings = producer.settings
    return TemplateStore(
        request.app.state.redis, request.app.state.storage, settings.key_prefix, allowed_hosts(settings)
    )


Store = Annotated[TemplateStore, Depends(_store)]
router = APIRouter(prefix="/api/templates", tags=["templates"])


async def _get(store: TemplateStore, who: str, name: str, version: str | None) -> Template:
    try:
        return await store.get(who, name, version)
    except TemplateNotFound as e:
        raise HTTPException(404, str(e)) from None


@router.post("", status_code=201)
async def save_template(spec: TemplateSpec, who: Tenant, store: Store) -> JSONResponse:
    try:
        template, created = await store.save(who, spec)
    except TemplateError as e:
        raise HTTPException(422, str(e)) from None
    return JSONResponse(
        {**template.view(latest=template.version), "created": created}, status_code=201 if created else 200
    )


@router.get("")
async def list_templates(who: Tenant, store: Store) -> dict[str, Any]:
    data = []
    for template, count in await store.list(who):
        data.append(
            {
                "object": "mmq.template",
                "name": template.name,
                "version": template.version,
                "description": template.description,
                "url": template.url,
                "model": template.model,
                "variables": template.variables,
                "versions": count,
                "created_at": template.created_at,
            }
        )
    return {"object": "list", "data": data}


@router.get("/{name}")
async def get_template(name: str, who: Tenant, store: Store, version: str | None = None) -> dict[str, Any]:
    template = await _get(store, who, name, version)
    return template.view(latest=await store.latest(who, template.name))


@router.get("/{name}/versions")
async def template_versions(name: str, who: Tenant, store: Store) -> dict[str, Any]:
    try:
        versions = await store.versions(who, name)
    except TemplateNotFound as e:
        raise HTTPException(404, str(e)) from None
    return {"object": "list", "data": [v.model_dump() for v in versions]}


@router.post("/{name}/batches", status_code=201)
async def run_batch(name: str, request: Request, who: Tenant, store: Store) -> dict[str, Any]:
    """CSV with a header (text/csv) or JSONL objects (application/jsonl): one job per row."""
    # the options are query parameters and the rest metadata, as for /api/batches; `version` is the route's
    fields = BatchOptions.from_query(request.query_params, reserved=("version",))
    metadata = fields.pop("metadata")
    template = await _get(store, who, name, request.query_params.get("version"))
    try:
        fmt = row_format(request.headers.get("content-type", ""))
    except TemplateError:
        raise HTTPException(415, "send rows as text/csv (with a header) or application/jsonl") from None
    try:
        rows = await read_rows(aiter_text_lines(request.stream()), fmt)  # reads only the CSV header now
        batch = await run_template(
            request.app.state.redis,
            request.app.state.storage,
            request.app.state.producer.settings,
            template,
            rows,
            tenant=who,
            metadata=metadata,
            **fields,
        )
    except (TemplateError, LineError) as e:  # a bad header or option refuses the run before any job exists
        raise HTTPException(422, str(e)) from None
    return batch_view(batch)
