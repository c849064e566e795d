"""Per-key sliding-window request limiter with OpenAI-style x-ratelimit-* headers."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


def openai_duration(seconds: float) -> str:
    """Format like OpenAI's reset headers (Go durations): 250ms, 1s, 1.5s, 6m0s, 1h2m3s."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_txt = f"{secs:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{int(hours)}h{int(minutes)}m{sec_txt}s"
    if minutes:
        return f"{int(minutes)}m{sec_txt}s"
    return f"{sec_txt}s"


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    headers: dict[str, str]
    retry_after_s: float = 0.0


class SlidingWindowLimiter:
    """Admits a request if fewer than `limit` admitted requests of its key lie in the last `window_s`."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._admitted: dict[str, deque[float]] = {}

    def reset(self) -> None:
        self._admitted.clear()

    def check(self, key: str) -> Verdict:
        now = self._clock()
        stamps = self._admitted.setdefault(key, deque())
        horizon = now - self.window_s
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if len(stamps) < self.limit:
            stamps.append(now)
            # "reset" = time until the window is empty again, as OpenAI documents it
            reset = stamps[-1] + self.window_s - now
            return Verdict(True, self._headers(self.limit - len(stamps), reset))
        wait = stamps[0] + self.window_s - now  # when the oldest admitted request leaves the window
        headers = self._headers(0, stamps[-1] + self.window_s - now)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        return Verdict(False, headers, wait)

    def _headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": openai_duration(reset_s),
        }
