"""The Python producer API: validate requests, move inline media to blob storage, write records, enqueue.

    producer = Producer(redis, storage, settings)
    batch = await producer.submit_batch(iter_jsonl("requests.jsonl"), tenant="acme")
    job = await producer.submit_job("/v1/chat/completions", body, tenant="acme")

A batch is consumed as a stream and sent to Redis in pipelined chunks, so a 100k-line file is never
held in memory. A bad line becomes a failed job naming the line and the cause; the rest goes on.
A line whose result is already cached is answered here, at submit time, and never enqueued.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from mmq import queue
from mmq.batch_options import BatchOptions
from mmq.cache import Cache, answer_from, job_cache_key
from mmq.contract import (
    BLOB_SCHEME,
    BatchRecord,
    CacheLevel,
    CacheOptions,
    JobError,
    JobRecord,
    JobStatus,
    Kind,
    MediaPrep,
    Priority,
    chat_media_slots,
    dump_request,
    kind_for_url,
    parse_request,
)
from mmq.errors import InvalidJob
from mmq.fingerprint import Fingerprints
from mmq.media import (
    AUDIO_TYPES,
    IMAGE_TYPES,
    PDF_TYPES,
    ImageTooLarge,
    MediaError,
    document_type,
    open_image,
    parse_data_url,
    sniff,
)
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import BlobNotFound, Storage, put_blob, safe_segment
from producer.options import (
    LineError,
    check_options,
    format_validation_error,
    parse_options,
    validate_cache,
)


def _check_pixels(data: bytes, max_pixels: int, what: str) -> None:
    """Refuses an image declaring too many pixels, from its header alone (nothing is decoded here). One
    Pillow cannot read is left to the worker, which fails its job with its own message."""
    try:
        open_image(data, max_pixels, what).close()
    except ImageTooLarge as e:
        raise LineError(str(e)) from None
    except Exception:  # Pillow's many error types for a corrupt header
        return


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class BatchLine:
    """One request in the OpenAI Batch input shape (`custom_id`, `method`, `url`, `body`)."""

    body: dict[str, Any] | None
    url: str | None = None
    custom_id: str | None = None
    line_no: int | None = None
    error: str | None = None  # set when the line could not even be parsed
    cache: Any = None  # mmq extension: `cache: false` or {"level", "ttl_s", "refresh", "threshold"}

    @classmethod
    def from_obj(cls, obj: Any, line_no: int | None = None) -> BatchLine:
        if not isinstance(obj, dict):
            return cls(body=None, line_no=line_no, error="line is not a JSON object")
        custom_id = obj.get("custom_id")
        method = str(obj.get("method", "POST")).upper()
        error = None
        if method != "POST":
            error = f"method must be POST, got {method!r}"
        elif not isinstance(obj.get("url"), str):
            error = "missing url (e.g. /v1/chat/completions)"
        elif not isinstance(obj.get("body"), dict):
            error = "missing body object"
        return cls(
            body=obj.get("body"),
            url=obj.get("url"),
            custom_id=None if custom_id is None else str(custom_id),
            line_no=line_no,
            error=error,
            cache=obj.get("cache"),
        )


class Producer:
    def __init__(
        self,
        redis: Redis,
        storage: Storage,
        settings: Settings,
        *,
        allow_local_paths: bool = False,
        base_dir: Path | None = None,
        trusted_blob_refs: frozenset[str] = frozenset(),
    ) -> None:
        """`allow_local_paths`: audio `file` may name a file on this machine (CLI and Python API only,
        never the HTTP API, which must not read the server's disk).
        `trusted_blob_refs`: mmq-blob:// refs that chat bodies may carry as whole string values — a saved
        template's own media, stored by the template store (producer/templates/store.py); any other ref is
        refused as before."""
        self.redis = redis
        self.storage = storage
        self.settings = settings
        self.records = Records(redis, settings.key_prefix)
        self.cache = Cache(
            redis, settings.key_prefix, ttl_s=settings.cache_ttl_s, bands=settings.cache_phash_bands
        )
        self.allow_local_paths = allow_local_paths
        self.base_dir = base_dir or Path.cwd()
        self.trusted_blob_refs = trusted_blob_refs

    # ------------------------------------------------------------------ media → blobs
    async def _store_checked(self, data: bytes, allowed: frozenset[str], what: str) -> str:
        """Stores media whose sniffed type is allowed; returns its blob reference."""
        mime = sniff(data)
        if mime not in allowed:
            raise LineError(
                f"{what}: bytes look like {mime or 'unknown data'}, not one of the accepted types"
            )
        if mime in IMAGE_TYPES:
            _check_pixels(data, self.settings.image_max_pixels, what)
        return BLOB_SCHEME + await put_blob(self.storage, data, mime)

    async def _blob_from_data_url(self, url: str, allowed: frozenset[str], what: str) -> str:
        try:
            _, data = parse_data_url(url)
        except MediaError as e:
            raise LineError(f"{what}: {e}") from None
        return await self._store_checked(data, allowed, what)

    async def _externalize_chat(self, body: dict[str, Any]) -> None:
        for slot in chat_media_slots(body):
            if not slot.value.startswith("data:"):
                continue
            if slot.media == "image":
                slot.set(await self._blob_from_data_url(slot.value, IMAGE_TYPES, slot.where))
                continue
            try:
                mime = document_type(parse_data_url(slot.value)[1], slot.value, slot.where)
            except (MediaError, InvalidJob) as e:
                raise LineError(f"{slot.where}: {e}") from None
            if mime in PDF_TYPES:
                slot.set(await self._blob_from_data_url(slot.value, PDF_TYPES, slot.where))
            # CSV / plain text stay inline: small, and their declared type is part of the request

    async def _externalize_audio(self, body: dict[str, Any]) -> None:
        ref = body["file"]
        if ref.startswith("data:"):
            body["file"] = await self._blob_from_data_url(ref, AUDIO_TYPES, "file")
        elif ref.startswith(("http://", "https://")):
            raise LineError("file: remote audio URLs are not supported; send a data: URL or upload the file")
        elif ref.startswith(BLOB_SCHEME):
            raise LineError("file: mmq-blob:// references are internal; send the audio itself")
        elif self.allow_local_paths:
            path = (self.base_dir / ref).expanduser()
            try:
                data = path.read_bytes()
            except OSError as e:
                raise LineError(f"file: cannot read {ref!r} ({e.strerror or e})") from None
            body["file"] = await self._store_checked(data, AUDIO_TYPES, f"file {ref!r}")
            body.setdefault("filename", path.name)
        else:
            raise LineError("file: must be a data: URL of the audio")

    async def _prepare_body(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        try:
            request = parse_request(kind, body)
        except ValidationError as e:
            raise LineError(format_validation_error(e)) from None
        if kind is Kind.chat and _foreign_blob_ref(body, self.trusted_blob_refs):
            raise LineError("mmq-blob:// references are internal; send images as http(s) or data: URLs")
        data = dump_request(request)
        if kind is Kind.chat:
            await self._externalize_chat(data)
        elif kind in (Kind.transcription, Kind.translation):
            await self._externalize_audio(data)
        return data

    # ------------------------------------------------------------------ cache
    async def _load_blob(self, ref: str) -> bytes | None:
        """Bytes the key needs (pixel levels only): stored blobs. http images are keyed by the worker,
        which fetches them anyway; a producer never reaches out to the network."""
        if not ref.startswith(BLOB_SCHEME):
            return None
        try:
            return await self.storage.get(ref[len(BLOB_SCHEME) :])
        except BlobNotFound:
            return None

    async def _key(self, job: JobRecord, request: dict[str, Any], options: CacheOptions) -> str | None:
        fingerprints = Fingerprints(options.level, self._load_blob, self.settings.image_max_pixels)
        return await job_cache_key(job, request, fingerprints)

    async def _answer_cached(self, jobs: list[tuple[JobRecord, bool]]) -> list[tuple[JobRecord, bool]]:
        """Jobs whose result is cached become hits (not runnable); one MGET per chunk. Perceptual keys are
        compared by distance, which the worker does."""
        asked = [
            job
            for job, runnable in jobs
            if runnable
            and job.cache_key
            and not job.cache_key.startswith("p:")
            and not (job.cache and (job.cache.refresh or job.cache.level is CacheLevel.perceptual))
        ]
        if not asked:
            return jobs
        hits = {
            job.id: entry
            for job, entry in zip(asked, await self.cache.get_many([j.cache_key for j in asked]), strict=True)
            if entry is not None
        }
        out = []
        for job, runnable in jobs:
            if job.id in hits:
                job.started_at = time.time()
                answer_from(job, hits[job.id])
                runnable = False
            out.append((job, runnable))
        return out

    # ------------------------------------------------------------------ records
    async def _build_job(
        self,
        line: BatchLine,
        tenant: str,
        batch_id: str | None,
        config: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        media: MediaPrep | None = None,
        cache: CacheOptions | None = None,
    ) -> tuple[JobRecord, bool]:
        """Returns (record, runnable). A line that cannot run becomes a failed record."""
        job = JobRecord(
            id=new_id("job"),
            batch_id=batch_id,
            custom_id=line.custom_id,
            tenant=tenant,
            kind=Kind.chat,
            config=config,
            metadata=(metadata or {}) if config else {},
            media=media,
            cache=cache,
        )
        where = f"line {line.line_no}: " if line.line_no is not None else ""
        try:
            if line.error:
                raise LineError(line.error)
            if line.cache is not None:
                job.cache = validate_cache(line.cache)
            try:
                job.kind = kind_for_url(line.url or "")
            except ValueError as e:
                raise LineError(str(e)) from None
            request = await self._prepare_body(job.kind, dict(line.body or {}))
        except LineError as e:
            job.status = JobStatus.failed
            job.error = JobError(type="invalid_request", message=f"{where}{e}")
            return job, False
        options = job.cache or CacheOptions()
        if options.enabled:
            job.cache_key = await self._key(job, request, options)
        encoded = json.dumps(request, separators=(",", ":"))
        if len(encoded) > self.settings.inline_request_max_bytes:
            job.request_key = f"requests/{safe_segment(tenant)}/{batch_id or 'single'}/{job.id}.json"
            await self.storage.put(job.request_key, encoded.encode())
        else:
            job.request = request
        return job, True

    def _write(self, pipe: Any, job: JobRecord, runnable: bool) -> None:
        self.records.add_job(pipe, job)
        if runnable:
            queue.enqueue(pipe, job.id, self.settings.queue_name, priority=job.priority.value)

    async def submit_job(
        self,
        url: str,
        body: dict[str, Any],
        *,
        tenant: str,
        custom_id: str | None = None,
        config: dict[str, Any] | str | None = None,
        metadata: dict[str, Any] | None = None,
        media: MediaPrep | dict[str, Any] | None = None,
        cache: CacheOptions | dict[str, Any] | bool | None = None,
        priority: Priority | str = Priority.normal,
    ) -> JobRecord:
        """One job outside any batch. Raises LineError if it cannot run (nothing is stored then).
        `media`: proactive downscaling ({"max_side": px, "max_bytes": n}); `cache`: see submit_batch.
        The options are parsed and checked as a batch's are (`metadata` stays the job's own: conditional
        routing may read any JSON value in it)."""
        fields = {"config": config, "media": media, "cache": cache, "priority": priority}
        opts = check_options(parse_options(fields), self.settings)
        job, runnable = await self._build_job(
            BatchLine(body=body, url=url, custom_id=custom_id),
            tenant,
            None,
            opts.config,
            metadata,
            opts.media,
            opts.cache,
        )
        if not runnable:
            raise LineError(job.error.message if job.error else "invalid request")
        job.priority = opts.priority
        [(job, runnable)] = await self._answer_cached([(job, runnable)])
        pipe = self.redis.pipeline(transaction=False)
        self._write(pipe, job, runnable)
        await pipe.execute()
        return job

    async def create_batch(
        self, *, tenant: str, metadata: dict[str, str] | None = None, **schedule: Any
    ) -> BatchRecord:
        """`schedule`: priority, not_before, deadline, webhook_url (see submit_batch)."""
        batch = BatchRecord(id=new_id("batch"), tenant=tenant, metadata=metadata or {}, **schedule)
        pipe = self.redis.pipeline(transaction=False)
        self.records.add_batch(pipe, batch)
        await pipe.execute()
        return batch

    async def add_lines(
        self,
        batch: BatchRecord,
        lines: Iterable[BatchLine] | AsyncIterable[BatchLine],
        config: dict[str, Any] | None = None,
        media: MediaPrep | None = None,
        cache: CacheOptions | None = None,
    ) -> tuple[int, int]:
        """Streams lines into `batch`; returns (accepted, invalid). Sends one pipeline per chunk.
        `config` must already be validated (validate_config)."""
        accepted = invalid = 0
        pending: list[tuple[JobRecord, bool]] = []
        # the first chunks are small so workers start within milliseconds of a big submit
        chunk = min(50, self.settings.enqueue_chunk)

        # a scheduled batch's jobs wait in their records; the release job enqueues them when the window opens
        scheduled = batch.not_before is not None and batch.not_before > time.time()

        config_stored = batch.config == config

        async def flush() -> None:
            nonlocal pending, chunk, config_stored
            if pending:
                answered = await self._answer_cached(pending)
                pipe = self.redis.pipeline(transaction=False)
                if not config_stored:  # once, before any job that runs with it
                    self.records.set_batch_config(pipe, batch.id, config)
                    batch.config, config_stored = config, True
                self.records.add_jobs(pipe, batch.id, [job for job, _ in answered])
                if not scheduled:  # the ZADD goes last: no worker sees a job before its record
                    runnable_ids = [job.id for job, runnable in answered if runnable]
                    queue.enqueue_many(
                        pipe, runnable_ids, self.settings.queue_name, priority=batch.priority.value
                    )
                await pipe.execute()
                pending = []
                chunk = min(chunk * 2, self.settings.enqueue_chunk)

        async for line in _aiter(lines):
            job, runnable = await self._build_job(
                line, batch.tenant, batch.id, config, batch.metadata, media, cache
            )
            job.priority, job.deadline = batch.priority, batch.deadline
            pending.append((job, runnable))
            accepted += runnable
            invalid += not runnable
            if len(pending) >= chunk:
                await flush()
        await flush()
        return accepted, invalid

    async def cancel_batch(self, batch_id: str) -> str:
        """Queued jobs are cancelled, running ones finish; partial results stay downloadable. Returns the
        batch status after the call (`cancelled`, or `cancelling` while jobs still run)."""
        status = await self.records.start_cancel(batch_id)
        if status == "cancelling":
            await self.records.cancel_queued(batch_id)
            batch = await self.records.get_batch(batch_id)
            status = batch.status.value if batch else status
        return status

    async def retry_failed(self, batch_id: str) -> int:
        """Runs the batch's failed jobs again (not invalid requests); returns how many were re-queued."""
        batch = await self.records.get_batch(batch_id)
        if batch is None:
            raise KeyError(batch_id)
        ids = await self.records.requeue_failed(batch_id)
        for start in range(0, len(ids), self.settings.enqueue_chunk):
            pipe = self.redis.pipeline(transaction=False)
            chunk = ids[start : start + self.settings.enqueue_chunk]
            queue.enqueue_many(pipe, chunk, self.settings.queue_name, priority=batch.priority.value)
            await pipe.execute()
        return len(ids)

    async def submit_batch(
        self,
        lines: Iterable[BatchLine] | AsyncIterable[BatchLine],
        *,
        tenant: str,
        options: BatchOptions | None = None,
        **fields: Any,
    ) -> BatchRecord:
        """A batch of `lines` with its options (mmq.batch_options.BatchOptions), given as `options` or as
        keyword fields of the same names, parsed and checked once, here; a bad one refuses the batch
        (LineError) before any job exists:
        `config`: a routing config (Portkey schema) for every job.
        `media`: proactive downscaling for every job ({"max_side": px, "max_bytes": n}).
        `cache`: None for the default (exact-level cache), False to bypass it, or
        {"level": "exact"|"pixels"|"perceptual", "ttl_s": n, "refresh": bool, "threshold": bits};
        a line's own `cache` key overrides it for that line.
        `priority`: high | normal | low. `not_before` / `deadline` (epoch seconds): no job starts before the
        window opens, and what has not run by the deadline fails with `batch_expired` (the batch ends
        `expired`). `webhook_url`: POSTed the batch when it ends (signed with MMQ_WEBHOOK_SECRET).
        `metadata`: the batch's own, and the jobs' for conditional routing."""
        opts = check_options(parse_options(options, **fields), self.settings)
        batch = await self.create_batch(
            tenant=tenant,
            metadata=opts.metadata,
            priority=opts.priority,
            not_before=opts.not_before,
            deadline=opts.deadline,
            webhook_url=opts.webhook_url,
        )
        _, invalid = await self.add_lines(batch, lines, opts.config, opts.media, opts.cache)
        ended = await self.records.seal_batch(batch.id, invalid)
        queue_name = self.settings.queue_name
        if ended:
            if batch.webhook_url:
                await queue.schedule(self.redis, queue_name, queue.NOTIFY_FUNCTION, batch.id)
        else:
            if batch.not_before is not None and batch.not_before > time.time():
                await queue.schedule(
                    self.redis, queue_name, queue.RELEASE_FUNCTION, batch.id, batch.not_before
                )
            if batch.deadline is not None:
                await queue.schedule(
                    self.redis, queue_name, queue.EXPIRE_FUNCTION, batch.id, batch.deadline
                )
        return await self.records.get_batch(batch.id) or batch


def _foreign_blob_ref(value: Any, trusted: frozenset[str]) -> bool:
    """Whether `value` names a blob anywhere (keys included) other than as a whole string in `trusted`:
    a user who could name blobs could read another tenant's media by its hash."""
    if isinstance(value, str):
        return BLOB_SCHEME in value and value not in trusted
    if isinstance(value, dict):
        return any(_foreign_blob_ref(k, trusted) or _foreign_blob_ref(v, trusted) for k, v in value.items())
    if isinstance(value, list):
        return any(_foreign_blob_ref(v, trusted) for v in value)
    return False


async def _aiter(items: Iterable[BatchLine] | AsyncIterable[BatchLine]):
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
