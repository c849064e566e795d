"""What the batch tier's steps share: their arq functions' names, scheduling one, a pack's target, its
end, and the moment its pending jobs must go realtime.

Why a module: deposit, gather, poll and harvest each schedule the next step and end packs the same
way; keeping those here lets each step's module import only what comes before it (no cycles).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from arq.constants import job_key_prefix
from arq.jobs import serialize_job

from mmq.packs import Pack
from mmq.queue import JOB_EXPIRES_MS, score_for, serialize
from worker.batch_tier.protocol import WINDOW_S
from worker.providers.base import Target
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")


GATHER_FUNCTION = "nb_gather"


POLL_FUNCTION = "nb_poll"


PACK_KEY = "mmq_pack"  # the provider batch's metadata naming its pack


STEP_LEASE_S = 15.0  # a worker's hold on a pack for one step (renewed while it runs; a dead one's lapses)


HOLD_WINDOWS = 10  # a group with a minimum batch waits for stragglers at most this many gather windows


def line_key(job_id: str) -> str:
    return f"batch-tier/lines/{job_id}.json"


def schedule(pipe: Any, queue_name: str, function: str, arg: str, arq_id: str, at: float) -> None:
    """`function(arg)` under the arq id `arq_id` at `at`, unless that id is already queued or running."""
    now_ms = int(time.time() * 1000)
    at_ms = max(int(at * 1000), now_ms)
    payload = serialize_job(function, (arg,), {}, None, now_ms, serializer=serialize)
    pipe.set(job_key_prefix + arq_id, payload, px=JOB_EXPIRES_MS + at_ms - now_ms, nx=True)
    pipe.zadd(queue_name, {arq_id: at_ms if at_ms > now_ms else score_for("high", now_ms)}, nx=True)


async def schedule_gather(rt: Runtime, group: str, at: float, tag: str) -> None:
    pipe = rt.records.redis.pipeline(transaction=False)
    schedule(pipe, rt.settings.queue_name, GATHER_FUNCTION, group, f"nbgather:{group}:{tag}", at)
    await pipe.execute()


async def schedule_poll(rt: Runtime, pack_id: str, after_s: float, **fields: Any) -> None:
    """Records the next poll's time (with `fields`) and queues it (an arq id of its own: a rescued pack
    may have a dead poll job still locked in arq)."""
    at = time.time() + after_s
    await rt.packs.update(pack_id, next_poll_at=repr(at), **fields)
    pipe = rt.records.redis.pipeline(transaction=False)
    schedule(pipe, rt.settings.queue_name, POLL_FUNCTION, pack_id, f"nbpoll:{pack_id}:{int(at * 1000)}", at)
    await pipe.execute()


async def pack_ended(rt: Runtime, pack: Pack) -> None:
    """The pack has ended (harvested, failed): it leaves the active set and gives its enqueued tokens
    back (packs.done), and the groups whose jobs wait for room in its ledger are gathered at once."""
    await rt.packs.done(pack.id)
    for group in await rt.packs.groups_of(pack.ledger) if pack.ledger else ():
        await schedule_gather(rt, group, time.time(), f"room:{pack.id}")


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
                rt.native_prices[pack.target] = route.prices
                return route.target
    raise RuntimeError(f"pack {pack.id}: its target {pack.target!r} is no longer in its jobs' routing")


# ------------------------------------------------------------------------------------------------- poll
def fallback_at(rt: Runtime, pack: Pack, pending: int) -> float:
    """The latest moment to send `pending` jobs realtime and still finish by the deadline: at their
    target's rate limit where its routing gives one, else at MMQ_BATCH_TIER_REALTIME_RATE."""
    deadline = pack.deadline if pack.deadline is not None else pack.created_at + WINDOW_S
    rate = max(pack.rate or rt.settings.batch_tier_realtime_rate, 0.001)
    return deadline - pending / rate - rt.settings.batch_tier_margin_s
