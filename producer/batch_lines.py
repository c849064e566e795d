"""A batch's input line (the OpenAI Batch shape) and the custom_id rule every door applies.

Why apart from the Producer: the CLI, the HTTP API, /v1 files, quotes, templates and workflows all read
lines into `BatchLine`s and check their custom_ids; none of them needs the Producer's Redis and storage
to do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class BatchLine:
    """One request in the OpenAI Batch input shape (`custom_id`, `method`, `url`, `body`)."""

    body: dict[str, Any] | None
    url: str | None = None
    custom_id: str | None = None
    line_no: int | None = None
    error: str | None = None  # set when the line could not even be parsed
    cache: Any = None  # mmq extension: `cache: false` or {"level", "ttl_s", "refresh", "threshold"}

    @classmethod
    def from_obj(cls, obj: Any, line_no: int | None = None) -> BatchLine:
        if not isinstance(obj, dict):
            return cls(body=None, line_no=line_no, error="line is not a JSON object")
        custom_id = obj.get("custom_id")
        method = str(obj.get("method", "POST")).upper()
        error = None
        if method != "POST":
            error = f"method must be POST, got {method!r}"
        elif not isinstance(obj.get("url"), str):
            error = "missing url (e.g. /v1/chat/completions)"
        elif not isinstance(obj.get("body"), dict):
            error = "missing body object"
        return cls(
            body=obj.get("body"),
            url=obj.get("url"),
            custom_id=None if custom_id is None else str(custom_id),
            line_no=line_no,
            error=error,
            cache=obj.get("cache"),
        )


class CustomIds:
    """A batch's custom_ids as its lines go by, for one rule at every door (the CLI, /api, /v1, quotes):
    a line whose custom_id an earlier line of the batch already used fails alone, naming both lines, and
    the rest of the batch goes on. The output has one line per custom_id; OpenAI refuses such a file
    (`duplicate_custom_id`), mmq refuses the line, as it refuses any other bad line. A line that could not
    be read claims nothing. Memory: one entry per distinct custom_id (~100 B)."""

    def __init__(self) -> None:
        self._first: dict[str, int] = {}
        self._seen = 0

    def check(self, line: BatchLine) -> None:
        """Sets `line.error` when its custom_id is already used; the line is numbered by its position in
        the batch when it has no number of its own."""
        self._seen += 1
        if line.custom_id is None or line.error is not None:
            return
        here = line.line_no if line.line_no is not None else self._seen
        first = self._first.setdefault(line.custom_id, here)
        if first != here:
            line.error = duplicate_custom_id(line.custom_id, first)


def duplicate_custom_id(custom_id: str, first_line: int) -> str:
    return f"custom_id {custom_id!r} is already used by line {first_line} (each line needs its own)"
