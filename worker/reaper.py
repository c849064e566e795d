"""The sweep that seals batches whose submission stopped (issue 13 item 4: no orphan batches).

A producer killed mid-file (`mmq submit`, an API process during POST /api/batches or while /v1 reads an
input file) leaves its batch unsealed, and an unsealed batch never ends. Every worker runs this sweep
from its poll loop, rarely (every min(30 s, MMQ_SUBMIT_STALL_S / 2)) and cheaply (one ZRANGEBYSCORE when
nothing is stalled): a batch whose submission showed no progress for MMQ_SUBMIT_STALL_S is sealed with
what it has and marked submission_interrupted, so it completes with the lines that were submitted (a /v1
batch fails, as OpenAI's would). The mark, the seal and the rules are mmq/submissions.py's; several
workers sweeping at once seal a batch once (the seal is one script that takes it off the list).
"""

from __future__ import annotations

import logging
import time

from mmq.submissions import interrupt
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")

MAX_PER_SWEEP = 100  # more wait for the next sweep


def sweep_every(stall_s: float) -> float:
    return max(0.5, min(30.0, stall_s / 2))


class Reaper:
    def __init__(self) -> None:
        self._next = 0.0

    async def maybe_sweep(self, rt: Runtime) -> int:
        """Sweeps when one is due (a clock read otherwise); returns how many batches it sealed."""
        now = time.monotonic()
        if now < self._next:
            return 0
        self._next = now + sweep_every(rt.settings.submit_stall_s)
        return await sweep(rt)


async def sweep(rt: Runtime) -> int:
    """Seals every batch whose submission stalled past MMQ_SUBMIT_STALL_S (up to MAX_PER_SWEEP)."""
    records = rt.records
    cutoff_ms = int((time.time() - rt.settings.submit_stall_s) * 1000)
    stalled = await records.redis.zrangebyscore(
        records.keys.submitting(), "-inf", f"({cutoff_ms}", start=0, num=MAX_PER_SWEEP
    )
    sealed = 0
    for raw in stalled:
        batch_id = raw.decode() if isinstance(raw, bytes) else raw
        how = await interrupt(records, rt.settings.queue_name, batch_id, stalled_before_ms=cutoff_ms)
        if how in ("sealed", "failing"):
            sealed += 1
            log.warning(
                "batch %s: its submission showed no progress for %.0f s: %s with the lines it has "
                "(submission_interrupted)",
                batch_id,
                rt.settings.submit_stall_s,
                "sealed" if how == "sealed" else "failed",
            )
    return sealed
