"""A simulated provider batch and its timeline: what state it is in at a given time, as pure functions.

Why a pure timeline: tests and the worker poll at whatever pace two busy cores allow, so nothing here
depends on when anybody looked. The knobs are snapshotted into a `Plan` at create; from then on the
clock alone decides that the batch validates for `validate_s`, that its lines finish one by one over
`complete_s` (in a shuffled order: results are not in input order), that it finalizes for
`finalize_s`, and which of completion, expiry and the end of a cancellation comes first. The engine
(engine.py) runs each line's realtime handler once the line is due; the provider modules render the
neutral statuses below in their own words.

Neutral statuses: validating, in_progress, finalizing, cancelling, and the terminal completed, failed
(the input did not validate), expired (unfinished lines expired, finished ones kept and billed) and
cancelled (lines due before the cancellation ended still finished and were billed).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class Plan:
    """The knobs a batch was created under (engine.plan reads them from the simulator's config)."""

    validate_s: float
    complete_s: float
    finalize_s: float
    cancel_s: float
    expire_at: float | None  # None: never expires (Azure), or only after the test is long over
    stall: bool


@dataclass
class Outcome:
    """What became of a line: succeeded / errored (the realtime answer's status and body) or expired /
    cancelled (no answer)."""

    kind: str
    status: int = 0
    body: object = None
    at: float = 0.0


@dataclass(eq=False)
class Line:
    index: int
    id: str  # custom_id / key: what results are joined on and billing is counted against
    url: str  # the endpoint the line runs (the batch's endpoint, or a Groq audio path)
    body: dict[str, object]
    fail: bool = False  # picked by batch_fail_rate: errors without calling the handler
    outcome: Outcome | None = None


# (line, injected failure) -> (HTTP status, parsed body) in the provider's own shapes
Runner = Callable[[Line, bool], Awaitable[tuple[int, object]]]


@dataclass(eq=False)
class Batch:
    id: str
    provider: str
    created_at: float
    lines: list[Line]
    order: list[int]  # line indices in the order they finish
    plan: Plan
    run: Runner
    invalid: list[dict[str, object]] | None = None  # validation errors: fails when validation ends
    info: dict[str, object] = field(default_factory=dict)  # the surface's own fields
    cancel_at: float | None = None
    finished: int = 0  # how many of `order` have an outcome
    ended_at: float | None = None
    terminal: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # ------------------------------------------------------------------------------------- timeline
    @property
    def start(self) -> float:
        return self.created_at + self.plan.validate_s

    def due(self, rank: int) -> float:
        """When the rank-th line to finish is done."""
        if self.plan.stall:
            return math.inf
        return self.start + self.plan.complete_s * (rank + 1) / len(self.lines)

    @property
    def last_due(self) -> float:
        return self.due(len(self.lines) - 1) if self.lines else self.start

    def end_event(self) -> tuple[str, float] | None:
        """The terminal status and when it is reached, as things stand (a cancel may move it)."""
        events: list[tuple[float, str]] = []
        if self.invalid is not None:
            events.append((self.start, "failed"))
        else:
            if not self.plan.stall:
                events.append((self.last_due + self.plan.finalize_s, "completed"))
            expire = self.plan.expire_at
            if expire is not None and expire < self.last_due:
                events.append((expire, "expired"))
        if self.cancel_at is not None:
            events.append((self.cancel_at + self.plan.cancel_s, "cancelled"))
        if not events:
            return None
        at, status = min(events)
        return status, at

    def status(self, now: float) -> str:
        end = self.end_event()
        if end is not None and now >= end[1]:
            return end[0]
        if self.cancel_at is not None:
            return "cancelling"
        if now < self.start:
            return "validating"
        return "in_progress" if now < self.last_due else "finalizing"

    def next_event(self) -> float:
        """When the engine next has something to do for this batch (a line due, the end)."""
        if self.terminal is not None:
            return math.inf
        end = self.end_event()
        candidates = [end[1]] if end else []
        if self.finished < len(self.lines):
            candidates.append(self.due(self.finished))
        return min(candidates, default=math.inf)

    # -------------------------------------------------------------------------------------- results
    def counts(self) -> dict[str, int]:
        """Outcomes so far: succeeded, errored, expired, cancelled, and pending (no outcome yet)."""
        tally = dict.fromkeys(("succeeded", "errored", "expired", "cancelled"), 0)
        for line in self.lines:
            if line.outcome is not None:
                tally[line.outcome.kind] += 1
        tally["pending"] = len(self.lines) - sum(tally.values())
        return tally

    def in_finish_order(self) -> list[Line]:
        """Lines with an outcome: those that ran in the order they finished, then the others by index."""
        ran = self.order[: self.finished]
        seen = set(ran)
        rest = [line for line in self.lines if line.outcome is not None and line.index not in seen]
        return [self.lines[i] for i in ran] + rest
