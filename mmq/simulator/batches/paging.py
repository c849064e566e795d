"""Cursor pages over newest-first lists, the way OpenAI's and Anthropic's list endpoints page.

Why shared: both APIs page by an item id (`after` / `after_id`, `before_id`) and say `has_more`; the
OpenAI SDK's auto-paging sends the last item's id as `after`, so the cursor must be an item id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from mmq.simulator.errors import bad_request

T = TypeVar("T")


def limit_param(raw: str | None, default: int, highest: int, name: str = "limit") -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(
            f"Invalid '{name}': expected an integer, got {raw!r}.", name, "invalid_type"
        ) from None
    if not 1 <= value <= highest:
        raise bad_request(
            f"Invalid '{name}': {value} is out of range; expected a value between 1 and {highest}.",
            name,
            "invalid_value",
        )
    return value


def page(
    items: Sequence[T],
    key: Callable[[T], str],
    limit: int,
    after: str | None = None,
    before: str | None = None,
) -> tuple[list[T], bool]:
    """The items after `after` (or just before `before`), at most `limit`, and whether more remain."""
    ids = [key(item) for item in items]
    if before:
        end = ids.index(before) if before in ids else 0
        start = max(0, end - limit)
        return list(items[start:end]), start > 0
    start = ids.index(after) + 1 if after and after in ids else 0
    chunk = list(items[start : start + limit])
    return chunk, start + limit < len(items)
