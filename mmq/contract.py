"""The job contract's records: job and batch records, statuses, tiers, costs and their options.

Producers write these, workers read the same models back, and the API shows them. The request bodies
they carry are mmq/request_models.py's.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mmq.request_models import Kind


# ------------------------------------------------------------------------------------------- records
class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    budget = "budget"  # waiting for a budget: resumes when it is raised or spending in flight settles
    provider_batch = "provider_batch"  # sent (or about to be) through its provider's own batch API
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class Priority(StrEnum):
    """Queue order: every due high job runs before any normal one, every normal before any low."""

    high = "high"
    normal = "normal"
    low = "low"


class Tier(StrEnum):
    """How a batch's jobs are called: `realtime` (each its own call), `batch` (the eligible ones through
    their provider's own batch API, at its batch price), `auto` (batch when the deadline leaves room)."""

    realtime = "realtime"
    batch = "batch"
    auto = "auto"


class OnBudget(StrEnum):
    """What a job does when its call would take a budget past its limit."""

    wait = "wait"  # `budget` state: resumes when the budget is raised or in-flight spending settles
    fail = "fail"  # fails with `budget_exceeded`


class BatchStatus(StrEnum):
    in_progress = "in_progress"
    completed = "completed"  # every job ended (some may have failed)
    expired = "expired"  # the deadline passed: jobs that had not run failed with batch_expired
    cancelling = "cancelling"  # cancel asked: queued jobs are cancelled, running ones finish
    cancelled = "cancelled"


class JobError(BaseModel):
    type: str  # invalid_request | invalid_media | provider_error | timeout | internal
    message: str
    provider_status: int | None = None
    code: str | None = None


class Attempt(BaseModel):
    target: str
    status: int | None = None  # HTTP status, None when no answer arrived
    latency_ms: float
    error: str | None = None
    at: float = Field(default_factory=time.time)  # the last of `repeats`
    skipped: bool = False  # not called: the target's circuit was open
    tier: str | None = None  # "batch": answered through the provider's batch API (None: realtime)
    provider_batch: str | None = None  # … in this provider batch
    # the same outcome several times in a row (a target down for hours, a job deferred again and again)
    # is one entry: the record stays bounded however long the job waits
    repeats: int = Field(default=1, ge=1)

    def same_as(self, other: Attempt) -> bool:
        return (self.target, self.status, self.error, self.skipped) == (
            other.target,
            other.status,
            other.error,
            other.skipped,
        )


class JobCost(BaseModel):
    """What a job's provider call cost (mmq/pricing priced its reported usage; the job record and its API
    view carry it). `missing`: why it is not priced ("no price for openai/x"): the job still ran."""

    usd: str  # an exact decimal, as text
    micro_usd: int  # rounded up: what the batch's and the tenant's counters add
    tier: str = "realtime"
    priced_as: str | None = None
    missing: str | None = None
    estimated: bool = False  # some quantity came from a rule, not from the provider's usage
    saved_micro_usd: int = 0  # the batch tier: what the same usage costs realtime, less what it cost


class ResultFile(BaseModel):
    key: str  # storage key
    content_type: str
    bytes: int


class JobResult(BaseModel):
    """Where a job's output lives. `body_key` holds the OpenAI-shaped response JSON."""

    body_key: str
    files: list[ResultFile] = Field(default_factory=list)


class MediaPrep(BaseModel):
    """Proactive downscaling for a job or batch: smaller images cost less and answer sooner."""

    model_config = ConfigDict(extra="forbid")
    max_side: int | None = Field(default=None, gt=0)  # pixels, longest side
    max_bytes: int | None = Field(default=None, gt=0)


class CacheLevel(StrEnum):
    exact = "exact"  # the bytes of every input
    pixels = "pixels"  # decoded pixels: the same image re-encoded losslessly or with other metadata
    perceptual = "perceptual"  # opt-in: a 64-bit perceptual hash within a Hamming distance


