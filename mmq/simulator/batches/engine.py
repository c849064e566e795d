"""The one engine behind every simulated batch API: creates batches, runs their due lines, ends them.

Why one engine: OpenAI, Azure, Groq, Anthropic and Gemini batches differ only on the wire, so the
lifecycle (timeline.py), the knobs (SimulatorConfig.batch_*), billing and cancellation live here once.
Lines run lazily: whoever reads a batch (a poll, a results download, GET /sim/stats) first brings it up
to date, and a driver task does the same in the background, so lines are billed when they are due even
if nobody polls. A line runs at most once (a lock per batch), through the provider's own realtime
handler (calls.py), so its usage is what the realtime endpoint reports for the same body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import string
import time

from mmq.simulator.batches.shelf import Shelf, StoredFile
from mmq.simulator.batches.timeline import Batch, Line, Outcome, Plan, Runner
from mmq.simulator.knobs import SimulatorConfig
from mmq.simulator.stats import SimStats

log = logging.getLogger(__name__)
_ALNUM = string.ascii_letters + string.digits
_MAX_SLEEP_S = 1.0  # the driver re-checks at least this often (a cancel moves the end)


def new_id(prefix: str, length: int = 24, alphabet: str = _ALNUM) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


class BatchEngine:
    def __init__(self, config: SimulatorConfig, stats: SimStats) -> None:
        self.config = config
        self.stats = stats
        self.batches: dict[str, Batch] = {}  # in creation order
        self.files = Shelf()
        self.uploads: dict[str, StoredFile] = {}  # Gemini resumable uploads in progress, by session
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------- create
    def create(
        self,
        batch_id: str,
        provider: str,
        lines: list[Line],
        run: Runner,
        *,
        window_s: float | None,
        expires: bool = True,
        invalid: list[dict[str, object]] | None = None,
        info: dict[str, object] | None = None,
    ) -> Batch:
        """A new batch under the current knobs; `window_s` is the provider's completion window (the
        expiry unless batch_expire_s says otherwise), `expires=False` for a provider that never expires."""
        cfg, now = self.config, time.time()
        expire_s = cfg.batch_expire_s if cfg.batch_expire_s is not None else window_s
        plan = Plan(
            validate_s=cfg.batch_validate_s,
            complete_s=cfg.batch_complete_s,
            finalize_s=cfg.batch_finalize_s,
            cancel_s=cfg.batch_cancel_s,
            expire_at=now + expire_s if expires and expire_s is not None else None,
            stall=cfg.batch_stall,
        )
        # seeded by the content, not the shared RNG: the same input fails and finishes the same way
        rng = random.Random(f"{cfg.seed}:{provider}:" + "\n".join(line.id for line in lines))
        order = list(range(len(lines)))
        rng.shuffle(order)
        for i in rng.sample(range(len(lines)), math.floor(cfg.batch_fail_rate * len(lines) + 0.5)):
            lines[i].fail = True
        batch = Batch(batch_id, provider, now, lines, order, plan, run, invalid, info or {})
        self.batches[batch_id] = batch
        self.stats.batch_created(provider)
        self._kick()
        return batch

    def get(self, provider: str, batch_id: str) -> Batch | None:
        batch = self.batches.get(batch_id)
        return batch if batch is not None and batch.provider == provider else None

    def newest_first(self, provider: str) -> list[Batch]:
        return [b for b in reversed(self.batches.values()) if b.provider == provider]

    def delete(self, batch: Batch) -> None:
        self.batches.pop(batch.id, None)

    # ------------------------------------------------------------------------------------ advance
    async def advance(self, batch: Batch, now: float | None = None) -> Batch:
        """Run the lines due by now (or by the batch's end), and end it if its end has come."""
        now = time.time() if now is None else now
        if batch.terminal is not None:
            return batch
        async with batch.lock:
            if batch.terminal is not None:
                return batch
            end = batch.end_event()
            cutoff = min(now, end[1]) if end else now
            while batch.finished < len(batch.lines) and batch.due(batch.finished) <= cutoff:
                line = batch.lines[batch.order[batch.finished]]
                line.outcome = await self._run(batch, line, batch.due(batch.finished))
                batch.finished += 1
            if end is not None and now >= end[1]:
                left = "expired" if end[0] == "expired" else "cancelled"
                for line in batch.lines:
                    if line.outcome is None:
                        line.outcome = Outcome(left, at=end[1])
                batch.terminal, batch.ended_at = end
        return batch

    async def _run(self, batch: Batch, line: Line, at: float) -> Outcome:
        try:
            status, body = await batch.run(line, line.fail)
        except Exception:  # a runner bug must not wedge the batch: the line errors instead
            log.exception("simulator batch %s line %s failed", batch.id, line.id)
            status, body = 500, None
        if status == 200:
            self.stats.bill(batch.provider, line.id)
            return Outcome("succeeded", status, body, at)
        return Outcome("errored", status, body, at)

    async def settle(self) -> None:
        """Bring every batch up to date (GET /sim/stats does, so its billing counts are current)."""
        for batch in list(self.batches.values()):
            await self.advance(batch)

    def cancel(self, batch: Batch) -> None:
        batch.cancel_at = time.time()
        self.stats.batch_cancelled(batch.provider)
        self._kick()

    # ------------------------------------------------------------------------------------- driver
    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drive(), name="mmq-sim-batches")

    async def _drive(self) -> None:
        while True:
            active = [b for b in self.batches.values() if b.terminal is None]
            if not active:
                return
            for batch in active:
                try:
                    await self.advance(batch)
                except Exception:
                    log.exception("simulator batch %s could not advance", batch.id)
            wake = min((b.next_event() for b in active), default=math.inf)
            await asyncio.sleep(min(max(wake - time.time(), 0.01), _MAX_SLEEP_S))

    def clear(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.batches.clear()
        self.files.clear()
        self.uploads.clear()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
