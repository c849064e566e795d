"""The batch tier's third step: poll a provider batch with a backoff, and fall back in time.

While the batch runs, the latest moment to fall back is recomputed (steps.fallback_at: the deadline, less
the time its pending jobs need realtime at their target's rate, less a margin). At that moment the
provider batch is cancelled and its pending jobs go realtime at once, so the deadline holds whatever the
cancellation takes. An ended batch is harvested (worker/batch_tier/harvest.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mmq.errors import ProviderError
from mmq.packs import Pack
from worker.batch_tier import quota
from worker.batch_tier.apis import native_for
from worker.batch_tier.gather import create_pack, quota_refused
from worker.batch_tier.harvest import clean_up, harvest
from worker.batch_tier.protocol import NativeBatchAPI, ProviderBatch
from worker.batch_tier.steps import STEP_LEASE_S, fallback_at, pack_ended, schedule_poll, target_of
from worker.providers.base import Target
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")


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
        await create_pack(rt, pack)
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
        if quota.is_quota_refusal(batch.error) and await quota_refused(rt, pack, ids, batch.error or ""):
            return {"ok": True, "state": "refused"}
        log.warning("pack %s: provider batch %s failed (%s)", pack.id, batch.id, batch.error)
        await rt.packs.update(pack.id, state="failed", error=(batch.error or batch.raw_status)[:500])
        await rt.packs.to_realtime(rt.settings.queue_name, ids)
        await pack_ended(rt, pack)
        return {"ok": True, "state": "failed"}
    if batch.state == "ended":
        counts = await harvest(rt, pack, api, target, batch)
        await rt.packs.update(pack.id, state="harvested", **{f"harvest_{k}": v for k, v in counts.items()})
        await pack_ended(rt, pack)
        await clean_up(rt, pack)
        return {"ok": True, "state": "harvested", **counts}
    pending = pack.jobs - (batch.done or 0) - (batch.failed or 0)
    fall_back = fallback_at(rt, pack, max(pending, 0))
    if pack.fell_back_at is None and time.time() >= fall_back:
        await _fall_back(rt, pack, api, target, batch)
        pack = await rt.packs.get(pack.id) or pack
    elif batch.state != pack.state:
        await rt.packs.update(pack.id, state=batch.state)
    await schedule_poll(rt, pack.id, next_poll_s(rt, pack, fall_back), fallback_due=repr(fall_back))
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
