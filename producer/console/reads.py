"""What the console reads that mmq.records has no call for: a page of a tenant's batches, a page of a
batch's jobs (filtered with bounded work), and a batch's timeline and failure groups.

Everything goes through `Records` (its reads and its key names); the only fields read directly are a job
hash's small state fields (`status`, `finished_at`, `error`, documented in mmq/keys.py), so that a filter
on status or a batch's statistics do not parse every job's spec.

Nothing here scans a batch to open its page: counts come from the batch record and the job table is one
LRANGE. A filtered table (status, kind, error type, custom_id text) has no index to use, so it reads the
batch's jobs in order from a cursor and stops at a page of matches or at a budget of jobs examined,
whichever comes first; the page then says how far it searched and links to the rest. The statistics (jobs
finished per interval, failures by type) do read every job's three state fields, pipelined, outside any
page's request (a fragment the page loads), and are cached in `{p}:console:stats:{batch}`: for a running
batch a few seconds, or twenty times what the read took (so that polling a 100k-job batch costs a few
percent of a core), for an ended one until its counts move; viewers polling together cost one read.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from mmq.contract import BatchRecord, BatchStatus, JobRecord, JobStatus
from mmq.records import Records

RUNNING = frozenset({BatchStatus.in_progress, BatchStatus.cancelling})
STATUS_BUDGET = 20_000  # jobs examined per request by a status / error-type filter (one small HMGET each)
RECORD_BUDGET = 4_000  # jobs examined per request by a kind / custom_id filter (whole records)
CHUNK = 1000
STATS_FRESH_S = 3.0  # a running batch's statistics are recomputed at most this often (see _usable)
STATS_KEEP_S = 600  # statistics are kept this long (an ended batch's are used until its counts move)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --------------------------------------------------------------------------------------------- batches
async def batch_page(
    records: Records, tenant: str, page: int, per_page: int
) -> tuple[list[BatchRecord], int]:
    """The tenant's batches newest first, page `page` (from 0); and how many batches the tenant has."""
    key = records.tenant_batches_key(tenant)
    pipe = records.redis.pipeline(transaction=False)
    pipe.zcard(key)
    pipe.zrevrange(key, page * per_page, page * per_page + per_page - 1)
    total, ids = await pipe.execute()
    batches = await asyncio.gather(*(records.get_batch(_s(i)) for i in ids))
    return [b for b in batches if b is not None and b.tenant == tenant], int(total)


# ------------------------------------------------------------------------------------------------ jobs
async def job_ids(records: Records, batch_id: str, start: int, count: int) -> list[str]:
    ids = await records.redis.lrange(records.batch_jobs_key(batch_id), start, start + count - 1)
    return [_s(i) for i in ids]


@dataclass(frozen=True)
class JobFilter:
    status: str = ""
    kind: str = ""
    error: str = ""  # an error type (failures grouped by type link here)
    q: str = ""  # text in the custom_id (case-insensitive)

    @property
    def active(self) -> bool:
        return bool(self.status or self.kind or self.error or self.q)

    @property
    def needs_records(self) -> bool:
        """kind and custom_id live in a job's spec: those filters read whole records."""
        return bool(self.kind or self.q)

    def matches(self, job: JobRecord) -> bool:
        if self.status and job.status.value != self.status:
            return False
        if self.kind and job.kind.value != self.kind:
            return False
        if self.error and (job.error is None or job.error.type != self.error):
            return False
        return not self.q or self.q.casefold() in (job.custom_id or "").casefold()

    def query(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}


@dataclass
class JobPage:
    jobs: list[JobRecord]
    start: int  # the position the page began at
    next: int | None  # where the next page (or the rest of the search) begins; None at the end
    examined_to: int  # positions [start, examined_to) were looked at
    exhausted: bool = False  # a filtered search stopped at its budget before filling the page


