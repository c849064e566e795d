"""The batch tier's engine: what can wait goes through its provider's own batch API at the batch price,
and what cannot wait any longer comes back to a realtime call in time for the deadline.

A job's life on this tier, each step an arq job or a step of one (so a killed worker's step runs again):
1. deposit (the job function, worker/pipeline.py): a job of a `batch`/`auto` batch whose first target
   has a native batch API (worker/batch_tier/apis) is planned and made ready as for a realtime call;
   instead of the call, the realtime adapter's own translation becomes its batch line (kept in storage:
   it may hold base64 media) and the job waits, `provider_batch`, in its group (target, model, kind).
   A gather task for the group is scheduled once per `gather_s` window.
2. gather (`nb_gather`): the group's waiting jobs become packs (the intent, recorded first), and each
   pack becomes one provider batch tagged with the pack's id; a pack found `creating` (its gather died)
   is adopted by that tag or created, never twice. A refused create sends its jobs realtime.
   Packs stay within the enqueued-token limit of their ledger (provider, key, model: the target's
   `batch_queue_tokens`, else MMQ_BATCH_TIER_QUEUE_TOKENS, and a lower one learned from a refusal);
   jobs past it wait for a pack of the ledger to end, or go realtime when their deadline can wait no
   longer. A pack the provider refuses for that quota (a 429 at the create, or a batch failed with
   `token_limit_exceeded`) waits and shrinks while the deadline allows (quota.py).
   An API with a minimum batch (`min_requests`: Bedrock's) gathers a group again while its jobs are
   still coming in, and sends a pack below the minimum realtime (never padded); one the operator has
   not configured (`enabled` False) takes no deposits.
3. poll (`nb_poll`, re-run with a backoff): the provider batch's state. While it runs, the latest moment
   to fall back is recomputed: the deadline, less the time the jobs still pending need realtime at their
   target's rate, less a margin. At that moment the provider batch is cancelled and its pending jobs go
   realtime at once (so the deadline holds whatever the cancellation takes).
4. harvest (when it ended): each line is stored exactly as a realtime answer is (result, cache entry,
   counters, an attempt with `tier: batch` and the provider batch id, the cost at the batch price). A line
   that finished during the cancellation of a pack that fell back answers its job if the realtime call has
   not run yet; if it has, the job was paid twice: counted in its batch's `paid_twice`, the first answer
   kept. A line that may run again (expired, cancelled, a 5xx inside the batch) goes realtime; a 4xx
   fails its job.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from arq.constants import job_key_prefix
from arq.jobs import serialize_job

from mmq import scripts
from mmq.contract import Attempt, JobError, JobRecord, JobStatus, Kind, Tier
from mmq.errors import ProviderError
from mmq.packs import REALTIME_RESUME, Pack, group_of, group_parts
from mmq.pricing.audio import measure_audio
from mmq.queue import JOB_EXPIRES_MS, score_for, serialize
from mmq.record_layout import state_fields
from worker import budget
from worker.batch_tier import quota
from worker.batch_tier.apis import native_for
from worker.batch_tier.protocol import LineResult, NativeBatchAPI, ProviderBatch
from worker.finish import Writes, finish
from worker.prepare import ImageFacts
from worker.providers import get_adapter
from worker.providers.base import AudioInput, ProviderResponse, Target
from worker.results import store_result
from worker.routes import Route
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")

GATHER_FUNCTION = "nb_gather"
POLL_FUNCTION = "nb_poll"
PACK_KEY = "mmq_pack"  # the provider batch's metadata naming its pack
STEP_LEASE_S = 15.0  # a worker's hold on a pack for one step (renewed while it runs; a dead one's lapses)
HOLD_WINDOWS = 10  # a group with a minimum batch waits for stragglers at most this many gather windows


def line_key(job_id: str) -> str:
    return f"batch-tier/lines/{job_id}.json"


# --------------------------------------------------------------------------------------------- deposit
@dataclass
class Deposit(Exception):
    """Raised by the pipeline's planning: this job goes to `route`'s provider batch, through `api`
    (`images`: what prepare measured of its images, by data: URL, for its enqueued tokens)."""

    route: Route
    api: NativeBatchAPI
    images: dict[str, ImageFacts] = field(default_factory=dict)
    audio: AudioInput | None = None  # a transcription's audio, for a batch line that carries it inline


def eligible(rt: Runtime, job: JobRecord, route: Route) -> NativeBatchAPI | None:
    """The native batch API this job may go through on `route`, or None (a realtime call)."""
    if job.tier is Tier.realtime or (job.resume or {}).get("tier") == REALTIME_RESUME["tier"]:
        return None
    api = native_for(route.target.provider)
    if api is None or job.kind not in api.kinds or not api.enabled:
        return None
    if job.deadline is not None:
        left = job.deadline - time.time()
        # `auto` needs room for a batch and its fallback; `batch` was asked for outright
        need = (
            rt.settings.batch_tier_min_window_s if job.tier is Tier.auto else rt.settings.batch_tier_margin_s
        )
        if left < need:
            return None
    return api


def _realtime_rate(route: Route) -> float | None:
    """Jobs/s the route's target takes realtime, from its rate limit (the tighter of rps and rpm)."""
    limit = route.rate_limit
    if limit is None:
        return None
    rates = [r for r in (limit.rps, (limit.rpm or 0) / 60) if r]
    return min(rates) if rates else None


