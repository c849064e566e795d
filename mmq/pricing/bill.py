"""A job's bill: the items its cost is made of (what was counted, at which rate, how much), the total, and
why a job could not be priced; plus the readers of provider usage numbers that every pricer shares.

Why apart from the pricers (cost.py): the quote (quotes.py) and the cost of a finished job fill the same
Bill, each with its own pricers; the shape of a result is one concept, the rates per kind another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from mmq.pricing.schema import (
    BatchPolicy,
)

MILLION = 1_000_000
REALTIME, BATCH = "realtime", "batch"


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class CostItem:
    """One line of a bill: `quantity` `unit` at `unit_price` USD per `per` units (tier applied)."""

    what: str
    quantity: Decimal
    unit: str  # tokens, characters, images, seconds
    unit_price: Decimal
    per: int  # 1_000_000 for tokens and characters, 1 per image, 60 per minute, 3600 per hour

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price / self.per

    def __str__(self) -> str:
        per = {MILLION: "/1M", 1: "", 60: "/min", 3600: "/h"}.get(self.per, f"/{self.per}")
        return f"{self.what}: {self.quantity} {self.unit} x ${self.unit_price}{per} = ${self.amount}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "quantity": str(self.quantity),
            "unit": self.unit,
            "unit_price": str(self.unit_price),
            "per": self.per,
            "amount": str(self.amount),
        }


@dataclass(frozen=True)
class Cost:
    """A job's cost in USD. `missing` says why it is not (fully) priced ("no price for openai/x", an
    unknown audio duration); `estimated` that some quantity came from a rule, not from reported usage."""

    amount: Decimal
    breakdown: tuple[CostItem, ...]
    price_book_version: str
    missing: str | None = None
    estimated: bool = False
    priced_as: str | None = None
    tier: str = REALTIME
    notes: tuple[str, ...] = ()

    @property
    def priced(self) -> bool:
        return self.missing is None

    @property
    def micro_usd(self) -> int:
        """The amount in millionths of a dollar, rounded up (for integer counters and budgets)."""
        return int((self.amount * MILLION).to_integral_value(rounding=ROUND_CEILING))

    def to_dict(self) -> dict[str, Any]:
        return {
            "amount_usd": str(self.amount),
            "micro_usd": self.micro_usd,
            "breakdown": [item.to_dict() for item in self.breakdown],
            "price_book_version": self.price_book_version,
            "missing": self.missing,
            "estimated": self.estimated,
            "priced_as": self.priced_as,
            "tier": self.tier,
            "notes": list(self.notes),
        }


class NoPrice(Exception):
    """Internal: this job cannot be priced (the message says why); turned into Cost.missing."""


@dataclass
class Bill:
    """Items being added up for one job, with the tier's multiplier at hand."""

    tier: str
    batch: BatchPolicy | None
    items: list[CostItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    estimated: bool = False

    def __post_init__(self) -> None:
        if self.tier == BATCH and self.batch is None:
            self.notes.append("no batch tier for this model and kind in the price book: realtime prices used")

    @property
    def multiplier(self) -> Decimal:
        return self.batch.multiplier if self.tier == BATCH and self.batch else Decimal(1)

    def add(
        self, what: str, quantity: Any, unit: str, price: Decimal, per: int, *, tiered: bool = True
    ) -> None:
        quantity = Decimal(quantity)
        if quantity <= 0:
            return
        unit_price = price * self.multiplier if tiered else price
        self.items.append(CostItem(what, quantity, unit, unit_price, per))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def amount(self) -> Decimal:
        return sum((item.amount for item in self.items), Decimal(0))


def as_int(value: Any) -> int:
    """A count from a usage field: anything that is not a finite number >= 0 counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return 0
    return int(value)


def as_number(value: Any) -> Decimal | None:
    """A quantity (seconds) from a usage field, or None when it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return Decimal(str(value))


def details_of(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = usage.get(key)
    return value if isinstance(value, Mapping) else {}
