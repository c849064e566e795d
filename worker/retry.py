"""How long to wait before the next attempt: exponential backoff with full jitter, capped, and never
shorter than what the provider asked for in Retry-After."""

from __future__ import annotations

import random


def backoff_s(
    attempt: int,
    *,
    base_s: float = 1.0,
    cap_s: float = 60.0,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """`attempt` counts from 1 (the attempt that just failed)."""
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    delay = (rng or random).uniform(0, ceiling)  # full jitter spreads a thundering herd
    if retry_after_s is not None:
        # the provider knows when capacity returns; a little jitter keeps workers from returning together
        delay = max(delay, retry_after_s * (1 + (rng or random).uniform(0, 0.1)))
    return delay
