"""The batch tier's second step: a group's waiting jobs become packs, and each pack one provider batch.

The pack (the intent) is recorded before the create, and the provider batch is tagged with its id, so a
pack found `creating` (its gather died) is adopted by that tag or created, never twice. Packs stop at
the provider's request and byte limits and at the key's enqueued-token quota (worker/batch_tier/quota.py);
a group under a provider's minimum waits a few windows for stragglers, then goes realtime. A refused
create sends its jobs realtime, or (a quota refusal, with time left) back to wait. `rescue` re-schedules
the steps of packs and groups whose worker died.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from mmq.errors import ProviderError
from mmq.packs import Pack, group_parts
from mmq.request_models import Kind
from worker.batch_tier import quota
from worker.batch_tier.apis import native_for
from worker.batch_tier.protocol import NativeBatchAPI
from worker.batch_tier.steps import (
    GATHER_FUNCTION,
    HOLD_WINDOWS,
    PACK_KEY,
    STEP_LEASE_S,
    fallback_at,
    line_key,
    pack_ended,
    schedule,
    schedule_gather,
    schedule_poll,
    target_of,
)
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")


# ----------------------------------------------------------------------------------------------- gather
async def gather_pack(ctx: dict[str, Any], group: str) -> dict[str, Any]:
    """Packs `group`'s waiting jobs and creates a provider batch per pack (adopting a dead gather's)."""
    rt: Runtime = ctx["mmq"]
    provider, target_name, model, kind = group_parts(group)
    api = native_for(provider)
    assert api is not None, provider
    made = 0
    for pack in await rt.packs.packs_of_group(group, "creating"):
        await create_pack(rt, pack)  # a gather that died between intent and record
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
        outcome = await create_pack(rt, pack)
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
    await schedule_gather(rt, group, last + gather_s, f"quiet:{last + gather_s:.3f}")
    return True


async def _below_minimum(rt: Runtime, pack: Pack, api: NativeBatchAPI, ids: list[str]) -> bool:
    """A pack smaller than the provider's minimum batch is never padded: its jobs run realtime now."""
    if len(ids) >= api.min_requests:
        return False
    error = f"{len(ids)} job(s), below the provider's minimum batch of {api.min_requests}: realtime"
    log.info("pack %s: %s", pack.id, error)
    await rt.packs.update(pack.id, state="failed", error=error)
    await rt.packs.to_realtime(rt.settings.queue_name, ids)
    await pack_ended(rt, pack)
    return True


async def create_pack(rt: Runtime, pack: Pack) -> str | None:
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
        await pack_ended(rt, pack)
        return None
    if pack.provider_batch_id is None and await _below_minimum(rt, pack, api, ids):
        return None  # (a pack's jobs are final before its create: it was never created)
    creating = False
    try:
        found = await api.find(rt.client, target, PACK_KEY, pack.id)
        if found is None and not api.tagged and current.create_sent_at is not None:
            # a create may have gone out before a crash, and the batch carries no tag: look by shape
            others = [p for p in await rt.packs.active() if p.id != pack.id]
            taken = frozenset(p.provider_batch_id for p in others if p.provider_batch_id)
            found = await api.find_by_shape(rt.client, target, len(ids), current.create_sent_at, taken)
            if found is not None:
                log.info("pack %s: adopting provider batch %s (created before a crash)", pack.id, found.id)
        if found is None:
            lines, ids = await _lines_within(rt, pack, api, ids)
            if await _below_minimum(rt, pack, api, ids):
                return None
            kind = Kind(pack.kind)
            if not api.tagged:
                await rt.packs.update(pack.id, create_sent_at=repr(time.time()))
            creating = True  # (a refusal of the find, a 429 of the list, says nothing of the quota)
            found = await api.create(rt.client, target, kind, pack.model, lines, {PACK_KEY: pack.id})
    except ProviderError as e:
        refused = creating and quota.is_quota_refusal(e, pack.provider)
        if refused and await quota_refused(rt, pack, ids, str(e)):
            return "quota"  # its jobs wait for a smaller pack, or for the ledger's other packs to end
        if e.retryable and (pack.deadline is None or fallback_at(rt, pack, len(ids)) > time.time() + 60):
            raise  # a 429/5xx: the rescue sweep tries again later
        # refused (a model with no batch, a quota) or no time left: these jobs are called realtime now
        log.warning("pack %s: provider batch refused (%s); %d job(s) go realtime", pack.id, e, len(ids))
        await rt.packs.update(pack.id, state="failed", error=str(e)[:500])
        await rt.packs.to_realtime(rt.settings.queue_name, ids)
        await pack_ended(rt, pack)
        return None
    await schedule_poll(
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


async def quota_refused(rt: Runtime, pack: Pack, ids: list[str], why: str) -> bool:
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
    await schedule_gather(rt, pack.group, now + wait_s, f"quota:{pack.id}")
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
    at once: `pack_ended`) or, at the latest, for a gather planned at the next one's own moment."""
    now = time.time()
    due, next_at = await quota.due_realtime(rt, group, now)
    if due:
        moved = await rt.packs.to_realtime(rt.settings.queue_name, due, group=group)
        log.warning("group %s: %d job(s) can wait no longer for room; they go realtime", group, len(moved))
    at = min(next_at if next_at is not None else math.inf, now + rt.settings.batch_tier_poll_max_s)
    await rt.packs.plan_wait(group, at)
    await schedule_gather(rt, group, at, f"wait:{int(at * 1000)}")


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
        schedule(pipe, rt.settings.queue_name, GATHER_FUNCTION, pack.group, arq_id, now)
        await pipe.execute()
        log.info("pack %s: %d job(s) past the byte limit wait for the next pack", pack.id, len(rest))
    return lines, ids[: len(lines)]


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
            await schedule_poll(rt, pack.id, 0)
            n += 1
    waits = await rt.packs.waits()  # groups waiting for room have a gather planned: not lost
    for group, oldest in await rt.packs.open_groups():
        if waits.get(group, 0) + late_after > now:
            continue
        if now - oldest > max(3 * rt.settings.batch_tier_gather_s, late_after):
            pipe = rt.records.redis.pipeline(transaction=False)
            schedule(
                pipe, rt.settings.queue_name, GATHER_FUNCTION, group, f"nbgather:{group}:late:{int(now)}", now
            )
            await pipe.execute()
            n += 1
    return n