async def _status_matches(records: Records, ids: list[str], flt: JobFilter) -> list[str]:
    """The ids among `ids` whose status (and error type) match, from two small fields per job."""
    pipe = records.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(records.job_key(job_id), "status", "error")
    out = []
    for job_id, (status, error) in zip(ids, await pipe.execute(), strict=True):
        if status is None or (flt.status and _s(status) != flt.status):
            continue
        if flt.error:
            try:
                kind = json.loads(error).get("type") if error else None
            except ValueError:
                kind = None
            if kind != flt.error:
                continue
        out.append(job_id)
    return out


async def jobs_page(records: Records, batch_id: str, flt: JobFilter, start: int, limit: int) -> JobPage:
    """A page of the batch's jobs in submission order from position `start`: one LRANGE and the page's
    records without a filter; with one, at most STATUS_BUDGET / RECORD_BUDGET jobs examined."""
    if not flt.active:
        ids = await job_ids(records, batch_id, start, limit + 1)
        more = len(ids) > limit
        jobs = [j for j in await records.get_jobs(ids[:limit]) if j is not None]
        return JobPage(jobs, start, start + limit if more else None, start + len(ids[:limit]))
    budget = RECORD_BUDGET if flt.needs_records else STATUS_BUDGET
    found: list[JobRecord] = []
    pos = start
    while len(found) < limit:
        if pos - start >= budget:
            return JobPage(found, start, pos, pos, exhausted=True)
        ids = await job_ids(records, batch_id, pos, min(CHUNK, budget - (pos - start)))
        if not ids:
            return JobPage(found, start, None, pos)
        if flt.needs_records:
            matched = [j for j in await records.get_jobs(ids) if j is not None and flt.matches(j)]
            chosen = [j.id for j in matched]
        else:
            chosen = await _status_matches(records, ids, flt)
        room = limit - len(found)
        if len(chosen) > room:  # the page fills inside this chunk: the next one starts after its last row
            chosen = chosen[:room]
            pos += ids.index(chosen[-1]) + 1
        else:
            pos += len(ids)
        if flt.needs_records:
            found += matched[: len(chosen)]
        else:
            found += [j for j in await records.get_jobs(chosen) if j is not None and flt.matches(j)]
    more = await records.redis.llen(records.batch_jobs_key(batch_id)) > pos
    return JobPage(found, start, pos if more else None, pos)


# ----------------------------------------------------------------------------------------------- stats
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_BARS = 48


@dataclass
class Bar:
    start: float
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass
class FailureGroup:
    type: str
    count: int
    example: str  # one job's message, as the provider or the worker wrote it (shown escaped)
    code: str | None = None


@dataclass
class BatchStats:
    done: int  # the batch's finished jobs when computed (a cache entry for other counts is stale)
    computed_at: float
    step_s: int = 0
    bars: list[Bar] = field(default_factory=list)
    failures: list[FailureGroup] = field(default_factory=list)
    overall_rate: float | None = None  # jobs/s from the first to the last finish
    recent_rate: float | None = None  # jobs/s over the last minute or so
    eta_s: float | None = None
    first_finish: float | None = None
    last_finish: float | None = None
    ended: bool = False  # computed once the batch had ended: valid until its counts move again
    cost_s: float = 0.0  # how long reading the batch took

    @property
    def peak(self) -> int:
        return max((b.total for b in self.bars), default=0)


def _step_for(span_s: float) -> int:
    for step in _STEPS:
        if span_s / step <= MAX_BARS:
            return step
    return math.ceil(span_s / MAX_BARS)


