"""The progress display (producer/cli/progress.py): one line that fits the terminal, whatever its width;
"waiting until <local time>" for a batch whose window has not opened; plain lines without a terminal."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from mmq.contract import BatchCounts, BatchRecord, BatchStatus
from producer.cli.humanize import clock
from producer.cli.progress import ProgressLine, watch

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def batch(**kw) -> BatchRecord:
    counts = BatchCounts(total=12345, queued=4000, running=128, succeeded=8000, failed=117, cached=100)
    return BatchRecord(id="batch_abcdefghijklmnopqrstuvwx", tenant="t", sealed=True, counts=counts, **kw)


def rendered(renderable, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(renderable)
    return console.file.getvalue().rstrip("\n").split("\n")


def test_the_line_fits_every_width_on_one_line():
    line = ProgressLine(batch(created_at=time.time() - 60), rate=133.3)
    for width in (20, 40, 60, 70, 80, 100, 200):
        lines = rendered(line, width)
        assert len(lines) == 1, (width, lines)
        assert len(lines[0]) <= width, (width, lines[0])
    wide, narrow = rendered(line, 200)[0], rendered(line, 70)[0]
    assert "failed 117" in wide and "running 128" in wide and "ETA" in wide
    assert "8117/12345 65%" in narrow and "failed 117" in narrow  # what matters stays at 70 columns
    assert "━" in narrow  # with its bar


def test_a_batch_waiting_for_its_window_says_until_when():
    opens = time.time() + 3 * 3600
    waiting = batch(not_before=opens).model_copy(update={"counts": BatchCounts(total=50, queued=50)})
    text = rendered(ProgressLine(waiting, rate=0.0), 70)[0]
    assert f"waiting until {clock(opens)}" in text
    assert "ETA" not in text


class FakeRecords:
    """get_batch answers the next of `seen`, then the last one again."""

    def __init__(self, *seen: BatchRecord) -> None:
        self.seen = list(seen)

    async def get_batch(self, batch_id: str) -> BatchRecord:
        return self.seen.pop(0) if len(self.seen) > 1 else self.seen[0]


def _steps() -> list[BatchRecord]:
    start = time.time() - 30
    running = batch(created_at=start)
    done = running.model_copy(
        update={
            "status": BatchStatus.completed,
            "finished_at": time.time(),
            "counts": BatchCounts(total=12345, succeeded=12228, failed=117),
        }
    )
    return [running, running, done]


async def test_on_a_70_column_terminal_every_redraw_fits():
    out = io.StringIO()
    console = Console(file=out, width=70, force_terminal=True, color_system="truecolor")
    final = await watch(FakeRecords(*_steps()), "batch_x", interval_s=0.01, console=console)
    assert final.status is BatchStatus.completed
    drawn = [s for s in re.split(r"[\r\n]", ANSI.sub("", out.getvalue())) if s.strip()]
    assert drawn and all(len(s) <= 70 for s in drawn), drawn
    assert "completed 12345/12345 100%" in drawn[-1]


async def test_without_a_terminal_it_writes_plain_lines():
    out = io.StringIO()
    console = Console(file=out, width=70, force_terminal=False)  # a file, a pipe: not a terminal
    await watch(FakeRecords(*_steps()), "batch_x", interval_s=0.01, console=console)
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert lines[0].startswith("batch_abcdefghijklmnopqrstuvwx in progress 8117/12345")
    assert "completed 12345/12345 100%" in lines[-1] and "took" in lines[-1]
