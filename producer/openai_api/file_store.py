"""The file store behind the OpenAI Files API: metadata in Redis, bytes in the mmq Storage.

Layout (prefix `mmq` by default):
    {p}:oai:file:{id}              hash  FileMeta fields
    {p}:oai:tenant:{t}:files       zset  file ids by creation time (uploads and batch output files)
    storage  oai-files/{tenant}/{id}/{n:05d}   the uploaded bytes, in parts of PART_BYTES

An upload is written part by part as it is read, so neither a 100k-line file nor a 200 MB one is ever
held in memory; the Storage protocol has no streaming put, and parts keep every backend usable.

Batch output and error files are not copies: their metadata names the batch (`batch_id`, `source`) and
their content is streamed from the job records and stored results (producer.views.iter_output).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Literal

from pydantic import BaseModel
from redis.asyncio import Redis

from mmq.storage import Storage, safe_segment

PART_BYTES = 8 * 1024 * 1024
MAX_FILE_BYTES = 200 * 1024 * 1024  # OpenAI's limit for a batch input file

FileSource = Literal["upload", "batch_output", "batch_error"]


class FileTooLarge(ValueError):
    pass


class FileMeta(BaseModel):
    id: str
    tenant: str
    filename: str
    purpose: str
    created_at: int
    bytes: int | None = None  # None: a batch output file whose size is not counted yet
    lines: int = 0  # non-blank lines of an upload (a batch refuses an empty or oversized file early)
    parts: int = 0
    expires_at: int | None = None
    source: FileSource = "upload"
    batch_id: str | None = None  # batch output/error files: the batch they are read from

    def file_object(self) -> dict[str, object]:
        """The OpenAI FileObject: every field the SDK's model has, null when absent."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.expires_at,
            "status_details": None,
        }


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class FileStore:
    def __init__(self, redis: Redis, storage: Storage, prefix: str = "mmq") -> None:
        self.redis = redis
        self.storage = storage
        self.prefix = prefix

    def meta_key(self, file_id: str) -> str:
        return f"{self.prefix}:oai:file:{file_id}"

    def tenant_files_key(self, tenant: str) -> str:
        return f"{self.prefix}:oai:tenant:{tenant}:files"

    @staticmethod
    def part_key(meta: FileMeta, n: int) -> str:
        return f"oai-files/{safe_segment(meta.tenant)}/{meta.id}/{n:05d}"

    # ------------------------------------------------------------------ writes
    async def create(
        self,
        *,
        tenant: str,
        filename: str,
        purpose: str,
        chunks: AsyncIterable[bytes],
        expires_after_s: int | None = None,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> FileMeta:
        """Stores an upload part by part and counts its lines on the way. Raises FileTooLarge."""
        now = int(time.time())
        meta = FileMeta(
            id=f"file-{uuid.uuid4().hex}",
            tenant=tenant,
            filename=filename,
            purpose=purpose,
            created_at=now,
            bytes=0,
            expires_at=now + expires_after_s if expires_after_s else None,
        )
        part = bytearray()
        open_line = False  # the unfinished last line has content (lines may span chunks)
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(f"file is larger than {max_bytes} bytes")
                *complete, rest = chunk.split(b"\n")
                for piece in complete:
                    meta.lines += open_line or bool(piece.strip())
                    open_line = False
                open_line = open_line or bool(rest.strip())
                part += chunk
                if len(part) >= PART_BYTES:
                    await self.storage.put(self.part_key(meta, meta.parts), bytes(part))
                    meta.parts += 1
                    part.clear()
            if part or not meta.parts:
                await self.storage.put(self.part_key(meta, meta.parts), bytes(part))
                meta.parts += 1
        except BaseException:
            await self._delete_parts(meta)
            raise
        meta.lines += open_line
        meta.bytes = size
        await self.save(meta)
        return meta

    async def save(self, meta: FileMeta) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.meta_key(meta.id), mapping={"json": meta.model_dump_json()})
        # scored by the precise time: files created within one second still list in order
        pipe.zadd(self.tenant_files_key(meta.tenant), {meta.id: time.time()})
        await pipe.execute()

    async def set_bytes(self, meta: FileMeta, size: int) -> None:
        """Caches the counted size of a batch output file (only if the file still exists)."""
        meta.bytes = size
        if await self.redis.exists(self.meta_key(meta.id)):
            await self.redis.hset(self.meta_key(meta.id), "json", meta.model_dump_json())

    async def delete(self, meta: FileMeta) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.meta_key(meta.id))
        pipe.zrem(self.tenant_files_key(meta.tenant), meta.id)
        await pipe.execute()
        await self._delete_parts(meta)

    async def _delete_parts(self, meta: FileMeta) -> None:
        for n in range(meta.parts + 1):  # +1: a part being written when an upload failed
            await self.storage.delete(self.part_key(meta, n))

    # ------------------------------------------------------------------ reads
    async def get(self, file_id: str, tenant: str) -> FileMeta | None:
        """The file if it exists, belongs to `tenant` and has not expired (expired ones are removed)."""
        raw = await self.redis.hget(self.meta_key(file_id), "json")
        if not raw:
            return None
        meta = FileMeta.model_validate_json(raw)
        if meta.tenant != tenant:
            return None
        if meta.expires_at is not None and meta.expires_at <= time.time():
            await self.delete(meta)
            return None
        return meta

    async def stream(self, meta: FileMeta, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """An upload's bytes, part after part (batch output files are streamed by the API)."""
        for n in range(meta.parts):
            async for chunk in self.storage.stream(self.part_key(meta, n), chunk_size):
                yield chunk

    async def page(
        self, tenant: str, *, after: str | None, limit: int, newest_first: bool
    ) -> tuple[list[str], bool]:
        """Up to `limit` file ids after `after` in creation order; and whether more follow."""
        return await page_ids(self.redis, self.tenant_files_key(tenant), after, limit, newest_first)


async def page_ids(
    redis: Redis, key: str, after: str | None, limit: int, newest_first: bool = True
) -> tuple[list[str], bool]:
    """Cursor paging over a zset: ids after member `after` (OpenAI's `after=<last id>`)."""
    start = 0
    if after:
        rank = await (redis.zrevrank(key, after) if newest_first else redis.zrank(key, after))
        if rank is None:
            return [], False
        start = rank + 1
    read = redis.zrevrange if newest_first else redis.zrange
    ids = [_s(i) for i in await read(key, start, start + limit)]
    return ids[:limit], len(ids) > limit
