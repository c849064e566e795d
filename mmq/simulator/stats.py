"""Counters exposed on app.state.stats and GET /sim/stats."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SimStats:
    requests: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0  # 429s sent
    errors: int = 0  # 5xx sent (injected or not)
    hangs: int = 0

    def count(self, path: str) -> None:
        self.requests += 1
        self.by_path[path] = self.by_path.get(path, 0) + 1

    def reset(self) -> None:
        self.requests = self.rate_limited = self.errors = self.hangs = 0
        self.by_path.clear()

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
