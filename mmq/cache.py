"""The result cache: a key per canonical request, entries and single-flight locks in Redis.

The key hashes what can change a provider's answer and nothing else:
- the request as JSON with sorted keys, OpenAI defaults filled in (`detail` absent = `auto`, `n` absent = 1,
  a string `content` = one text part) and fields that cannot change the output dropped (`user`,
  `metadata`, `stream_options`, an audio `filename`, …);
- every image, document and audio input replaced by a fingerprint of its content, so the same image sent
  as an http URL, a data: URL or an upload gives the same key (see `mmq/fingerprint.py` for the levels);
- the job kind, the routing config (and the routing metadata when the config routes on it), the job's
  downscaling options, the tenant.

An entry points at the stored result of the job that made it (`JobResult`: a JSON body and content-addressed
files): a hit copies nothing. Entries expire after a TTL.

Single-flight: of several identical jobs in flight, the one that takes the key's lock calls the provider;
the others poll for its entry for a moment and otherwise leave their worker slot (a deferred re-run) until
it is there. The lock is released when the leader fails, so a waiter takes over; a crashed leader's lock
expires.

Perceptual keys (opt-in) are `p:<scope>:<bits>`: scope hashes everything but the images, bits are the
images' perceptual hashes. A lookup finds any entry of the same scope whose bits lie within the job's
Hamming distance, through a band index (pigeonhole: two hashes within d bits agree exactly on at least
one of d+1 bands).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from mmq import scripts
from mmq.contract import CacheLevel, CacheOptions, JobRecord, JobResult, JobStatus
from mmq.keys import Keys
from mmq.request_models import Kind, chat_media_slots

# Fields that never change what a provider answers (identity, transport, storage and routing hints).
_DROPPED = frozenset(
    {
        "user",
        "metadata",
        "stream",
        "stream_options",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
# OpenAI's documented defaults: a request that spells them out is the same request as one that does not.
_DEFAULTS: dict[Kind, dict[str, Any]] = {
    Kind.chat: {"n": 1, "temperature": 1, "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0},
    Kind.image: {"n": 1},
    Kind.speech: {"response_format": "mp3", "speed": 1.0},
    Kind.transcription: {"response_format": "json", "temperature": 0},
    Kind.translation: {"response_format": "json", "temperature": 0},
}
# Results are stored the same way whatever these ask for (an image arrives as a file either way).
_RESULT_SHAPE_ONLY: dict[Kind, frozenset[str]] = {Kind.image: frozenset({"response_format"})}

KEY_VERSION = 1
PERCEPTUAL_BANDS_MAX = 16  # per 64-bit image hash; see `Cache.bands`


def canonical_request(kind: Kind, request: dict[str, Any]) -> dict[str, Any]:
    """A copy of `request` with defaults filled in and output-neutral fields dropped."""
    # a JSON request's own copy: a round trip through the C codec costs a fraction of copy.deepcopy
    return _canonicalize(kind, json.loads(json.dumps(request)))


def _own_copy(kind: Kind, request: dict[str, Any], *, parts: bool = True) -> dict[str, Any]:
    """A copy of a validated request deep enough for `_canonicalize` and the media fingerprints to change
    freely (the top level, and a chat's messages and, with `parts`, their content parts); the rest is
    shared, read only. The same copy as canonical_request's JSON round trip for a request in JSON types
    (as dump_request gives), at a fraction of its cost: the producer keys every line of a batch. A chat
    with no media part needs no copy of its parts (`parts=False`): only a message's string content is
    replaced."""
    out = dict(request)
    if kind is Kind.chat and isinstance(out.get("messages"), list):
        out["messages"] = [_message_copy(m, parts) for m in out["messages"]]
    return out


def _message_copy(message: Any, parts: bool) -> Any:
    if not isinstance(message, dict):
        return message
    message = dict(message)
    if parts and isinstance(content := message.get("content"), list):
        message["content"] = [_part_copy(p) for p in content]
    return message


def _part_copy(part: Any) -> Any:
    if not isinstance(part, dict):
        return part
    part = dict(part)
    for media in ("image_url", "file"):
        if isinstance(part.get(media), dict):
            part[media] = dict(part[media])
    return part


def _canonicalize(kind: Kind, request: dict[str, Any]) -> dict[str, Any]:
    """`canonical_request` of the request's own copy, which it changes."""
    shape_only = _RESULT_SHAPE_ONLY.get(kind, ())
    out = {k: v for k, v in request.items() if v is not None and k not in _DROPPED and k not in shape_only}
    for field, default in _DEFAULTS.get(kind, {}).items():
        if out.get(field) == default:
            del out[field]  # absent and spelled-out defaults look the same
    if kind is Kind.chat:
        for message in out.get("messages", []):
            if isinstance(message.get("content"), str):
                message["content"] = [{"type": "text", "text": message["content"]}]
            for part in message.get("content") or []:
                if part.get("type") == "image_url":
                    part["image_url"].setdefault("detail", "auto")
                if part.get("type") == "file":
                    part["file"].pop("filename", None)  # the name is not the content
    if kind in (Kind.transcription, Kind.translation):
        out.pop("filename", None)
    return out


@dataclass(frozen=True)
class Fingerprint:
    """A media input's content, as the key sees it."""

    token: str  # "sha256:…" (bytes) or "px:…" (decoded pixels)
    phash: int | None = None  # 64-bit difference hash (images at the non-exact levels)
    # what a perceptual match must share exactly: a coarse mean colour and aspect ratio. A dHash only
    # sees gradients, so every flat image has the same one: a plain blue swatch must not match a red one.
    coarse: str | None = None


Fingerprinter = Callable[[str, str], Awaitable[Fingerprint | None]]  # (reference, "image"|"pdf"|"audio")


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _routing_scope(config: dict[str, Any] | None, metadata: dict[str, Any]) -> dict[str, Any] | None:
    if config is None:
        return None
    scope: dict[str, Any] = {"config": config}
    if '"conditional"' in json.dumps(config):
        scope["metadata"] = metadata  # the metadata picks the target, so it can change the answer
    return scope


async def cache_key(
    kind: Kind,
    request: dict[str, Any],
    *,
    tenant: str,
    config: dict[str, Any] | None,
    metadata: dict[str, Any],
    media: dict[str, Any] | None = None,
    options: CacheOptions,
    fingerprint: Fingerprinter,
) -> str | None:
    """The job's cache key, or None when an input cannot be fingerprinted here (the producer cannot
    fetch http images: the worker keys those jobs)."""
    body = canonical_request(kind, request)
    perceptual = await _fingerprint_media(kind, body, options, fingerprint)
    if perceptual is None:
        return None
    scope = _digest(
        {
            "v": KEY_VERSION,
            "kind": kind.value,
            "tenant": tenant,
            "routing": _routing_scope(config, metadata),
            "media": media or None,  # downscaling changes what the provider sees
            "request": body,
        }
    )
    return _with_bits(scope, perceptual)


async def _fingerprint_media(
    kind: Kind, body: dict[str, Any], options: CacheOptions, fingerprint: Fingerprinter
) -> list[int] | None:
    """Replaces every media input of a canonical `body` by its fingerprint; returns the perceptual hashes
    to key beside the scope ([] below the perceptual level), or None when an input has no fingerprint."""
    perceptual: list[int] = []
    if kind is Kind.chat:
        for slot in chat_media_slots(body):
            found = await fingerprint(slot.value, slot.media)
            if found is None:
                return None
            token = found.token
            if options.level is CacheLevel.perceptual and slot.media == "image" and found.phash is not None:
                perceptual.append(found.phash)
                token = f"image:{found.coarse}"  # the bits go beside the scope, compared with a distance
            slot.set(token)
    elif kind in (Kind.transcription, Kind.translation):
        found = await fingerprint(body["file"], "audio")
        if found is None:
            return None
        body["file"] = found.token
    return perceptual


def _with_bits(scope: str, perceptual: list[int]) -> str:
    if perceptual:
        return f"p:{scope}:{''.join(f'{h:016x}' for h in perceptual)}"
    return scope


# _digest's JSON, with the encoder built once (json.dumps builds one per call for non-default options)
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


class KeyScope:
    """The producer's `cache_key` for the jobs of one batch, which share their tenant, routing and
    downscaling: that part of the digested JSON is written once, and a job's key costs a copy of its
    request's containers (no JSON round trip), one dumps and one SHA-256. The keys are `cache_key`'s
    (tests/mmq/test_key_scope.py holds it): a worker keying the same request finds the same entry."""

    def __init__(
        self,
        *,
        tenant: str,
        config: dict[str, Any] | None,
        metadata: dict[str, Any],
        media: dict[str, Any] | None = None,
    ) -> None:
        # _digest's object with sorted keys: kind, media, request, routing, tenant, v
        media_json = _canonical_json(media or None)
        self._heads = {
            kind: '{"kind":' + _canonical_json(kind.value) + ',"media":' + media_json + ',"request":'
            for kind in Kind
        }
        self._tail = (
            ',"routing":'
            + _canonical_json(_routing_scope(config, metadata))
            + ',"tenant":'
            + _canonical_json(tenant)
            + ',"v":'
            + _canonical_json(KEY_VERSION)
            + "}"
        )

    async def key(
        self,
        kind: Kind,
        request: dict[str, Any],
        options: CacheOptions,
        fingerprint: Fingerprinter,
        *,
        media: bool = True,
    ) -> str | None:
        """`media`: False when the caller knows the request has no media input (none is looked for)."""
        body = _canonicalize(kind, _own_copy(kind, request, parts=media))
        perceptual = await _fingerprint_media(kind, body, options, fingerprint) if media else []
        if perceptual is None:
            return None
        text = self._heads[kind] + _canonical_json(body) + self._tail
        return _with_bits(hashlib.sha256(text.encode()).hexdigest(), perceptual)


async def job_cache_key(job: JobRecord, request: dict[str, Any], fingerprint: Fingerprinter) -> str | None:
    """`cache_key` for a job record: its kind, tenant, routing, downscaling and cache options."""
    return await cache_key(
        job.kind,
        request,
        tenant=job.tenant,
        config=job.config,
        metadata=job.metadata,
        media=job.media.model_dump(exclude_none=True) if job.media else None,
        options=job.cache or CacheOptions(),
        fingerprint=fingerprint,
    )


class CacheEntry(BaseModel):
    job_id: str  # the job that called the provider
    result: JobResult
    created_at: float = Field(default_factory=time.time)


def answer_from(job: JobRecord, entry: CacheEntry) -> None:
    """Make `job` a cache hit: succeeded, sharing the stored result of the job that made the entry."""
    job.cached = True
    job.cached_from = entry.job_id
    job.result = entry.result
    job.usage = None  # no provider was paid for this one
    job.error = None
    job.resume = None
    job.status = JobStatus.succeeded
    job.finished_at = time.time()


def _parse_perceptual(key: str) -> tuple[str, list[int]]:
    _, scope, bits = key.split(":", 2)
    return scope, [int(bits[i : i + 16], 16) for i in range(0, len(bits), 16)]


class Cache:
    """Entries, locks and the perceptual index, shared by every producer and worker through Redis.

    `bands`: how the perceptual index splits each 64-bit image hash. A lookup is exact for distances
    below `bands` bits; the threshold a job asks for is capped there."""

    def __init__(self, redis: Redis, prefix: str = "mmq", *, ttl_s: int = 7 * 86400, bands: int = 8) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.bands = max(1, min(bands, PERCEPTUAL_BANDS_MAX))
        self.keys = Keys(prefix)
        self._lookup_or_lead = scripts.register(redis, "lookup_or_lead")
        self._release = scripts.register(redis, "release_lock")

    def entry_key(self, key: str) -> str:
        return self.keys.cache_entry(key)

    def lock_key(self, key: str) -> str:
        return self.keys.cache_lock(key)

    def _band_key(self, scope: str, band: int, value: int) -> str:
        return self.keys.cache_band(scope, band, value)

    def _bands_of(self, hashes: list[int]) -> list[tuple[int, int]]:
        """(band index, band value) over the concatenated hashes."""
        width = 64 // self.bands
        out = []
        for n, h in enumerate(hashes):
            for b in range(self.bands):
                shift = 64 - width * (b + 1) if b < self.bands - 1 else 0
                bits = width if b < self.bands - 1 else 64 - width * (self.bands - 1)
                out.append((n * self.bands + b, (h >> shift) & ((1 << bits) - 1)))
        return out

    def max_distance(self, options: CacheOptions) -> int:
        wanted = options.threshold if options.threshold is not None else 4
        return min(wanted, self.bands - 1)

    # ------------------------------------------------------------------ reads
    async def get(self, key: str) -> CacheEntry | None:
        raw = await self.redis.get(self.entry_key(key))
        return CacheEntry.model_validate_json(raw) if raw else None

    async def get_many(self, keys: list[str]) -> list[CacheEntry | None]:
        if not keys:
            return []
        raws = await self.redis.mget([self.entry_key(k) for k in keys])
        return [CacheEntry.model_validate_json(r) if r else None for r in raws]

    async def find_near(self, key: str, options: CacheOptions) -> CacheEntry | None:
        """A perceptual key's nearest entry within the job's distance (the key itself first)."""
        exact = await self.get(key)
        if exact is not None or not key.startswith("p:"):
            return exact
        scope, hashes = _parse_perceptual(key)
        limit = self.max_distance(options)
        pipe = self.redis.pipeline(transaction=False)
        for band, value in self._bands_of(hashes):
            pipe.smembers(self._band_key(scope, band, value))
        candidates: set[str] = set()
        for members in await pipe.execute():
            candidates.update(m.decode() if isinstance(m, bytes) else m for m in members)
        scored = []
        for bits in candidates:
            other = [int(bits[i : i + 16], 16) for i in range(0, len(bits), 16)]
            if len(other) != len(hashes):
                continue
            distance = sum((a ^ b).bit_count() for a, b in zip(hashes, other, strict=True))
            if distance <= limit:
                scored.append((distance, bits))
        for _, bits in sorted(scored):
            entry = await self.get(f"p:{scope}:{bits}")
            if entry is not None:  # an index member can outlive its entry
                return entry
        return None

    # ------------------------------------------------------------------ single-flight
    async def lookup_or_lead(self, key: str, job_id: str, lock_ttl_s: float) -> CacheEntry | str:
        """The entry if there is one; else 'lead' if this job now holds the key's lock, or 'wait'."""
        out = await self._lookup_or_lead(
            [self.entry_key(key), self.lock_key(key)], [job_id, int(lock_ttl_s * 1000)]
        )
        out = out.decode() if isinstance(out, bytes) else out
        if out in ("lead", "wait"):
            return out
        return CacheEntry.model_validate_json(out)

    async def release(self, key: str, job_id: str) -> None:
        await self._release([self.lock_key(key)], [job_id])

    # ------------------------------------------------------------------ writes
    async def put(self, key: str, entry: CacheEntry, ttl_s: int | None = None, *, job_id: str = "") -> None:
        """Store the entry (and index a perceptual key) and release the lock if `job_id` holds it, in one
        round trip."""
        pipe = self.redis.pipeline(transaction=False)
        self.queue_put(pipe, key, entry, ttl_s, job_id=job_id)
        await scripts.execute(pipe)

    def queue_put(
        self, pipe: Any, key: str, entry: CacheEntry, ttl_s: int | None = None, *, job_id: str = ""
    ) -> None:
        """`put`, queued on the caller's pipeline (the worker sends it with the job's outcome)."""
        ttl = ttl_s or self.ttl_s
        pipe.set(self.entry_key(key), entry.model_dump_json(), ex=ttl)
        if key.startswith("p:"):
            scope, hashes = _parse_perceptual(key)
            bits = key.split(":", 2)[2]
            for band, value in self._bands_of(hashes):
                band_key = self._band_key(scope, band, value)
                pipe.sadd(band_key, bits)
                pipe.expire(band_key, ttl)
        if job_id:  # after the entry: a waiter that sees the lock gone finds the entry
            self._release.queue(pipe, [self.lock_key(key)], [job_id])
