"""Duplicate skipping in the worker, before any provider call: key the job, answer it from the cache, or
wait for an identical job in flight (single-flight).

The producer keys and answers what it can at submit time; the worker keys the rest (jobs whose images are
http URLs: fetched here, once, and handed to the media stage so they are not fetched twice).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from mmq.cache import CacheEntry, job_cache_key
from mmq.contract import CacheOptions, JobRecord
from mmq.errors import InvalidJob, ProviderError
from mmq.fetch import FetchedMedia, FetchPolicy, fetch_media
from mmq.fingerprint import Fingerprints
from mmq.request_models import BLOB_SCHEME
from mmq.storage import BlobNotFound
from worker.runtime import Runtime

_POLL_FIRST_S = 0.05
_POLL_MAX_S = 0.5


@dataclass
class Lookup:
    """What the cache said about one run of a job."""

    entry: CacheEntry | None = None  # a hit: finish the job with this result
    leader: bool = False  # this job holds the key's lock: it calls the provider and writes the entry
    wait_s: float | None = None  # an identical job is in flight: leave the slot for this long
    prefetched: dict[str, FetchedMedia] = field(default_factory=dict)


def options_of(job: JobRecord) -> CacheOptions:
    return job.cache or CacheOptions()


def ttl_for(rt: Runtime, job: JobRecord) -> int:
    opts = options_of(job)
    if opts.ttl_s:
        return opts.ttl_s
    max_age = ((job.config or {}).get("cache") or {}).get("max_age")  # Portkey's per-config cache age
    return int(max_age) if max_age else rt.settings.cache_ttl_s


async def _key(rt: Runtime, job: JobRecord, request: dict[str, Any], lookup: Lookup) -> str | None:
    policy = FetchPolicy(
        max_bytes=rt.settings.fetch_max_bytes, allow_hosts=frozenset(rt.settings.fetch_allow_hosts)
    )

    async def load(ref: str) -> bytes | None:
        if ref.startswith(BLOB_SCHEME):
            try:
                return await rt.storage.get(ref[len(BLOB_SCHEME) :])
            except BlobNotFound:
                return None  # the job fails on it in a moment, with a clear error; no key needed
        if ref.startswith(("http://", "https://")):
            try:
                fetched = await fetch_media(rt.client, ref, policy)
            except (InvalidJob, ProviderError):
                # not reachable from here (the provider may still fetch it): key by the URL itself
                return b"url:" + ref.encode()
            lookup.prefetched[ref] = fetched
            return fetched.data
        return None

    fingerprints = Fingerprints(options_of(job).level, load, rt.settings.image_max_pixels)
    return await job_cache_key(job, request, fingerprints)


def lock_ttl_s(rt: Runtime) -> float:
    """How long a leader holds a key's lock: past its job's timeout, so only a crashed leader loses it."""
    return rt.settings.job_timeout_s * 2


def _answer(lookup: Lookup, found: CacheEntry | str) -> bool:
    """Takes in what the cache said; False when the answer is 'wait'."""
    if isinstance(found, CacheEntry):
        lookup.entry = found
    elif found == "lead":
        lookup.leader = True
    return found != "wait"


async def look_up(
    rt: Runtime, job: JobRecord, request: dict[str, Any], at_claim: str | None = None
) -> Lookup:
    """Hit, lead, or wait. A job with the cache off, or whose key cannot be made, simply runs.
    `at_claim`: the answer `claim` already got for a job keyed at submit (an entry's JSON, 'lead' or
    'wait'), so the first look costs no round trip of its own."""
    lookup = Lookup()
    opts = options_of(job)
    if not opts.enabled:
        return lookup
    if at_claim is not None:
        found = at_claim if at_claim in ("lead", "wait") else CacheEntry.model_validate_json(at_claim)
        if _answer(lookup, found):
            return lookup
    if job.cache_key is None:
        job.cache_key = await _key(rt, job, request, lookup)
        if job.cache_key is None:
            return lookup
    if opts.refresh:
        return lookup  # call the provider and replace the entry; no waiting on anyone
    if job.cache_key.startswith("p:") and (near := await rt.cache.find_near(job.cache_key, opts)):
        lookup.entry = near
        return lookup
    deadline = time.monotonic() + rt.settings.cache_wait_s
    step = _POLL_FIRST_S
    if at_claim == "wait":
        await asyncio.sleep(step)  # claim just found the key busy: look again after a moment
        step = min(step * 2, _POLL_MAX_S)
    while True:
        found = await rt.cache.lookup_or_lead(job.cache_key, job.id, lock_ttl_s(rt))
        if _answer(lookup, found):
            return lookup
        if time.monotonic() + step > deadline:
            # the leader is slow (or deferred): free this slot and look again later, less often each time
            waits = int((job.resume or {}).get("cache_waits", 0))
            job.resume = {**(job.resume or {}), "cache_waits": waits + 1}
            lookup.wait_s = min(1.0 * 1.5**waits, 30.0) * random.uniform(1.0, 1.2)
            return lookup
        await asyncio.sleep(step)
        step = min(step * 2, _POLL_MAX_S)


def remember(rt: Runtime, job: JobRecord, pipe: Any) -> None:
    """After a success, queued on `pipe`: the entry other duplicates will take, then the lock released."""
    if job.cache_key and job.result and options_of(job).enabled:
        entry = CacheEntry(job_id=job.id, result=job.result)
        rt.cache.queue_put(pipe, job.cache_key, entry, ttl_for(rt, job), job_id=job.id)


async def give_up_lead(rt: Runtime, job: JobRecord) -> None:
    """After a failure: let a waiting duplicate take over."""
    if job.cache_key:
        await rt.cache.release(job.cache_key, job.id)
