"""A terminal progress line for a batch (no dependencies; redraws in place on a TTY)."""

from __future__ import annotations

import asyncio
import sys
import time

from worker.contract import BatchRecord, BatchStatus
from worker.records import Records


def render(batch: BatchRecord, elapsed_s: float, width: int = 30) -> str:
    c = batch.counts
    total = max(c.total, 1)
    filled = int(width * c.done / total)
    rate = c.done / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {c.done}/{c.total} "
        f"ok={c.succeeded} failed={c.failed} cached={c.cached} running={c.running} "
        f"{rate:.1f}/s {batch.status.value}"
    )


async def watch(
    records: Records, batch_id: str, *, interval_s: float = 0.5, stream=sys.stderr, until_done: bool = True
) -> BatchRecord:
    started = time.monotonic()
    tty = stream.isatty()
    while True:
        batch = await records.get_batch(batch_id)
        if batch is None:
            raise KeyError(batch_id)
        line = render(batch, time.monotonic() - started)
        stream.write(("\r\x1b[2K" + line) if tty else line + "\n")
        stream.flush()
        if batch.status is not BatchStatus.in_progress or not until_done:
            if tty:
                stream.write("\n")
            return batch
        await asyncio.sleep(interval_s if tty else max(interval_s, 2.0))