def _model(route: Route) -> str:
    model = route.request.get("model")
    return model if isinstance(model, str) else ""


def _schedule(pipe: Any, queue_name: str, function: str, arg: str, arq_id: str, at: float) -> None:
    """`function(arg)` under the arq id `arq_id` at `at`, unless that id is already queued or running."""
    now_ms = int(time.time() * 1000)
    at_ms = max(int(at * 1000), now_ms)
    payload = serialize_job(function, (arg,), {}, None, now_ms, serializer=serialize)
    pipe.set(job_key_prefix + arq_id, payload, px=JOB_EXPIRES_MS + at_ms - now_ms, nx=True)
    pipe.zadd(queue_name, {arq_id: at_ms if at_ms > now_ms else score_for("high", now_ms)}, nx=True)


async def deposit(rt: Runtime, job: JobRecord, d: Deposit, writes: Writes) -> None:
    """The job joins its group's waiting jobs, its batch line in storage, and a gather is scheduled for
    the current window; arq's entry is cleared in the same round trip (`writes.after`)."""
    adapter = get_adapter(d.route.target.provider)
    wires = adapter.translate(d.route.target, job.kind, d.route.request, d.audio)
    wire = wires if not isinstance(wires, list | tuple) else wires[0]
    line = d.api.line(job.id, job.kind, wire)
    await rt.storage.put(line_key(job.id), json.dumps(line, separators=(",", ":")).encode())
    group = group_of(d.route.target.provider, d.route.target.name, _model(d.route), job.kind.value)
    rt.native_targets[d.route.target.name] = d.route.target
    gather_s = rt.settings.batch_tier_gather_s
    window = int(time.time() // gather_s) if gather_s > 0 else 0
    if d.audio is not None and (seconds := measure_audio(d.audio.data)) is not None:
        job.usage = {"audio_seconds": seconds}  # prices a transcript whose answer says no duration (text)
    state = {k: v for k, v in state_fields(job).items() if k in ("attempts", "resume", "started_at", "usage")}
    state["nb_tokens"] = str(quota.input_tokens(rt, d.route, job.kind, d.images))  # what its pack enqueues
    pipe = rt.records.redis.pipeline(transaction=False)
    rt.packs.queue_deposit(pipe, job.id, job.batch_id, group, state)
    rt.packs.queue_rate(pipe, group, _realtime_rate(d.route))
    rt.packs.queue_quota(pipe, group, quota.ledger_of(d.route), d.route.batch_queue_tokens)
    for queue_write in writes.after:
        queue_write(pipe)
    _schedule(
        pipe,
        rt.settings.queue_name,
        GATHER_FUNCTION,
        group,
        f"nbgather:{group}:{window}",
        (window + 1) * gather_s if gather_s > 0 else time.time(),
    )
    await scripts.execute(pipe)  # EVALSHA, with the scripts re-sent after a Redis restart
    log.info("job %s waits for a provider batch (%s)", job.id, group, extra={"job_id": job.id})


# ---------------------------------------------------------------------------------------------- targets
async def target_of(rt: Runtime, pack: Pack) -> Target:
    """The pack's target, resolved on this worker (keys never leave it): from this process's memory, or by
    planning the pack's first job again."""
    known = rt.native_targets.get(pack.target)
    if known is not None:
        return known
    from worker.attempts import plan_routes  # (both import this module)
    from worker.pipeline import load_request

    for job_id in await rt.packs.job_ids(pack.id):
        [job] = await rt.records.get_jobs([job_id], with_config=True)  # its batch's routing config
        if job is None:
            continue
        routes = await plan_routes(rt, job, await load_request(job, rt.storage))
        for route in routes:
            if route.target.name == pack.target:
                rt.native_targets[pack.target] = route.target
                return route.target
    raise RuntimeError(f"pack {pack.id}: its target {pack.target!r} is no longer in its jobs' routing")


# ----------------------------------------------------------------------------------------------- gather
async def gather_pack(ctx: dict[str, Any], group: str) -> dict[str, Any]:
    """Packs `group`'s waiting jobs and creates a provider batch per pack (adopting a dead gather's)."""
    rt: Runtime = ctx["mmq"]
    provider, target_name, model, kind = group_parts(group)
    api = native_for(provider)
    assert api is not None, provider
    made = 0
    for pack in await rt.packs.packs_of_group(group, "creating"):
        await _create(rt, pack)  # a gather that died between intent and record
        made += 1
    fields = {"target": target_name, "model": model, "kind": kind, "provider": provider}
    rate = await rt.packs.rate(group)
    if rate:
        fields["rate"] = repr(rate)
    ledger, target_limit = await rt.packs.quota(group)
    limit = target_limit or rt.settings.batch_tier_queue_tokens or None
    while True:
        if await _still_arriving(rt, group, api):
            return {"ok": True, "packs": made}  # the gather it scheduled packs them with the newcomers
        pack_id, ids, limited = await rt.packs.open_pack(group, api.max_requests, fields, ledger, limit)
        if not ids:
            if limited:
                await _wait_for_room(rt, group)
            return {"ok": True, "packs": made}
        jobs = [j for j in await rt.records.get_jobs(ids) if j is not None]
        deadlines = [j.deadline for j in jobs if j.deadline is not None]
        if deadlines:
            await rt.packs.update(pack_id, deadline=repr(min(deadlines)))
        pack = await rt.packs.get(pack_id)
        assert pack is not None
        outcome = await _create(rt, pack)
        made += 1
        if limited or outcome == "quota":  # the rest wait for room (a pack's end gathers them at once)
            if limited:
                await _wait_for_room(rt, group)
            return {"ok": True, "packs": made}


async def _still_arriving(rt: Runtime, group: str, api: NativeBatchAPI) -> bool:
    """For an API with a minimum batch (Bedrock's): while the group's jobs are still coming in (one in
    the last gather window) and the oldest has not waited HOLD_WINDOWS windows, gather again once a
    window passes without any: a window's boundary must not cut a pack, or its tail, below the minimum
    (which would send those jobs realtime at the full price)."""
    gather_s = rt.settings.batch_tier_gather_s
    if api.min_requests <= 1 or gather_s <= 0:
        return False
    key = rt.packs.keys.nb_open(group)
    oldest = await rt.packs.redis.zrange(key, 0, 0, withscores=True)
    newest = await rt.packs.redis.zrange(key, -1, -1, withscores=True)
    if not oldest or not newest or await rt.packs.waiting(group) >= api.max_requests:
        return False
    now, last = time.time(), newest[0][1] / 1000
    if now - last >= gather_s or now - oldest[0][1] / 1000 > HOLD_WINDOWS * gather_s:
        return False
    await _schedule_gather(rt, group, last + gather_s, f"quiet:{last + gather_s:.3f}")
    return True


async def _below_minimum(rt: Runtime, pack: Pack, api: NativeBatchAPI, ids: list[str]) -> bool:
    """A pack smaller than the provider's minimum batch is never padded: its jobs run realtime now."""
    if len(ids) >= api.min_requests:
        return False
    error = f"{len(ids)} job(s), below the provider's minimum batch of {api.min_requests}: realtime"
    log.info("pack %s: %s", pack.id, error)
    await rt.packs.update(pack.id, state="failed", error=error)
    await rt.packs.to_realtime(rt.settings.queue_name, ids)
    await _ended(rt, pack)
    return True


async def _create(rt: Runtime, pack: Pack) -> str | None:
    """The pack's provider batch: found by its tag (a crash after create) or created; then polled. Under
    the pack's lease, so two workers never create it twice. Returns "quota" when the provider refused it
    for its enqueued-token quota and its jobs wait for a smaller pack."""
    async with rt.packs.hold(pack.id, STEP_LEASE_S) as mine:
        if mine:  # else another worker is on it
            return await _create_locked(rt, pack)
    return None


async def _create_locked(rt: Runtime, pack: Pack) -> str | None:
    current = await rt.packs.get(pack.id)
    if current is None or current.state != "creating":
        return  # done meanwhile
    api = native_for(pack.provider)
    assert api is not None, pack.provider
    target = await target_of(rt, pack)
    ids = await rt.packs.job_ids(pack.id)
    if pack.provider_batch_id is None and fallback_at(rt, pack, len(ids)) <= time.time():
        # the deadline would need these jobs back at once: a provider batch would only be paid twice
        log.warning("pack %s: no time left for a provider batch; %d job(s) go realtime", pack.id, len(ids))
        await rt.packs.update(pack.id, state="failed", error="no time left before the deadline")
        await rt.packs.to_realtime(rt.settings.queue_name, ids)
        await _ended(rt, pack)
        return None
    if pack.provider_batch_id is None and await _below_minimum(rt, pack, api, ids):
        return None  # (a pack's jobs are final before its create: it was never created)
    creating = False
    try:
        found = await api.find(rt.client, target, PACK_KEY, pack.id)
        if found is None:
            lines, ids = await _lines_within(rt, pack, api, ids)
            if await _below_minimum(rt, pack, api, ids):
                return None
            kind = Kind(pack.kind)
            creating = True  # (a refusal of the find, a 429 of the list, says nothing of the quota)
            found = await api.create(rt.client, target, kind, pack.model, lines, {PACK_KEY: pack.id})
    except ProviderError as e:
        refused = creating and quota.is_quota_refusal(e, pack.provider)
        if refused and await _quota_refused(rt, pack, ids, str(e)):
            return "quota"  # its jobs wait for a smaller pack, or for the ledger's other packs to end
        if e.retryable and (pack.deadline is None or fallback_at(rt, pack, len(ids)) > time.time() + 60):
            raise  # a 429/5xx: the rescue sweep tries again later
        # refused (a model with no batch, a quota) or no time left: these jobs are called realtime now
        log.warning("pack %s: provider batch refused (%s); %d job(s) go realtime", pack.id, e, len(ids))
        await rt.packs.update(pack.id, state="failed", error=str(e)[:500])
        await rt.packs.to_realtime(rt.settings.queue_name, ids)
        await _ended(rt, pack)
        return None
    await _schedule_poll(
        rt,
        pack.id,
        rt.settings.batch_tier_poll_min_s,
        state="running",
        provider_batch_id=found.id,
        handles=dict(found.handles) or {},
        fallback_due=repr(fallback_at(rt, pack, len(ids))),
    )
    log.info("pack %s: provider batch %s with %d job(s)", pack.id, found.id, len(ids))
    return None


async def _quota_refused(rt: Runtime, pack: Pack, ids: list[str], why: str) -> bool:
    """The provider refused the pack for its enqueued-token quota (at the create, or as a batch that
    failed validating: nothing ran, nothing is billed). While the deadline can wait, the pack ends, its
    tokens leave the ledger, its jobs wait in their group again and the ledger keeps a lower limit for a
    while (quota.learned_limit: the next pack is half as big, or waits for the others to end); a gather
    comes back after a pause. False when it cannot wait (no time, or a lone job with nothing else
    enqueued: the provider will never take it): the caller sends the jobs realtime."""
    now = time.time()
    wait_s = max(rt.settings.batch_tier_poll_min_s, rt.settings.batch_tier_gather_s)
    if not ids or fallback_at(rt, pack, len(ids)) <= now + wait_s:
        return False
    current = await rt.packs.get(pack.id) or pack
    others = await rt.packs.enqueued(current.ledger or "") - (current.tokens if current.held else 0)
    if len(ids) <= 1 and others <= 0:
        return False
    learned = quota.learned_limit(max(0, others), current.tokens)
    error = f"refused for the provider's enqueued-token quota; its jobs wait for a smaller pack ({why})"
    back = await rt.packs.refused(pack.id, pack.group, learned, state="failed", error=error[:500])
    await rt.packs.plan_wait(pack.group, now + wait_s)
    await _schedule_gather(rt, pack.group, now + wait_s, f"quota:{pack.id}")
    log.warning(
        "pack %s: refused for the provider's quota (%s); %d job(s) wait, packs of %s now under %d tokens",
        pack.id,
        why,
        back,
        current.ledger,
        learned,
    )
    return True


async def _wait_for_room(rt: Runtime, group: str) -> None:
    """`group`'s jobs left waiting for room under the enqueued-token limit: those whose deadline cannot
    wait any longer go realtime now; the others wait for a pack of their ledger to end (which gathers them
    at once: `_ended`) or, at the latest, for a gather planned at the next one's own moment."""
    now = time.time()
    due, next_at = await quota.due_realtime(rt, group, now)
    if due:
        moved = await rt.packs.to_realtime(rt.settings.queue_name, due, group=group)
        log.warning("group %s: %d job(s) can wait no longer for room; they go realtime", group, len(moved))
    at = min(next_at if next_at is not None else math.inf, now + rt.settings.batch_tier_poll_max_s)
    await rt.packs.plan_wait(group, at)
    await _schedule_gather(rt, group, at, f"wait:{int(at * 1000)}")


async def _schedule_gather(rt: Runtime, group: str, at: float, tag: str) -> None:
    pipe = rt.records.redis.pipeline(transaction=False)
    _schedule(pipe, rt.settings.queue_name, GATHER_FUNCTION, group, f"nbgather:{group}:{tag}", at)
    await pipe.execute()


async def _ended(rt: Runtime, pack: Pack) -> None:
    """The pack has ended (harvested, failed): it leaves the active set and gives its enqueued tokens
    back (packs.done), and the groups whose jobs wait for room in its ledger are gathered at once."""
    await rt.packs.done(pack.id)
    for group in await rt.packs.groups_of(pack.ledger) if pack.ledger else ():
        await _schedule_gather(rt, group, time.time(), f"room:{pack.id}")


async def _lines_within(
    rt: Runtime, pack: Pack, api: NativeBatchAPI, ids: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The pack's lines, as many as fit the provider's byte limit (and the operator's
    MMQ_BATCH_TIER_MAX_BYTES); the rest go back to wait for the group's next pack, which a gather makes
    at once. Base64 media make a pack's bytes, not its count, the limit that bites first."""
    cap = min(api.max_bytes, rt.settings.batch_tier_max_bytes or api.max_bytes)
    lines: list[dict[str, Any]] = []
    size = 0
    for job_id in ids:
        raw = await rt.storage.get(line_key(job_id))
        if lines and size + len(raw) + 1 > cap:
            break
        lines.append(json.loads(raw))
        size += len(raw) + 1
    if len(lines) < len(ids):
        rest = ids[len(lines) :]
        await rt.packs.give_back(pack.id, pack.group, len(lines), rest)
        pipe = rt.records.redis.pipeline(transaction=False)
        now = time.time()
        arq_id = f"nbgather:{pack.group}:split:{pack.id}"
        _schedule(pipe, rt.settings.queue_name, GATHER_FUNCTION, pack.group, arq_id, now)
        await pipe.execute()
        log.info("pack %s: %d job(s) past the byte limit wait for the next pack", pack.id, len(rest))
    return lines, ids[: len(lines)]


async def _schedule_poll(rt: Runtime, pack_id: str, after_s: float, **fields: Any) -> None:
    """Records the next poll's time (with `fields`) and queues it (an arq id of its own: a rescued pack
    may have a dead poll job still locked in arq)."""
    at = time.time() + after_s
    await rt.packs.update(pack_id, next_poll_at=repr(at), **fields)
    pipe = rt.records.redis.pipeline(transaction=False)
    _schedule(pipe, rt.settings.queue_name, POLL_FUNCTION, pack_id, f"nbpoll:{pack_id}:{int(at * 1000)}", at)
    await pipe.execute()


async def rescue(rt: Runtime) -> int:
    """Each worker, every few seconds: a pack whose step died with its worker (no lease, and `creating`
    too long or its poll overdue) gets a new poll; a group whose jobs waited too long gets a new gather.
    Returns how many it re-scheduled."""
    now = time.time()
    late_after = rt.settings.batch_tier_rescue_s
    n = 0
    for pack in await rt.packs.active():
        if pack.state not in ("creating", "running", "cancelling") or await rt.packs.locked(pack.id):
            continue
        overdue = pack.next_poll_at is not None and now > pack.next_poll_at + late_after
        stuck = pack.state == "creating" and now - pack.created_at > late_after
        if overdue or stuck:
            log.warning(
                "pack %s: its %s step was lost (a worker died?); polling it again", pack.id, pack.state
            )
            await _schedule_poll(rt, pack.id, 0)
            n += 1
    waits = await rt.packs.waits()  # groups waiting for room have a gather planned: not lost
    for group, oldest in await rt.packs.open_groups():
        if waits.get(group, 0) + late_after > now:
            continue
        if now - oldest > max(3 * rt.settings.batch_tier_gather_s, late_after):
            pipe = rt.records.redis.pipeline(transaction=False)
            _schedule(
                pipe, rt.settings.queue_name, GATHER_FUNCTION, group, f"nbgather:{group}:late:{int(now)}", now
            )
            await pipe.execute()
            n += 1
    return n


# ------------------------------------------------------------------------------------------------- poll
def fallback_at(rt: Runtime, pack: Pack, pending: int) -> float:
    """The latest moment to send `pending` jobs realtime and still finish by the deadline: at their
    target's rate limit where its routing gives one, else at MMQ_BATCH_TIER_REALTIME_RATE."""
    deadline = pack.deadline if pack.deadline is not None else pack.created_at + 24 * 3600
    rate = max(pack.rate or rt.settings.batch_tier_realtime_rate, 0.001)
    return deadline - pending / rate - rt.settings.batch_tier_margin_s


def next_poll_s(rt: Runtime, pack: Pack, fall_back: float) -> float:
    """Back off with the pack's age (a tenth of it), within the bounds, never past the fallback moment."""
    now = time.time()
    settings = rt.settings
    wait = min(
        settings.batch_tier_poll_max_s, max(settings.batch_tier_poll_min_s, (now - pack.created_at) / 10)
    )
    if pack.fell_back_at is None and fall_back > now:
        wait = min(wait, max(settings.batch_tier_poll_min_s, fall_back - now))
    return wait


async def poll_pack(ctx: dict[str, Any], pack_id: str) -> dict[str, Any]:
    rt: Runtime = ctx["mmq"]
    pack = await rt.packs.get(pack_id)
    if pack is None or pack.state in ("harvested", "failed"):
        return {"ok": True, "state": pack.state if pack else "missing"}
    if pack.state == "creating":
        await _create(rt, pack)
        return {"ok": True, "state": "creating"}
    async with rt.packs.hold(pack.id, STEP_LEASE_S) as mine:
        if not mine:
            return {"ok": True, "state": "busy"}  # another worker's step holds it
        return await _poll_locked(rt, pack)


async def _poll_locked(rt: Runtime, pack: Pack) -> dict[str, Any]:
    api = native_for(pack.provider)
    assert api is not None and pack.provider_batch_id
    target = await target_of(rt, pack)
    batch = await api.get(rt.client, target, pack.provider_batch_id)
    if batch.state == "failed":
        ids = await rt.packs.job_ids(pack.id)
        if quota.is_quota_refusal(batch.error) and await _quota_refused(rt, pack, ids, batch.error or ""):
            return {"ok": True, "state": "refused"}
        log.warning("pack %s: provider batch %s failed (%s)", pack.id, batch.id, batch.error)
        await rt.packs.update(pack.id, state="failed", error=(batch.error or batch.raw_status)[:500])
        await rt.packs.to_realtime(rt.settings.queue_name, ids)
        await _ended(rt, pack)
        return {"ok": True, "state": "failed"}
    if batch.state == "ended":
        counts = await harvest(rt, pack, api, target, batch)
        await rt.packs.update(pack.id, state="harvested", **{f"harvest_{k}": v for k, v in counts.items()})
        await _ended(rt, pack)
        await _clean_up(rt, pack)
        return {"ok": True, "state": "harvested", **counts}
    pending = pack.jobs - (batch.done or 0) - (batch.failed or 0)
    fall_back = fallback_at(rt, pack, max(pending, 0))
    if pack.fell_back_at is None and time.time() >= fall_back:
        await _fall_back(rt, pack, api, target, batch)
        pack = await rt.packs.get(pack.id) or pack
    elif batch.state != pack.state:
        await rt.packs.update(pack.id, state=batch.state)
    await _schedule_poll(rt, pack.id, next_poll_s(rt, pack, fall_back), fallback_due=repr(fall_back))
    return {"ok": True, "state": batch.state}


async def _fall_back(
    rt: Runtime, pack: Pack, api: NativeBatchAPI, target: Target, batch: ProviderBatch
) -> None:
    """The deadline cannot wait for this provider batch: cancel it and run its pending jobs realtime now."""
    try:
        await api.cancel(rt.client, target, batch.id)
    except ProviderError as e:  # already ending: the harvest takes what it has
        log.warning("pack %s: cancel of %s refused (%s)", pack.id, batch.id, e)
    ids = await rt.packs.job_ids(pack.id)
    moved = await rt.packs.to_realtime(rt.settings.queue_name, ids)
    await rt.packs.update(pack.id, state="cancelling", fell_back_at=repr(time.time()), fell_back=len(moved))
    log.warning(
        "pack %s: deadline near, provider batch %s cancelled, %d job(s) go realtime",
        pack.id,
        batch.id,
        len(moved),
    )


# ---------------------------------------------------------------------------------------------- harvest
async def harvest(
    rt: Runtime, pack: Pack, api: NativeBatchAPI, target: Target, batch: ProviderBatch
) -> dict[str, int]:
    """Every line of an ended provider batch, stored as a realtime answer is; what did not come back
    goes realtime. Re-running it after a crash changes nothing already done (finish moves only from
    `provider_batch`, or `queued` after a fallback)."""
    counts = {"answered": 0, "failed": 0, "realtime": 0, "paid_twice": 0}
    again: list[str] = []
    seen: set[str] = set()
    async for line in api.results(rt.client, target, batch):
        seen.add(line.custom_id)
        job = await rt.records.get_job(line.custom_id)
        if job is None:
            continue
        outcome = await _take_line(rt, pack, batch, job, line)
        if outcome == "again":
            again.append(job.id)
        else:
            counts[outcome] += 1
    again += [i for i in await rt.packs.job_ids(pack.id) if i not in seen]
    counts["realtime"] = len(await rt.packs.to_realtime(rt.settings.queue_name, again))
    return counts


async def _clean_up(rt: Runtime, pack: Pack) -> None:
    """The pack's batch lines leave storage once its harvest is recorded (a crash before leaves them for
    the re-harvest, which does not need them either)."""
    for job_id in await rt.packs.job_ids(pack.id):
        await rt.storage.delete(line_key(job_id))


async def _take_line(rt: Runtime, pack: Pack, batch: ProviderBatch, job: JobRecord, line: LineResult) -> str:
    takes = (JobStatus.provider_batch, JobStatus.queued)  # queued: sent realtime by a fallback, not run yet
    if job.status not in takes:
        answered_here = bool(job.attempts) and job.attempts[-1].provider_batch == batch.id  # a re-harvest
        if line.ok and pack.fell_back_at is not None and job.batch_id and not answered_here:
            # finished in the batch while its realtime call ran: paid twice; the first answer stays
            await rt.records.redis.hincrby(rt.records.batch_key(job.batch_id), "paid_twice", 1)
            return "paid_twice"
        return "answered" if job.status is JobStatus.succeeded else "failed"
    attempt = Attempt(
        target=pack.target,
        status=line.status_code,
        latency_ms=(time.time() - pack.created_at) * 1000,
        tier="batch",
        provider_batch=batch.id,
    )
    if not line.ok:
        if line.retryable:
            return "again"
        attempt.error = f"{line.error_code}: {line.error_message}"
        job.attempts.append(attempt)
        job.error = JobError(
            type="provider_error",
            message=f"provider batch {batch.id}: {line.error_message or line.error_code}",
            provider_status=line.status_code,
            code=line.error_code,
        )
        await finish(rt, job, JobStatus.failed, from_=job.status, provider_calls=1)
        return "failed"
    from worker.pipeline import load_request

    request = await load_request(job, rt.storage)
    adapter = get_adapter(pack.provider)
    status = line.status_code or 200
    try:
        resp: ProviderResponse = adapter.parse(
            job.kind, request, httpx.Response(status, json=line.body), line.body
        )
        job.result = await store_result(job, request, resp, rt.storage, rt.client)
    except ProviderError as e:
        attempt.error = str(e)
        job.attempts.append(attempt)
        job.error = JobError(type="provider_error", message=str(e), code=e.code)
        await finish(rt, job, JobStatus.failed, from_=job.status, provider_calls=1)
        return "failed"
    job.attempts.append(attempt)
    measured = (job.usage or {}).get("audio_seconds")  # the deposit's, for an answer without a duration
    job.usage = resp.usage
    job.cost = budget.job_cost(
        rt.prices, pack.provider, job.kind, request, resp.usage, audio_seconds=measured, tier="batch"
    )
    job.error = None
    job.resume = None
    await finish(rt, job, JobStatus.succeeded, from_=job.status, remember=True, provider_calls=1)
    return "answered"
