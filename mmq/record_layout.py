"""How a job is laid out in Redis: its immutable spec and its small state fields, encoded and decoded.

Why apart from the store (mmq/records.py): the producer writes a batch's rows from these encoders without
a JobRecord (the submit hot path), the worker decodes a claim with them, and the layout tests read them
directly; none of them needs the store's Redis calls. The layout itself is described in mmq/records.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmq.contract import CacheOptions, JobRecord, JobStatus
from mmq.request_models import Kind

BATCH_COUNTERS = (
    *("total", "queued", "running", "budget", "provider_batch", "succeeded", "failed", "cancelled"),
    *("cached", "provider_calls", "paid_twice"),
)
# JobRecord fields kept in the immutable spec JSON; everything else is a state field of the hash
_SPEC = frozenset(
    {"id", "custom_id", "tenant", "kind", "request", "request_key", "config", "metadata", "media", "cache"}
    | {"priority", "tier", "created_at"}
)
# what a batch job's spec leaves to its batch: the id is the spec's field name in the batch's specs hash
_BATCH_HOLDS = frozenset({"id", "tenant", "config"})
_FLOAT_FIELDS = ("deadline", "started_at", "finished_at")
_TEXT_FIELDS = ("cache_key", "cached_from")
_JSON_FIELDS = ("attempts", "resume", "result", "usage", "cost", "error")
STATE_FIELDS = (*_FLOAT_FIELDS, *_TEXT_FIELDS, *_JSON_FIELDS, "cached")


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def spec_json(job: JobRecord, *, with_config: bool) -> str:
    """The immutable part of a job outside any batch (a batch job's: `batch_spec_json`)."""
    exclude = set(JobRecord.model_fields) - _SPEC
    if not with_config:
        exclude.add("config")
    return job.model_dump_json(exclude=exclude, exclude_defaults=True)


def batch_spec_json(job: JobRecord) -> str:
    """The immutable part of a batch job, without what its batch holds (id, tenant, config) nor its kind
    when that is chat (the default of a batch job's spec: most lines are chats)."""
    exclude = (set(JobRecord.model_fields) - _SPEC) | _BATCH_HOLDS
    if job.kind is Kind.chat:
        exclude.add("kind")
    return job.model_dump_json(exclude=exclude, exclude_defaults=True)


def spec_options_json(job: JobRecord) -> bytes:
    """The spec members a batch's jobs share (metadata, media, cache, priority; each only when it is not
    the default), as `batch_spec_json` writes them: ',"media":{…}' or b'' (see `new_batch_spec`)."""
    members = job.model_dump_json(
        include={"metadata", "media", "cache", "priority", "tier"}, exclude_defaults=True
    ).encode()
    return b"," + members[1:-1] if members != b"{}" else b""


def new_batch_spec(
    custom_id: bytes, kind: str, request: bytes, options: bytes, created_at: float, *, stored: bool = False
) -> bytes:
    """`batch_spec_json` of a new batch job from its parts already serialised as JSON (the submit path
    makes one a line: no model is built): `custom_id` (JSON, b'null' for none), `kind` (a Kind), `request`
    (the request's JSON, or the JSON string of its storage key when `stored`), `options`
    (spec_options_json)."""
    parts = [b"{"]
    if custom_id != b"null":
        parts += [b'"custom_id":', custom_id, b","]
    if kind != Kind.chat:
        parts += [b'"kind":"', kind.encode(), b'",']
    parts += [b'"request_key":' if stored else b'"request":', request, options]
    parts += [b',"created_at":', repr(created_at).encode(), b"}"]
    return b"".join(parts)


def state_fields(job: JobRecord) -> dict[str, str]:
    """The job's state as hash fields; '' for a field that is unset (finish deletes those)."""
    out: dict[str, str] = {}
    for name in _FLOAT_FIELDS:
        value = getattr(job, name)
        out[name] = repr(value) if value is not None else ""
    for name in _TEXT_FIELDS:
        out[name] = getattr(job, name) or ""
    data = job.model_dump(mode="json", include=set(_JSON_FIELDS))
    for name in _JSON_FIELDS:
        value = data[name]
        out[name] = json.dumps(value, separators=(",", ":")) if value else ""
    out["cached"] = "1" if job.cached else ""
    return out


def job_from_fields(fields: Mapping[Any, Any], config: Any = None) -> JobRecord:
    """A JobRecord from a job hash's fields (as HGETALL gives them; a batch job's `spec`, `id` and
    `tenant` added from its batch, as `claim` and `Records.get_jobs` do) and its batch's config JSON."""
    v = {as_text(k): as_text(x) for k, x in fields.items()}
    data: dict[str, Any] = json.loads(v["spec"])
    data["status"] = v["status"]
    if "id" not in data:  # a batch job's spec leaves these to its batch, and its kind when chat
        data["id"], data["tenant"] = v["id"], v["tenant"]
        data.setdefault("kind", Kind.chat.value)
    if v.get("batch"):
        data["batch_id"] = v["batch"]
        if config:
            data["config"] = json.loads(as_text(config))
    for name in _FLOAT_FIELDS:
        if v.get(name):
            data[name] = float(v[name])
    for name in _TEXT_FIELDS:
        if v.get(name):
            data[name] = v[name]
    for name in _JSON_FIELDS:
        if v.get(name):
            data[name] = json.loads(v[name])
    data["cached"] = v.get("cached") == "1"
    return JobRecord.model_validate(data)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {as_text(flat[i]): as_text(flat[i + 1]) for i in range(0, len(flat), 2)}


@dataclass
class Claim:
    """What `Records.claim` found: `job` is set for 'ok' and 'expired'; `cache` is the cache's answer
    for a job the producer keyed (an entry's JSON, 'lead' or 'wait'), None when it was not asked."""

    outcome: str  # ok | expired | missing | a terminal status
    job: JobRecord | None = None
    cache: str | None = None


def claim_from(out: list[Any]) -> Claim:
    """A Claim from claim_job's answer (mmq/lua/claim_job.lua), given by the claim and start scripts."""
    outcome = as_text(out[0])
    if outcome not in ("ok", "expired"):
        return Claim(outcome)
    config = out[2] if len(out) > 2 else None
    cache = as_text(out[3]) if len(out) > 3 and out[3] else None
    return Claim(outcome, job_from_fields(_pairs(out[1]), config), cache)


def looks_up(cache_key: str | None, cache: CacheOptions | None) -> bool:
    """Whether `claim` asks the cache for a job: its key is known at submit, it takes cached answers
    (not off, not a refresh) and an exact lookup finds them (a perceptual key searches an index)."""
    enabled = cache is None or (cache.enabled and not cache.refresh)
    return bool(cache_key) and enabled and not (cache_key or "").startswith("p:")


def looks_up_at_claim(job: JobRecord) -> bool:
    return looks_up(job.cache_key, job.cache)


@dataclass(slots=True)
class JobRow:
    """A new batch job as `Records.add_rows` writes it: its hash's fields and its spec (a field of the
    batch's specs hash)."""

    id: str
    status: str
    fields: dict[str, str]
    spec: bytes | str
    cached: bool = False


def queued_row(
    job_id: str,
    batch_id: str,
    spec: bytes,
    *,
    cache_key: str | None = None,
    cache: CacheOptions | None = None,
    deadline: float | None = None,
) -> JobRow:
    """A new queued batch job's row, as `batch_row` would make it from the job's record (the submit path
    builds no record: see `new_batch_spec`)."""
    fields = {"status": JobStatus.queued.value, "batch": batch_id}
    if deadline is not None:
        fields["deadline"] = repr(deadline)
    if cache_key:
        fields["cache_key"] = cache_key
        if looks_up(cache_key, cache):
            fields["cache_lookup"] = "1"
    return JobRow(job_id, JobStatus.queued.value, fields, spec)


def batch_row(job: JobRecord) -> JobRow:
    """A batch job's row from its record (a line refused at submit, a cache hit, a test's record)."""
    if not job.batch_id:
        raise ValueError(f"job {job.id} is in no batch: its record is written whole (Records.add_job)")
    fields = {"status": job.status.value, "batch": job.batch_id}
    fields.update((k, v) for k, v in state_fields(job).items() if v)
    if looks_up_at_claim(job):
        fields["cache_lookup"] = "1"
    return JobRow(job.id, job.status.value, fields, batch_spec_json(job), job.cached)
