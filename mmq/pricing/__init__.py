"""Prices and cost: the price book (versioned data, overridable), the usage rules (image tokens per the
providers' formulas, offline text estimates, audio duration), the cost of a job from its usage, and the
quote of a batch before it runs. Pure Python: no Redis, no network.

The names below are the package's public face; they are imported lazily so that a light user (one that
only needs the image-token rules or an audio duration) does not load the price book, YAML or the contract.
Modules: book.py (load, merge, look up), price_file.py (a file read, its problems located to lines),
schema.py (the file's shape), rules.py, audio.py, image_size.py, bill.py (a cost's items), cost.py (the
pricers per kind, cost_of), quotes.py; the shipped prices: prices.yaml.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "PriceBook": "mmq.pricing.book",
    "PriceBookError": "mmq.pricing.book",
    "default_book": "mmq.pricing.book",
    "load_book": "mmq.pricing.book",
    "book_from_env": "mmq.pricing.book",
    "MediaFacts": "mmq.pricing.rules",
    "measure_audio": "mmq.pricing.audio",
    "probe_audio": "mmq.pricing.audio",
    "measure_image": "mmq.pricing.image_size",
    "Cost": "mmq.pricing.bill",
    "CostItem": "mmq.pricing.bill",
    "cost_of": "mmq.pricing.cost",
    "Quote": "mmq.pricing.quotes",
    "QuoteLine": "mmq.pricing.quotes",
    "JobEstimate": "mmq.pricing.quotes",
    "estimate_job": "mmq.pricing.quotes",
    "quote": "mmq.pricing.quotes",
}

__all__ = [
    "Cost",
    "CostItem",
    "JobEstimate",
    "MediaFacts",
    "PriceBook",
    "PriceBookError",
    "Quote",
    "QuoteLine",
    "book_from_env",
    "cost_of",
    "default_book",
    "estimate_job",
    "load_book",
    "measure_audio",
    "measure_image",
    "probe_audio",
    "quote",
]

if TYPE_CHECKING:
    from mmq.pricing.audio import measure_audio, probe_audio
    from mmq.pricing.bill import Cost, CostItem
    from mmq.pricing.book import PriceBook, PriceBookError, book_from_env, default_book, load_book
    from mmq.pricing.cost import cost_of
    from mmq.pricing.image_size import measure_image
    from mmq.pricing.quotes import JobEstimate, Quote, QuoteLine, estimate_job, quote
    from mmq.pricing.rules import MediaFacts


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmq.pricing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
