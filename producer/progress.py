"""How fast a batch moves, for every display of it: a sliding-window rate and a short duration text.

The CLI's progress line (producer/cli/progress.py), its status view and the web console all show rates
and ETAs; they share these two so that the same batch reads the same everywhere.
"""

from __future__ import annotations

from collections import deque

_RATE_WINDOW_S = 15.0  # the rate is measured over the last seconds, so the ETA follows speed changes


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