class CacheOptions(BaseModel):
    """How a job or batch uses the result cache. `cache: false` in a request is `enabled=False`."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    level: CacheLevel = CacheLevel.exact
    ttl_s: int | None = Field(default=None, gt=0)  # None: the worker's MMQ_CACHE_TTL_S
    refresh: bool = False  # call the provider even on a hit, and replace the entry
    threshold: int | None = Field(default=None, ge=0, le=16)  # perceptual: max differing bits

    @classmethod
    def parse(cls, value: CacheOptions | dict[str, Any] | bool | str | None) -> CacheOptions | None:
        """None (the defaults), a bool, a dict, or JSON text of either."""
        if value is None or isinstance(value, CacheOptions):
            return value
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, bool):
            return cls(enabled=value)
        return cls.model_validate(value)


class JobRecord(BaseModel):
    id: str
    batch_id: str | None = None
    custom_id: str | None = None
    tenant: str
    kind: Kind
    request: dict[str, Any] | None = None  # small requests are kept inline
    request_key: str | None = None  # large ones go to storage
    config: dict[str, Any] | None = None  # routing config (Portkey schema), validated at submit
    metadata: dict[str, Any] = Field(default_factory=dict)  # for conditional routing
    media: MediaPrep | None = None
    cache: CacheOptions | None = None  # None: the defaults (exact level)
    priority: Priority = Priority.normal
    tier: Tier = Tier.realtime  # its batch's tier: `batch`/`auto` may send it through a provider batch
    deadline: float | None = None  # epoch s: a job that has not run by then fails with batch_expired
    cache_key: str | None = None  # set at submit when every input is at hand, else by the worker
    status: JobStatus = JobStatus.queued
    cached: bool = False  # answered from the cache: no provider call
    cached_from: str | None = None  # the job whose result this one shares
    attempts: list[Attempt] = Field(default_factory=list)
    resume: dict[str, Any] | None = None  # {"target", "tries"}: where a deferred job picks up again
    result: JobResult | None = None
    usage: dict[str, Any] | None = None
    cost: JobCost | None = None  # set once a provider answered (a cache hit costs nothing)
    error: JobError | None = None
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None


class BatchCounts(BaseModel):
    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    budget: int = 0  # waiting for a budget (resumable)
    provider_batch: int = 0  # in the providers' own batches (the batch tier)
    cached: int = 0
    provider_calls: int = 0  # calls made by this batch's finished jobs (retries and fallbacks included)
    # lines a provider batch finished during its cancellation after their jobs had run realtime (the
    # batch tier's fallback): the only jobs it pays twice
    paid_twice: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled


class BatchRecord(BaseModel):
    id: str
    tenant: str
    status: BatchStatus = BatchStatus.in_progress
    sealed: bool = False  # every line has been submitted; until then a batch cannot complete
    # why its submission ended before its input did: `submission_interrupted` (its process stopped or
    # died; sealed with the lines it had sent, mmq/submissions.py), at `interrupted_at`
    interrupted: str | None = None
    interrupted_at: float | None = None
    counts: BatchCounts = Field(default_factory=BatchCounts)
    invalid_lines: int = 0
    metadata: dict[str, str] = Field(default_factory=dict)
    priority: Priority = Priority.normal
    not_before: float | None = None  # epoch s: no job starts before (a scheduled window)
    deadline: float | None = None  # epoch s: what has not run by then expires
    webhook_url: str | None = None  # POSTed the batch when it ends
    config: dict[str, Any] | None = None  # the routing config of every job, stored once on the batch
    max_cost_micro_usd: int | None = None  # the batch's budget (millionths of a dollar); None: none
    on_budget: OnBudget = OnBudget.wait  # what a job does when the budget would be exceeded
    tier: Tier = Tier.realtime  # resolved at submit (`auto` with no deadline an hour away: realtime)
    spent_micro_usd: int = 0  # what its jobs' provider calls cost (added as each job ends)
    reserved_micro_usd: int = 0  # estimates held by calls in flight against its budget
    saved_micro_usd: int = 0  # what the batch tier saved against the same usage realtime
    created_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
