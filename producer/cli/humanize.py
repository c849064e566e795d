"""Times and states as a person reads them: local clock times, short durations, and what a batch is
doing now ("waiting until 01:00", "running", "completed").

Records keep epoch seconds (UTC); the terminal shows the machine's local time, with the date only when
it is not today.
"""

from __future__ import annotations

import datetime as dt
import time

from mmq.contract import BatchRecord, BatchStatus

RUNNING = frozenset({BatchStatus.in_progress, BatchStatus.cancelling})

__all__ = ["RUNNING", "ago", "clock", "format_duration", "moment", "state", "waiting_until"]


def format_duration(seconds: float) -> str:
    """`4.2s`, `35s`, `3m05s`, `2h10m` (producer.progress's, imported when used: it loads redis)."""
    from producer.progress import format_duration as duration

    return duration(seconds)


def _local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts).astimezone()


def clock(ts: float, now: float | None = None) -> str:
    """`01:00` today, `Tue 01:00` within the coming or past six days, else `2026-11-22 01:00`."""
    when, today = _local(ts), _local(time.time() if now is None else now)
    if when.date() == today.date():
        return when.strftime("%H:%M")
    if abs((when.date() - today.date()).days) < 7:
        return when.strftime("%a %H:%M")
    return when.strftime("%Y-%m-%d %H:%M")


def moment(ts: float) -> str:
    """A full local date and time with its zone: `2026-11-22 01:00:00 CET`."""
    return _local(ts).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def ago(ts: float, now: float | None = None) -> str:
    delta = (time.time() if now is None else now) - ts
    return f"in {format_duration(-delta)}" if delta < 0 else f"{format_duration(delta)} ago"


def waiting_until(batch: BatchRecord, now: float | None = None) -> float | None:
    """The window's opening when the batch is still waiting for it, else None."""
    now = time.time() if now is None else now
    if batch.status is BatchStatus.in_progress and batch.not_before and batch.not_before > now:
        return batch.not_before
    return None


def state(batch: BatchRecord, now: float | None = None) -> str:
    """`waiting until 01:00 (in 3h12m)` while the window is closed, else the status in words."""
    opens = waiting_until(batch, now)
    if opens is not None:
        return f"waiting until {clock(opens, now)} ({ago(opens, now)})"
    if batch.status is BatchStatus.in_progress and not batch.sealed:
        return "submitting"
    return batch.status.value.replace("_", " ")
