"""Rendering a template: `{{name}}` replaced by a row's value.

Rendering replaces `{{name}}` (spaces inside the braces allowed) in string values only, in one pass: a
value that itself contains `{{x}}` stays as written, nothing is evaluated, and values are put into
already-parsed JSON strings, so quotes or newlines in a value cannot change the request's structure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

# `{{ name }}`: letters, digits, `_` and `-`; anything else between braces stays as written
VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")


def string_values(value: Any) -> Iterator[str]:
    """Every string value (not keys) in a JSON-like structure, in document order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from string_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from string_values(v)


def variables_of(value: Any) -> list[str]:
    """The variable names used anywhere in `value`, in order of first use."""
    seen: dict[str, None] = {}
    for text in string_values(value):
        for match in VARIABLE.finditer(text):
            seen.setdefault(match[1], None)
    return list(seen)


def as_text(value: Any) -> str | None:
    """A row's value as the text to insert; None when it counts as missing (absent, null, empty: an empty
    cell is almost always a mistake, and rendering "Describe ." would still be paid for)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)  # objects and arrays of a JSONL row, as JSON text


def render(value: Any, values: Mapping[str, Any]) -> Any:
    """A copy of `value` with `{{name}}` replaced in every string value. One pass per string: inserted
    text is never scanned again. Unknown names stay as written (callers check `missing` first)."""

    def sub(match: re.Match[str]) -> str:
        text = as_text(values.get(match[1]))
        return match[0] if text is None else text

    if isinstance(value, str):
        return VARIABLE.sub(sub, value)
    if isinstance(value, dict):
        return {k: render(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, values) for v in value]
    return value
