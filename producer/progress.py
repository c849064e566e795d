"""A terminal progress line for a batch (no dependencies; redraws in place on a TTY)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import deque

from mmq.contract import BatchRecord, BatchStatus
from mmq.records import Records

_RATE_WINDOW_S = 15.0  # the rate is measured over the last seconds, so the ETA follows speed changes
_LOG_EVERY_S = 2.0  # without a TTY (logs, CI), at most one line per this many seconds

# a cancelling batch still has running jobs: keep watching until it ends
RUNNING = frozenset({BatchStatus.in_progress, BatchStatus.cancelling})


class RateMeter:
    """Jobs finished per second over a sliding window of (time, done) samples."""

    def __init__(self, window_s: float = _RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> float | None:
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        return (done - d0) / (now - t0) if now - t0 >= 1.0 else None


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _tail(batch: BatchRecord, rate: float) -> str:
    """ETA while running; the batch's own duration once it has ended."""
    if batch.status not in RUNNING:
        if batch.finished_at:
            return f"took {format_duration(batch.finished_at - batch.created_at)}"
        return ""
    remaining = batch.counts.total - batch.counts.done
    if remaining <= 0:
        return "ETA -" if not batch.sealed else "ETA 0s"
    return f"ETA {format_duration(remaining / rate)}" if rate > 0 else "ETA ?"


def render(batch: BatchRecord, elapsed_s: float, width: int = 30, *, rate: float | None = None) -> str:
    """`rate` (jobs/s) defaults to everything done so far over `elapsed_s`."""
    c = batch.counts
    total = max(c.total, 1)
    filled = int(width * c.done / total)
    if rate is None:
        rate = c.done / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {c.done}/{c.total} {100 * c.done // total}% "
        f"ok={c.succeeded} failed={c.failed} cached={c.cached} running={c.running} "
        f"{rate:.1f}/s {_tail(batch, rate)} {batch.status.value}"
    )


def _average_rate(batch: BatchRecord) -> float:
    """Jobs/s over the batch's life: the final figure, and the first guess of a re-attached watcher."""
    age = (batch.finished_at or time.time()) - batch.created_at
    return batch.counts.done / age if age > 0 else 0.0


async def _pause(interval_s: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(interval_s)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), interval_s)


async def watch(
    records: Records,
    batch_id: str,
    *,
    interval_s: float = 0.5,
    stream=sys.stderr,
    until_done: bool = True,
    stop: asyncio.Event | None = None,
) -> BatchRecord:
    """Shows the progress line until the batch ends (or once, with until_done=False, or until `stop`
    is set: then the batch is returned as last seen, still in progress)."""
    meter = RateMeter()
    tty = stream.isatty()
    last_logged: tuple[float, tuple[int, ...]] | None = None
    while True:
        batch = await records.get_batch(batch_id)
        if batch is None:
            raise KeyError(batch_id)
        now = time.monotonic()
        rate = meter.add(now, batch.counts.done)
        ended = batch.status not in RUNNING or not until_done or bool(stop and stop.is_set())
        if rate is None or batch.finished_at:
            rate = _average_rate(batch)
        line = render(batch, 0.0, rate=rate)
        counts = tuple(batch.counts.model_dump().values())
        if tty:
            stream.write("\r\x1b[2K" + line)
        elif (
            ended
            or last_logged is None
            or (counts != last_logged[1] and now - last_logged[0] >= _LOG_EVERY_S)
        ):
            # polls stay quick (the end is noticed at once) while a log file gets a line every few seconds
            stream.write(line + "\n")
            last_logged = (now, counts)
        stream.flush()
        if ended:
            if tty:
                stream.write("\n")
            return batch
        await _pause(interval_s, stop)
