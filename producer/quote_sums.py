"""A quote's sums and what it left out: per kind, provider and model, added up one job at a time, and the
lines a submit would refuse (producer.quoting measures the lines; this module adds them up).

Why apart: mmq.pricing.quotes.quote adds up a list it is given whole; a door quotes a file of any size
as it streams, so the same sums (QuoteGroup.add, then the totals as `quote` makes them) are kept here
one estimate at a time, and memory holds the groups, never the lines. A request that names no model
(an image request may leave it to the provider) is grouped as "(default)" and said to be unpriced,
rather than "invalid": it runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from mmq.pricing import PriceBook, Quote, QuoteLine, estimate_job
from mmq.pricing.quotes import QuoteGroup
from mmq.pricing.rules import image_ask

MAX_LISTED = 20  # refused lines listed with their reason (all are counted)
DEFAULT_MODEL = "(default)"  # the group of requests that name no model (the provider chooses)
_NO_MODEL = "invalid request: no model"  # mmq.pricing.quotes.estimate_job's word for it


@dataclass(frozen=True)
class Refused:
    """A line a submit would refuse (it would become a failed job): not quoted."""

    line: int | None
    custom_id: str | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "custom_id": self.custom_id, "error": self.error}


@dataclass
class BatchQuote:
    """A batch's quote (mmq.pricing.Quote) with the lines it left out because a submit refuses them."""

    quote: Quote
    book: PriceBook
    invalid: int = 0
    refused: list[Refused] = field(default_factory=list)  # the first MAX_LISTED

    def batch_tier(self, group: QuoteGroup) -> bool:
        """Whether the book prices this group's model on a provider batch tier."""
        match = self.book.find(group.provider, group.model, group.kind)
        return match is not None and match.batch is not None

    def to_dict(self) -> dict[str, Any]:
        """Quote.to_dict(), each group with `batch_tier`, plus `invalid_lines` and the first `invalid`."""
        out = self.quote.to_dict()
        for group, shown in zip(self.quote.groups, out["groups"], strict=True):
            shown["batch_tier"] = self.batch_tier(group)
        out["invalid_lines"] = self.invalid
        out["invalid"] = [r.to_dict() for r in self.refused]
        return out


class Tally:
    """The sums of mmq.pricing.quotes.quote, kept one estimate at a time (a file is never held whole)."""

    def __init__(self, book: PriceBook) -> None:
        self.book = book
        self.groups: dict[tuple[str, str, str], QuoteGroup] = {}

    def add(self, line: QuoteLine) -> None:
        job = estimate_job(
            line.url, line.body, line.media, provider=line.provider or "openai", book=self.book
        )
        if not job.model and job.missing == _NO_MODEL:  # valid (images): the provider picks its default
            unnamed = f"no price for {job.provider}'s default model (name a model to price it)"
            job = replace(job, model=DEFAULT_MODEL, missing=unnamed)
            if job.kind == "image":  # what is asked is still known
                ask = image_ask(line.body)
                job = replace(
                    job, input_tokens=ask.prompt_tokens, text_tokens=ask.prompt_tokens, images_out=ask.n
                )
        key = (job.kind, job.provider, job.model)
        self.groups.setdefault(key, QuoteGroup(*key)).add(job)

    def quote(self) -> Quote:
        groups = tuple(self.groups.values())
        missing: Counter[str] = Counter()
        for g in groups:
            missing.update(g.missing)

        def total(name: str) -> Decimal:
            return sum((getattr(g, name) for g in groups), Decimal(0))

        return Quote(
            groups=groups,
            price_book_version=self.book.version,
            jobs=sum(g.jobs for g in groups),
            priced_jobs=sum(g.priced_jobs for g in groups),
            low=total("low"),
            high=total("high"),
            batch_low=total("batch_low"),
            batch_high=total("batch_high"),
            missing=dict(missing),
            high_is_bound=not any(g.unbounded_jobs for g in groups),
        )
