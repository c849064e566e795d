"""Counters exposed on app.state.stats and GET /sim/stats.

The batch counters are per provider surface (openai, azure, groq, anthropic, gemini). A batch line is
billed when it succeeds (done lines of an expired or cancelled batch included, as the providers bill
them); `batch_billed_ids` counts bills per line id (custom_id, Gemini key) so a test can assert that no
job was paid twice, across batches and providers. `batch_quota_refusals` counts the OpenAI-format
batches failed for the enqueued-token quota (MMQ_SIM_BATCH_QUEUE_TOKENS: batches/oai_quota.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SimStats:
    requests: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0  # 429s sent
    errors: int = 0  # 5xx sent (injected or not)
    hangs: int = 0
    batches_created: dict[str, int] = field(default_factory=dict)
    batch_cancels: dict[str, int] = field(default_factory=dict)
    batch_lines_billed: dict[str, int] = field(default_factory=dict)
    batch_billed_ids: dict[str, int] = field(default_factory=dict)
    batch_quota_refusals: dict[str, int] = field(default_factory=dict)

    def count(self, path: str) -> None:
        self.requests += 1
        self.by_path[path] = self.by_path.get(path, 0) + 1

    def batch_created(self, provider: str) -> None:
        _bump(self.batches_created, provider)

    def batch_cancelled(self, provider: str) -> None:
        _bump(self.batch_cancels, provider)

    def quota_refused(self, provider: str) -> None:
        _bump(self.batch_quota_refusals, provider)

    def bill(self, provider: str, line_id: str) -> None:
        _bump(self.batch_lines_billed, provider)
        _bump(self.batch_billed_ids, line_id)

    def reset(self) -> None:
        self.requests = self.rate_limited = self.errors = self.hangs = 0
        self.by_path.clear()
        for counter in (
            self.batches_created,
            self.batch_cancels,
            self.batch_lines_billed,
            self.batch_billed_ids,
            self.batch_quota_refusals,
        ):
            counter.clear()

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1
