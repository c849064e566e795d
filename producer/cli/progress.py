"""A batch's progress on the terminal, with rich: one line that fits the terminal's width, redrawn in
place; plain log lines when stderr is not a terminal (a file, a pipe, CI).

The old hand-drawn line was wider than a 70-column terminal, wrapped, and `\\r` then stacked copies of
it. Here the line is built for the width it is given: the least useful fields go first (running, cached,
rate, ok), then the bar, then failures and ETA; whatever still does not fit is cut with an ellipsis,
never wrapped. A batch whose window has not opened says "waiting until 01:00" instead of `0% ETA ?`.

Progress goes to stderr, so `mmq submit … > ids.txt` still shows it live while stdout stays clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mmq.contract import BatchRecord
from producer.cli.errors import UserError
from producer.cli.humanize import RUNNING, format_duration, state, waiting_until
from producer.progress import RateMeter

if TYPE_CHECKING:
    from mmq.records import Records

LOG_EVERY_S = 2.0  # without a terminal, at most one line per this many seconds (and the last one)
BAR_MIN, BAR_MAX = 10, 40
KEEP_OVER_BAR = 4  # fields worth this much (failed, ETA) stay when the bar no longer fits beside them


def _tail(batch: BatchRecord, rate: float, now: float) -> str:
    """ETA while running, the batch's duration once ended, nothing while waiting for its window."""
    if batch.status not in RUNNING:
        return f"took {format_duration(batch.finished_at - batch.created_at)}" if batch.finished_at else ""
    if waiting_until(batch, now) is not None:
        return ""
    remaining = batch.counts.total - batch.counts.done
    if remaining <= 0:
        return "" if not batch.sealed else "ETA 0s"
    return f"ETA {format_duration(remaining / rate)}" if rate > 0 else "ETA ?"


class ProgressLine:
    """One batch's progress as one line, fitted to the width rich gives it (a rich renderable)."""

    def __init__(self, batch: BatchRecord, rate: float, now: float | None = None) -> None:
        self.batch, self.rate = batch, rate
        self.now = time.time() if now is None else now

    def _fields(self) -> tuple[str, list[tuple[int, str]]]:
        """The head (always shown) and the other fields with how much each is worth keeping."""
        c = self.batch.counts
        pct = 100 * c.done // max(c.total, 1)
        head = f"{state(self.batch, self.now)} {c.done}/{c.total} {pct}%"
        fields = [
            (3, f"ok {c.succeeded}"),
            (5, f"failed {c.failed}") if c.failed else (0, ""),
            (1, f"cached {c.cached}") if c.cached else (0, ""),
            (0, f"running {c.running}") if c.running else (0, ""),
            (2, f"{self.rate:.1f}/s") if self.batch.status in RUNNING and self.rate > 0 else (0, ""),
            (4, _tail(self.batch, self.rate, self.now)),
        ]
        return head, [(p, f) for p, f in fields if f]

    def text(self, width: int | None = None) -> tuple[str, int]:
        """The line's text for `width` columns (None: everything) and the bar's width (0: no bar)."""
        head, fields = self._fields()
        while True:
            line = "  ".join([head, *(f for _, f in fields)])
            if width is None:
                return line, 0
            room = width - len(line) - 1
            if room >= BAR_MIN:
                return line, min(room, BAR_MAX)
            least = min(fields, key=lambda pf: pf[0], default=(KEEP_OVER_BAR, ""))
            if least[0] >= KEEP_OVER_BAR and len(line) <= width:
                return line, 0  # failures and ETA matter more than the bar
            if not fields:
                return line, 0  # cut by the caller
            fields.remove(least)

    def plain(self) -> str:
        """The line for a log: every field, prefixed by the batch id."""
        return f"{self.batch.id} {self.text()[0]}"

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        line, bar = self.text(options.max_width)
        text = Text(line, no_wrap=True, overflow="ellipsis")
        if not bar:
            text.truncate(options.max_width, overflow="ellipsis")
            yield text
            return
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=bar, no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_row(
            ProgressBar(total=max(self.batch.counts.total, 1), completed=self.batch.counts.done), text
        )
        yield grid


def _average_rate(batch: BatchRecord, now: float) -> float:
    age = (batch.finished_at or now) - batch.created_at
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
    stop: asyncio.Event | None = None,
    interval_s: float = 0.5,
    console: Console | None = None,
) -> BatchRecord:
    """Shows the batch's progress until it ends, or until `stop` is set (then the batch is returned as
    last seen, still running). Live on a terminal, plain lines otherwise."""
    console = console or Console(stderr=True)
    live = Live(console=console, auto_refresh=False, transient=False) if console.is_terminal else None
    meter = RateMeter()
    last_logged: tuple[float, tuple[int, ...]] | None = None
    with live or contextlib.nullcontext():
        while True:
            batch = await records.get_batch(batch_id)
            if batch is None:  # gone while watched: deleted, or Redis flushed or restarted without its data
                raise UserError(
                    f"batch {batch_id} is no longer in Redis (MMQ_REDIS_URL): it was deleted, or Redis lost "
                    "its data (flushed, or restarted without persistence)."
                )
            now = time.time()
            rate = meter.add(time.monotonic(), batch.counts.done)
            if rate is None or batch.finished_at:
                rate = _average_rate(batch, now)
            ended = batch.status not in RUNNING or bool(stop and stop.is_set())
            line = ProgressLine(batch, rate, now)
            counts = tuple(batch.counts.model_dump().values())
            if live is not None:
                live.update(line, refresh=True)
            elif (
                ended
                or last_logged is None
                or (counts != last_logged[1] and now - last_logged[0] >= LOG_EVERY_S)
            ):
                console.file.write(line.plain() + "\n")
                console.file.flush()
                last_logged = (now, counts)
            if ended:
                return batch
            await _pause(interval_s, stop)
