"""The batch tier's first step: which jobs may wait for a provider batch, and a job joining its group.

A job of a `batch`/`auto` batch whose first target has a native batch API (worker/batch_tier/apis) is
planned and made ready as for a realtime call; instead of the call, the realtime adapter's own
translation becomes its batch line (kept in storage: it may hold base64 media) and the job waits,
`provider_batch`, in its group (target, model, kind). A gather is scheduled once per `gather_s` window.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from mmq import scripts
from mmq.contract import JobRecord, Tier
from mmq.packs import REALTIME_RESUME, group_of
from mmq.pricing.audio import measure_audio
from mmq.record_layout import state_fields
from worker.batch_tier import quota
from worker.batch_tier.apis import native_for
from worker.batch_tier.protocol import NativeBatchAPI
from worker.batch_tier.steps import GATHER_FUNCTION, line_key, schedule
from worker.finish import Writes
from worker.prepare import ImageFacts
from worker.providers import get_adapter
from worker.providers.base import AudioInput
from worker.routes import Route
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")


# --------------------------------------------------------------------------------------------- deposit
@dataclass
class Deposit(Exception):
    """Raised by the pipeline's planning: this job goes to `route`'s provider batch, through `api`
    (`images`: what prepare measured of its images, by data: URL, for its enqueued tokens)."""

    route: Route
    api: NativeBatchAPI
    images: dict[str, ImageFacts] = field(default_factory=dict)
    audio: AudioInput | None = None  # a transcription's audio, for a batch line that carries it inline
    hold: str = ""  # its budget hold at the batch price ('' none): kept as `nb_hold` until its answer


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


def realtime_rate(route: Route) -> float | None:
    """Jobs/s the route's target takes realtime, from its rate limit (the tighter of rps and rpm)."""
    limit = route.rate_limit
    if limit is None:
        return None
    rates = [r for r in (limit.rps, (limit.rpm or 0) / 60) if r]
    return min(rates) if rates else None


def _model(route: Route) -> str:
    model = route.request.get("model")
    return model if isinstance(model, str) else ""


async def deposit(rt: Runtime, job: JobRecord, d: Deposit, writes: Writes) -> None:
    """The job joins its group's waiting jobs, its batch line in storage, and a gather is scheduled for
    the current window; arq's entry is cleared in the same round trip (`writes.after`)."""
    try:
        await _deposit(rt, job, d, writes)
    except BaseException:
        if d.hold:  # the job never joined its group: nothing else would give its hold back
            await asyncio.shield(rt.gate.release_hold(d.hold))
        raise


async def _deposit(rt: Runtime, job: JobRecord, d: Deposit, writes: Writes) -> None:
    adapter = get_adapter(d.route.target.provider)
    wires = adapter.translate(d.route.target, job.kind, d.route.request, d.audio)
    wire = wires if not isinstance(wires, list | tuple) else wires[0]
    line = d.api.line(job.id, job.kind, wire)
    await rt.storage.put(line_key(job.id), json.dumps(line, separators=(",", ":")).encode())
    group = group_of(d.route.target.provider, d.route.target.name, _model(d.route), job.kind.value)
    rt.native_targets[d.route.target.name] = d.route.target
    rt.native_prices[d.route.target.name] = d.route.prices
    gather_s = rt.settings.batch_tier_gather_s
    window = int(time.time() // gather_s) if gather_s > 0 else 0
    if d.audio is not None and (seconds := measure_audio(d.audio.data)) is not None:
        job.usage = {"audio_seconds": seconds}  # prices a transcript whose answer says no duration (text)
    state = {k: v for k, v in state_fields(job).items() if k in ("attempts", "resume", "started_at", "usage")}
    state["nb_tokens"] = str(quota.input_tokens(rt, d.route, job.kind, d.images))  # what its pack enqueues
    if d.hold:
        state["nb_hold"] = d.hold  # given back by its finish (finish.lua) or its return to realtime
    pipe = rt.records.redis.pipeline(transaction=False)
    rt.packs.queue_deposit(pipe, job.id, job.batch_id, group, state)
    rt.packs.queue_rate(pipe, group, realtime_rate(d.route))
    rt.packs.queue_quota(pipe, group, quota.ledger_of(d.route), d.route.batch_queue_tokens)
    for queue_write in writes.after:
        queue_write(pipe)
    schedule(
        pipe,
        rt.settings.queue_name,
        GATHER_FUNCTION,
        group,
        f"nbgather:{group}:{window}",
        (window + 1) * gather_s if gather_s > 0 else time.time(),
    )
    await scripts.execute(pipe)  # EVALSHA, with the scripts re-sent after a Redis restart
    log.info("job %s waits for a provider batch (%s)", job.id, group, extra={"job_id": job.id})
