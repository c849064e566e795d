"""What every /v1 route gets: the caller's tenant (from its mmq API key) and the per-app context.

A batch is an mmq batch (mmq/records.py) plus the OpenAI-only fields (OaiBatch) in `{p}:oai:batch:{id}`;
the batch ids are the same. /v1/batches lists the tenant's mmq batches (`{p}:tenant:{t}:batches`), so a
batch made elsewhere (the CLI, /api, a workflow, a template, the console) is listed and retrieved too:
its OpenAI fields are derived from its record (batch_object.py) until /v1 writes some of its own.
Work that outlives a request (reading an input file, sweeping a cancel) runs as the context's background
tasks; the lifespan stops them at shutdown, before the app closes Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel
from redis.asyncio import Redis

from mmq.contract import BatchRecord
from mmq.records import Records
from mmq.storage import Storage
from producer.auth import request_tenant
from producer.openai_api.errors import OpenAIError
from producer.openai_api.file_store import FileStore
from producer.submit import Producer


class OaiBatch(BaseModel):
    """The OpenAI-only fields of a batch, kept in Redis next to the mmq batch record."""

    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int | None = None  # None: a batch made outside /v1 without a deadline
    output_expires_s: int | None = None
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    in_progress_at: int | None = None
    cancelling_at: int | None = None
    failed_at: int | None = None
    finalized_at: int | None = None  # output/error file ids are set
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: dict[str, Any] | None = None


def as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Ctx:
    redis: Redis
    records: Records
    storage: Storage
    producer: Producer
    files: FileStore
    prefix: str
    tasks: set[asyncio.Future[Any]]

    def batch_key(self, batch_id: str) -> str:
        return f"{self.prefix}:oai:batch:{batch_id}"

    async def add_batch(self, batch: BatchRecord, oai: OaiBatch) -> None:
        """The OpenAI fields of a batch made by /v1 (the batch is listed with the tenant's mmq batches)."""
        await self.redis.hset(self.batch_key(batch.id), mapping=_encode(oai.model_dump()))

    async def update(self, batch_id: str, **fields: Any) -> None:
        await self.redis.hset(self.batch_key(batch_id), mapping=_encode(fields))

    async def oai_fields(self, batch_id: str) -> dict[str, Any]:
        """The OpenAI fields stored for a batch: all of them for a /v1 batch; for a batch made elsewhere,
        none, or those /v1 wrote since (cancelling_at, the output files once it ended)."""
        raw = await self.redis.hgetall(self.batch_key(batch_id))
        return {as_str(k): json.loads(v) for k, v in raw.items()}

    def spawn(self, work: Awaitable[Any]) -> None:
        """Background work that outlives the request (stopped, and accounted for, at shutdown)."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v, separators=(",", ":")) for k, v in fields.items()}


async def get_ctx(request: Request) -> Ctx:
    state = request.app.state
    ctx: Ctx | None = getattr(state, "oai", None)
    if ctx is None or ctx.redis is not state.redis:  # built once per app, after the lifespan opened Redis
        producer: Producer = state.producer
        prefix = producer.settings.key_prefix
        ctx = Ctx(
            redis=state.redis,
            records=state.records,
            storage=state.storage,
            producer=producer,
            files=FileStore(state.redis, state.storage, prefix),
            prefix=prefix,
            tasks=state.oai_tasks,
        )
        state.oai = ctx
    return ctx


async def caller_tenant(request: Request) -> str:
    who = await request_tenant(request)
    if who is None:
        raise OpenAIError(
            401,
            "Incorrect API key provided. Send an mmq API key as 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        )
    return who


Tenant = Annotated[str, Depends(caller_tenant)]
Context = Annotated[Ctx, Depends(get_ctx)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.oai_tasks = set()
    yield
    # runs before the app's own lifespan closes Redis: unfinished submissions mark their batch failed
    tasks = list(app.state.oai_tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A list page in OpenAI's shape (files and batches alike)."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