def build_stats(
    batch: BatchRecord, rows: list[tuple[str, float | None, str | None]], now: float
) -> BatchStats:
    """Statistics from (status, finished_at, error JSON) of every job (pure: tests feed it rows)."""
    finished = [(status, at) for status, at, _ in rows if at is not None and status in _ENDED]
    stats = BatchStats(done=batch.counts.done, computed_at=now, ended=batch.status not in RUNNING)
    groups: dict[str, FailureGroup] = {}
    counted: Counter[str] = Counter()
    for status, _, error in rows:
        if status != JobStatus.failed.value:
            continue
        try:
            err = json.loads(error) if error else {}
        except ValueError:
            err = {}
        kind = str(err.get("type") or "unknown")
        counted[kind] += 1
        if kind not in groups:
            groups[kind] = FailureGroup(kind, 0, str(err.get("message") or "")[:500], err.get("code"))
    for kind, n in counted.items():
        groups[kind].count = n
    stats.failures = sorted(groups.values(), key=lambda g: (-g.count, g.type))
    if not finished:
        return stats
    first = min(at for _, at in finished)
    last = max(at for _, at in finished)
    end = last if batch.status not in RUNNING else max(now, last)
    stats.step_s = step = _step_for(max(end - first, 1.0))
    origin = math.floor(first / step) * step
    bars = [Bar(origin + i * step) for i in range(int((end - origin) // step) + 1)]
    for status, at in finished:
        bar = bars[min(int((at - origin) // step), len(bars) - 1)]
        setattr(bar, status, getattr(bar, status) + 1)
    stats.bars, stats.first_finish, stats.last_finish = bars, first, last
    if last > first:
        stats.overall_rate = len(finished) / (last - first)
    window = max(60.0, 3 * step)
    recent = sum(1 for _, at in finished if at >= end - window)
    if batch.status in RUNNING:
        stats.recent_rate = recent / min(window, max(end - first, 1.0))
        remaining = batch.counts.total - batch.counts.done
        if stats.recent_rate > 0 and remaining > 0:
            stats.eta_s = remaining / stats.recent_rate
    else:
        stats.recent_rate = stats.overall_rate
    return stats


_ENDED = frozenset({JobStatus.succeeded.value, JobStatus.failed.value, JobStatus.cancelled.value})


async def _rows(records: Records, batch_id: str) -> list[tuple[str, float | None, str | None]]:
    rows: list[tuple[str, float | None, str | None]] = []
    async for ids in records.iter_batch_job_ids(batch_id, chunk=CHUNK):
        pipe = records.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(records.job_key(job_id), "status", "finished_at", "error")
        for status, at, error in await pipe.execute():
            if status is None:
                continue
            st = _s(status)
            rows.append((st, float(at) if at else None, _s(error) if error and st == "failed" else None))
    return rows


def _stats_key(records: Records, batch_id: str) -> str:
    return f"{records.prefix}:console:stats:{batch_id}"


def _encode(stats: BatchStats) -> str:
    return json.dumps(asdict(stats), separators=(",", ":"))


def _decode(raw: bytes | str) -> BatchStats:
    data = json.loads(raw)
    data["bars"] = [Bar(**b) for b in data["bars"]]
    data["failures"] = [FailureGroup(**f) for f in data["failures"]]
    return BatchStats(**data)


def _usable(stats: BatchStats, batch: BatchRecord, now: float) -> bool:
    if stats.ended:
        return batch.status not in RUNNING and stats.done == batch.counts.done
    # a running batch's: fresh for a few seconds, longer for a batch whose read costs more (a 100k-job
    # batch takes most of a second to read: one viewer polling it must not keep a core busy)
    return batch.status in RUNNING and now - stats.computed_at < max(STATS_FRESH_S, 20 * stats.cost_s)


async def batch_stats(records: Records, batch: BatchRecord) -> BatchStats:
    """The batch's timeline and failure groups (cached: see the module docstring). While one viewer
    computes them, the others get the previous figures."""
    key = _stats_key(records, batch.id)
    raw = await records.redis.get(key)
    previous = _decode(raw) if raw else None
    now = time.time()
    if previous is not None and _usable(previous, batch, now):
        return previous
    if previous is not None and not await records.redis.set(key + ":lock", "1", nx=True, px=30_000):
        return previous
    started = time.perf_counter()
    stats = build_stats(batch, await _rows(records, batch.id), now)
    stats.cost_s = time.perf_counter() - started
    pipe = records.redis.pipeline(transaction=False)
    pipe.set(key, _encode(stats), px=int(STATS_KEEP_S * 1000))
    pipe.delete(key + ":lock")
    await pipe.execute()
    return stats
