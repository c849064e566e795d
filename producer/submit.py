"""The Python producer API: validate requests, move inline media to blob storage, write records, enqueue.

    producer = Producer(redis, storage, settings)
    batch = await producer.submit_batch(iter_jsonl("requests.jsonl"), tenant="acme")
    job = await producer.submit_job("/v1/chat/completions", body, tenant="acme")

A batch is consumed as a stream and sent to Redis in pipelined chunks, so a 100k-line file is never
held in memory. A bad line becomes a failed job naming the line and the cause; the rest goes on.
A line whose result is already cached is answered here, at submit time, and never enqueued. Reading a
request (its kind, validation, media → blobs) is producer/intake.py's; the line shape and the custom_id
rule are producer/batch_lines.py's (`BatchLine` is re-exported here: it is what a Producer takes).

A batch line is the hot path of a big submit (100k lines in ~5 s), so it builds no JobRecord:
its request is validated and dumped once (pydantic, the same models and messages as everywhere), its
JSON made once from the dump for the record and the size check, its cache key from what the batch's
jobs share, serialised once (mmq.cache.KeyScope), and its record written from those parts
(mmq.records.new_batch_spec, queued_row). Lines that cannot run, and cache hits, take the JobRecord path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from mmq import queue
from mmq.batch_options import BatchOptions
from mmq.cache import Cache, CacheEntry, KeyScope, answer_from, job_cache_key
from mmq.contract import (
    BatchRecord,
    CacheLevel,
    CacheOptions,
    JobError,
    JobRecord,
    JobStatus,
    MediaPrep,
    Priority,
)
from mmq.fingerprint import Fingerprints
from mmq.record_layout import JobRow, batch_row, new_batch_spec, queued_row, spec_options_json
from mmq.records import Records
from mmq.request_models import BLOB_SCHEME, Kind
from mmq.settings import Settings
from mmq.storage import BlobNotFound, Storage, safe_segment
from mmq.submissions import Progress, after_seal, interrupt
from producer.batch_lines import BatchLine, CustomIds
from producer.ids import new_id, new_ids
from producer.intake import Intake
from producer.options import (
    LineError,
    check_options,
    parse_options,
    validate_cache,
)
from producer.write_pipeline import write_pipeline

log = logging.getLogger(__name__)


_DEFAULT_CACHE = CacheOptions()


@dataclass(slots=True)
class _Draft:
    """A batch line made into a job, not yet written: the parts of its record, or (a line that cannot
    run, or a cache hit) the record itself."""

    id: str
    custom_id: str | None
    kind: Kind
    cache: CacheOptions | None
    cache_key: str | None = None
    request: dict[str, Any] | None = None
    request_key: str | None = None
    spec: bytes = b""  # mmq.records.new_batch_spec
    record: JobRecord | None = None
    created_at: float = field(default_factory=time.time)


class _Shared:
    """What every line of one `add_lines` shares, made once: the batch's options as its jobs' records and
    cache keys hold them."""

    def __init__(
        self,
        batch: BatchRecord,
        config: dict[str, Any] | None,
        media: MediaPrep | None,
        cache: CacheOptions | None,
    ) -> None:
        self.batch = batch
        self.config = config
        self.metadata = (batch.metadata or {}) if config else {}  # for conditional routing only
        self.media = media
        self.cache = cache
        self.tenant_segment = safe_segment(batch.tenant)
        self.keys = KeyScope(
            tenant=batch.tenant,
            config=config,
            metadata=self.metadata,
            media=media.model_dump(exclude_none=True) if media else None,
        )
        self.spec_options = self.options_for(cache)

    def record(self, job_id: str, custom_id: str | None, kind: Kind, cache: CacheOptions | None) -> JobRecord:
        batch = self.batch
        return JobRecord(
            id=job_id,
            batch_id=batch.id,
            custom_id=custom_id,
            tenant=batch.tenant,
            kind=kind,
            config=self.config,
            metadata=self.metadata,
            media=self.media,
            cache=cache,
            priority=batch.priority,
            tier=batch.tier,
            deadline=batch.deadline,
        )

    def options_for(self, cache: CacheOptions | None) -> bytes:
        """The spec members a job with these cache options shares with the batch's other jobs."""
        return spec_options_json(self.record("", None, Kind.chat, cache))

    def hit(self, draft: _Draft, entry: CacheEntry) -> JobRecord:
        """The record of a line answered from the cache at submit."""
        job = self.record(draft.id, draft.custom_id, draft.kind, draft.cache)
        job.created_at, job.cache_key = draft.created_at, draft.cache_key
        if draft.request_key is not None:
            job.request_key = draft.request_key
        else:
            job.request = draft.request
        job.started_at = time.time()
        answer_from(job, entry)
        return job


