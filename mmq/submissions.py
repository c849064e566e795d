"""A batch's submission while it runs: its progress mark, and the seal of one that stopped (issue 13
item 4: no orphan batches).

A batch cannot end before it is sealed (every line submitted). A producer that died mid-file (`mmq submit`
killed, an API process killed during POST /api/batches or while /v1 read an input file) never sealed its
batch, which then stayed `in_progress` (/v1: `validating`) forever, and a later cancel `cancelling`.

So a batch is listed in `{p}:submitting` (mmq/keys.py) from its creation to its seal, scored by the last
time its submission showed progress. The producer marks progress as lines go (`Progress`: at most one
small round trip per `beat_every` seconds, only while lines arrive). A worker sweeps the list now and then
(worker/reaper.py): a batch whose mark is older than MMQ_SUBMIT_STALL_S is sealed with the lines it has
and marked `interrupted = submission_interrupted` (`interrupt`, mmq/lua/reap.lua), so it completes with
what was submitted and says why. A /v1 batch (made with `on_interrupt = fail`) ends as OpenAI's would, in
`failed`: what was queued is cancelled. A submission that stops cleanly (its input failed, its client went
away, Ctrl-C) is sealed the same way at once, by its producer.

A submission that was only slow (its process suspended past the stall) finds its batch gone from the list
at its next mark and stops (SubmissionInterrupted): the sweep and the producer never both feed a batch,
save a chunk whose write was already under way when the sweep ran.
"""

from __future__ import annotations

import time
from typing import Any

from mmq import queue, scripts
from mmq.contract import BatchRecord, BatchStatus
from mmq.keys import Keys
from mmq.records import Records

INTERRUPTED = "submission_interrupted"
_ENDED = (BatchStatus.completed, BatchStatus.cancelled, BatchStatus.expired)


class SubmissionInterrupted(Exception):
    """The batch was sealed while its lines were still being submitted (its submission had stalled)."""


def beat_every(stall_s: float) -> float:
    """How often a live submission marks its progress: well inside the stall a sweep waits for."""
    return max(0.05, min(30.0, stall_s / 4))


class Progress:
    """A submission's progress mark. `due()` is a clock read, cheap enough for every line; `mark()` one
    round trip, which raises SubmissionInterrupted once a sweep has sealed the batch."""

    def __init__(self, redis: Any, keys: Keys, batch_id: str, stall_s: float) -> None:
        self.redis = redis
        self.key = keys.submitting()
        self.batch_id = batch_id
        self.every = beat_every(stall_s)
        self._next = time.monotonic() + self.every

    def due(self) -> bool:
        return time.monotonic() >= self._next

    async def mark(self) -> None:
        self._next = time.monotonic() + self.every
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.key, {self.batch_id: int(time.time() * 1000)}, xx=True)
        pipe.zscore(self.key, self.batch_id)
        _, score = await pipe.execute()
        if score is None:
            raise SubmissionInterrupted(
                f"batch {self.batch_id} was sealed with the lines it had: its submission showed no progress "
                "for longer than MMQ_SUBMIT_STALL_S"
            )


async def after_seal(redis: Any, queue_name: str, batch: BatchRecord, ended: bool) -> None:
    """What follows a batch's seal: the webhook of a batch that ended there; else the release of a
    scheduled window and the expiry at its deadline (batch tasks, worker/batch_tasks.py)."""
    if ended:
        if batch.webhook_url:
            await queue.schedule(redis, queue_name, queue.NOTIFY_FUNCTION, batch.id)
        return
    if batch.not_before is not None and batch.not_before > time.time():
        await queue.schedule(redis, queue_name, queue.RELEASE_FUNCTION, batch.id, batch.not_before)
    if batch.deadline is not None:
        await queue.schedule(redis, queue_name, queue.EXPIRE_FUNCTION, batch.id, batch.deadline)


async def interrupt(
    records: Records, queue_name: str, batch_id: str, *, stalled_before_ms: int | None = None
) -> str | None:
    """Seals `batch_id` with the lines it has, marked submission_interrupted, unless it was sealed or (with
    `stalled_before_ms`) showed progress since then. A /v1 batch fails instead: its queued jobs are
    cancelled, as are any queued after a cancel's sweep. Returns how (see mmq/lua/reap.lua), or None
    when it left the batch alone."""
    reap = scripts.register(records.redis, "reap")
    cutoff = "inf" if stalled_before_ms is None else str(stalled_before_ms)
    keys = [records.keys.submitting(), records.batch_key(batch_id)]
    out = await reap(keys, [batch_id, repr(time.time()), cutoff])
    if not out:
        return None
    how, ended, status = (x.decode() if isinstance(x, bytes) else x for x in out)
    if how == "was_sealed":
        return how
    if status == BatchStatus.cancelling.value:
        await records.cancel_queued(batch_id)  # may end the batch
    batch = await records.get_batch(batch_id)
    if batch is not None:
        await after_seal(records.redis, queue_name, batch, bool(ended) or batch.status in _ENDED)
    return how