def _asks_at_submit(cache_key: str | None, cache: CacheOptions | None) -> bool:
    """Whether the producer asks the cache for a job's key. Perceptual keys are compared by distance,
    which the worker does; a refresh, or a job at the perceptual level, is the worker's to look up."""
    if not cache_key or cache_key.startswith("p:"):
        return False
    return not (cache and (cache.refresh or cache.level is CacheLevel.perceptual))


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
        """`allow_local_paths`, `base_dir`, `trusted_blob_refs`: how requests are read (intake.py)."""
        self.redis = redis
        self.storage = storage
        self.settings = settings
        self.records = Records(redis, settings.key_prefix)
        self.cache = Cache(
            redis, settings.key_prefix, ttl_s=settings.cache_ttl_s, bands=settings.cache_phash_bands
        )
        self.intake = Intake(
            storage,
            settings,
            allow_local_paths=allow_local_paths,
            base_dir=base_dir,
            trusted_blob_refs=trusted_blob_refs,
        )
        self._fingerprinters: dict[CacheLevel, Fingerprints] = {}

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

    def _fingerprints(self, level: CacheLevel) -> Fingerprints:
        found = self._fingerprinters.get(level)
        if found is None:
            found = Fingerprints(level, self._load_blob, self.settings.image_max_pixels)
            self._fingerprinters[level] = found
        return found

    async def _key(self, job: JobRecord, request: dict[str, Any], options: CacheOptions) -> str | None:
        return await job_cache_key(job, request, self._fingerprints(options.level))

    async def _answer_cached(self, jobs: list[tuple[JobRecord, bool]]) -> list[tuple[JobRecord, bool]]:
        """Jobs whose result is cached become hits (not runnable). Perceptual keys are compared by
        distance, which the worker does."""
        asked = [job for job, runnable in jobs if runnable and _asks_at_submit(job.cache_key, job.cache)]
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

    # ------------------------------------------------------------------ one job
    async def _build_job(
        self,
        line: BatchLine,
        tenant: str,
        config: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        media: MediaPrep | None = None,
        cache: CacheOptions | None = None,
    ) -> tuple[JobRecord, bool]:
        """A job outside any batch: returns (record, runnable). A line that cannot run becomes a failed
        record."""
        job = JobRecord(
            id=new_id("job"),
            custom_id=line.custom_id,
            tenant=tenant,
            kind=Kind.chat,
            config=config,
            metadata=(metadata or {}) if config else {},
            media=media,
            cache=cache,
        )
        try:
            if line.error:
                raise LineError(line.error)
            if line.cache is not None:
                job.cache = validate_cache(line.cache)
            job.kind = self.intake.kind_of(line.url)
            request, text = await self.intake.prepare(job.kind, line.body or {})
        except LineError as e:
            job.status = JobStatus.failed
            job.error = JobError(type="invalid_request", message=str(e))
            return job, False
        options = job.cache or CacheOptions()
        if options.enabled:
            job.cache_key = await self._key(job, request, options)
        if (encoded := self.intake.too_big(request, text)) is not None:
            job.request_key = f"requests/{safe_segment(tenant)}/single/{job.id}.json"
            await self.storage.put(job.request_key, encoded.encode())
        else:
            job.request = request
        return job, True

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
        opts = check_options(parse_options(fields), self.settings, single_job=True)
        job, runnable = await self._build_job(
            BatchLine(body=body, url=url, custom_id=custom_id),
            tenant,
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
        self.records.add_job(pipe, job)
        if runnable:
            queue.enqueue(pipe, job.id, self.settings.queue_name, priority=job.priority.value)
        await pipe.execute()
        return job

    async def create_batch(
        self,
        *,
        tenant: str,
        metadata: dict[str, str] | None = None,
        fail_if_interrupted: bool = False,
        **schedule: Any,
    ) -> BatchRecord:
        """`schedule`: priority, not_before, deadline, webhook_url, max_cost_micro_usd, on_budget (see
        submit_batch). `fail_if_interrupted`: a submission that stops early fails the batch (its queued
        jobs are cancelled, as /v1 does) instead of sealing it with what it has (mmq/submissions.py)."""
        batch = BatchRecord(id=new_id("batch"), tenant=tenant, metadata=metadata or {}, **schedule)
        pipe = self.redis.pipeline(transaction=False)
        self.records.add_batch(pipe, batch)
        if fail_if_interrupted:
            pipe.hset(self.records.batch_key(batch.id), "on_interrupt", "fail")
        await pipe.execute()
        return batch

    # ------------------------------------------------------------------ a batch's lines
    async def _draft(self, line: BatchLine, job_id: str, shared: _Shared) -> _Draft:
        """One batch line made into a job, not yet written; a line that cannot run, its failed record."""
        kind, cache = Kind.chat, shared.cache
        try:
            if line.error:
                raise LineError(line.error)
            if line.cache is not None:
                cache = validate_cache(line.cache)
            kind = self.intake.kind_of(line.url)
            request, text = await self.intake.prepare(kind, line.body or {})
        except LineError as e:
            where = f"line {line.line_no}: " if line.line_no is not None else ""
            job = shared.record(job_id, line.custom_id, kind, cache)
            job.status = JobStatus.failed
            job.error = JobError(type="invalid_request", message=f"{where}{e}")
            return _Draft(job_id, line.custom_id, kind, cache, record=job)
        options = cache or _DEFAULT_CACHE
        draft = _Draft(job_id, line.custom_id, kind, cache, request=request)
        if options.enabled:
            # a chat whose JSON names no image or file part has no media to fingerprint: not walked
            media = kind is not Kind.chat or b'"image_url"' in text or b'"file"' in text
            fingerprints = self._fingerprints(options.level)
            draft.cache_key = await shared.keys.key(kind, request, options, fingerprints, media=media)
        if (encoded := self.intake.too_big(request, text)) is not None:
            draft.request_key = f"requests/{shared.tenant_segment}/{shared.batch.id}/{job_id}.json"
            await self.storage.put(draft.request_key, encoded.encode())
            text = encode_basestring(draft.request_key).encode()
        custom_id = b"null" if line.custom_id is None else encode_basestring(line.custom_id).encode()
        spec_options = shared.spec_options if cache is shared.cache else shared.options_for(cache)
        draft.spec = new_batch_spec(
            custom_id, kind, text, spec_options, draft.created_at, stored=draft.request_key is not None
        )
        return draft

    async def _write_drafts(self, pipe: Any, shared: _Shared, drafts: list[_Draft], enqueue: bool) -> None:
        """Queues the drafts' records (cache hits answered first: one MGET) and, with `enqueue`, the arq
        jobs of those that run, on `pipe`."""
        asked = [d for d in drafts if d.record is None and _asks_at_submit(d.cache_key, d.cache)]
        if asked:
            entries = await self.cache.get_many([d.cache_key or "" for d in asked])
            for draft, entry in zip(asked, entries, strict=True):
                if entry is not None:
                    draft.record = shared.hit(draft, entry)
        rows: list[JobRow] = []
        runnable: list[str] = []
        batch = shared.batch
        for d in drafts:
            if d.record is not None:
                rows.append(batch_row(d.record))
                continue
            row = queued_row(
                d.id, batch.id, d.spec, cache_key=d.cache_key, cache=d.cache, deadline=batch.deadline
            )
            rows.append(row)
            runnable.append(d.id)
        self.records.add_rows(pipe, batch.id, rows)
        if enqueue:  # the ZADD goes last: no worker sees a job before its record
            queue.enqueue_many(pipe, runnable, self.settings.queue_name, priority=batch.priority.value)

    async def add_lines(
        self,
        batch: BatchRecord,
        lines: Iterable[BatchLine] | AsyncIterable[BatchLine],
        config: dict[str, Any] | None = None,
        media: MediaPrep | None = None,
        cache: CacheOptions | None = None,
    ) -> tuple[int, int]:
        """Streams lines into `batch`; returns (accepted, invalid). Sends one pipeline per chunk.
        `config` must already be validated (validate_config). A line's job can run unless its line is
        invalid (a custom_id already used is: CustomIds); a cache hit counts as accepted (it is answered,
        not run). Progress is marked as lines go; raises SubmissionInterrupted when a worker sealed the
        batch meanwhile (its submission had stalled past MMQ_SUBMIT_STALL_S: mmq/submissions.py)."""
        accepted = invalid = 0
        pending: list[_Draft] = []
        # the first chunks are small so workers start within milliseconds of a big submit
        chunk = min(50, self.settings.enqueue_chunk)
        # a scheduled batch's jobs wait in their records; the release job enqueues them when the window opens
        scheduled = batch.not_before is not None and batch.not_before > time.time()
        shared = _Shared(batch, config, media, cache)
        config_stored = batch.config == config
        ids = new_ids("job")
        custom_ids = CustomIds()
        progress = Progress(self.redis, self.records.keys, batch.id, self.settings.submit_stall_s)
        # One chunk is written while the next is read: Redis (another core) stores a chunk meanwhile,
        # instead of the producer waiting for it. Never more than one: chunks land in order, and memory
        # holds two chunks at most, whatever the file's size.
        writing: asyncio.Future[None] | None = None

        async def write(drafts: list[_Draft], with_config: bool) -> None:
            pipe = write_pipeline(self.redis)
            if with_config:  # once, before any job that runs with it
                self.records.set_batch_config(pipe, batch.id, config)
            await self._write_drafts(pipe, shared, drafts, enqueue=not scheduled)
            await pipe.execute()

        async def flush() -> None:
            nonlocal pending, chunk, config_stored, writing
            if writing is not None:
                await writing
                writing = None
            if pending:
                writing = asyncio.ensure_future(write(pending, not config_stored))
                batch.config, config_stored = config, True
                pending = []
                chunk = min(chunk * 2, self.settings.enqueue_chunk)

        async def take(line: BatchLine) -> None:
            nonlocal accepted, invalid
            custom_ids.check(line)
            if progress.due():  # a clock read; a round trip now and then (mmq/submissions.py)
                await progress.mark()
            draft = await self._draft(line, next(ids), shared)
            pending.append(draft)
            if draft.record is None:
                accepted += 1
            else:
                invalid += 1
            if len(pending) >= chunk:
                await flush()
            elif len(pending) % 32 == 0 and writing is not None and not writing.done():
                # reading a file does not wait, so the write would not move until the next chunk's: let
                # it take its cache answers and send its commands while lines are read
                await asyncio.sleep(0)

        try:
            if isinstance(lines, AsyncIterable):
                async for line in lines:
                    await take(line)
            else:  # a file read line by line: no async generator step per line
                for line in lines:
                    await take(line)
            await flush()
            await flush()  # the last chunk's write
        finally:
            if writing is not None:  # the lines failed: the chunk being written still lands, or fails
                await asyncio.gather(writing, return_exceptions=True)
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

    async def _interrupted(self, batch_id: str) -> None:
        try:
            await interrupt(self.records, self.settings.queue_name, batch_id)
        except Exception:  # Redis away too: a worker's sweep seals it after MMQ_SUBMIT_STALL_S
            log.warning("batch %s: could not seal the interrupted submission", batch_id, exc_info=True)

    async def submit_batch(
        self,
        lines: Iterable[BatchLine] | AsyncIterable[BatchLine],
        *,
        tenant: str,
        options: BatchOptions | None = None,
        on_created: Callable[[BatchRecord], Any] | None = None,
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
        `max_cost` (USD): no call starts that could take the batch's spending past it; `on_budget`:
        "wait" (the job waits in `budget` state until the budget is raised) or "fail" (budget_exceeded).
        `tier`: realtime | batch | auto (the default: eligible jobs go through their provider's own batch
        API at its batch price when the deadline is an hour away or more; worker/batch_tier).
        `metadata`: the batch's own, and the jobs' for conditional routing.
        `on_created(batch)` is called once the batch exists, before its first line (the CLI prints its id).
        A submission whose lines raise is sealed with what it sent, marked submission_interrupted."""
        opts = check_options(parse_options(options, **fields), self.settings)
        batch = await self.create_batch(
            tenant=tenant,
            metadata=opts.metadata,
            priority=opts.priority,
            not_before=opts.not_before,
            deadline=opts.deadline,
            webhook_url=opts.webhook_url,
            max_cost_micro_usd=opts.max_cost_micro_usd,
            on_budget=opts.on_budget,
            tier=opts.resolved_tier(time.time(), self.settings.batch_tier_min_window_s),
        )
        if on_created is not None:
            on_created(batch)
        try:
            _, invalid = await self.add_lines(batch, lines, opts.config, opts.media, opts.cache)
        except BaseException:
            # the lines stopped (a file gone bad, a client gone, Ctrl-C, a stop): the batch is sealed with
            # what was sent and says so, at once, instead of waiting for a worker's sweep
            await asyncio.shield(self._interrupted(batch.id))
            raise
        ended = await self.records.seal_batch(batch.id, invalid)
        await after_seal(self.redis, self.settings.queue_name, batch, ended)
        return await self.records.get_batch(batch.id) or batch


__all__ = ["BatchLine", "Producer"]
