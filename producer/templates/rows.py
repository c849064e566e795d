"""Template rows: the variables of each job, from a CSV file with a header or a JSONL file of objects.

Rows are read as a stream (a file from disk, a request body), one line at a time: a CSV record may span
lines inside quotes, a line that is not UTF-8 fails only its row, and a file that cannot be read at all
(no header, a broken header) is refused before any batch exists.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from producer.templates.model import TemplateError
from producer.templates.rendering import as_text

MAX_RECORD_BYTES = 64 * 1024 * 1024  # one row (a data: URL in a cell can be a few MB)
RowFormat = Literal["csv", "jsonl"]


@dataclass
class Row:
    """One row of variables. `number` counts data rows from 1; `line_no` is where it starts in the file."""

    number: int
    line_no: int
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def custom_id(self) -> str:
        for key in ("custom_id", "id"):
            value = as_text(self.values.get(key))
            if value is not None:
                return value
        return str(self.number)


async def aiter_text_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, bool]]:
    """(line without its end, decoded fine) from a byte stream, one line at a time. A line that is not
    UTF-8 comes through replaced and flagged, so only its row fails."""
    pending: list[bytes] = []
    first = True

    def decode(raw: bytes) -> tuple[str, bool]:
        nonlocal first
        if first:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # Excel writes one
            first = False
        raw = raw.removesuffix(b"\r")
        try:
            return raw.decode(), True
        except UnicodeDecodeError:
            return raw.decode(errors="replace"), False

    async for chunk in chunks:
        if b"\n" not in chunk:  # a long line (a data: URL in a cell) is joined once, not re-split per chunk
            pending.append(chunk)
            continue
        *lines, rest = chunk.split(b"\n")
        lines[0] = b"".join([*pending, lines[0]])
        pending = [rest] if rest else []
        for raw in lines:
            yield decode(raw)
    if pending:
        yield decode(b"".join(pending))


async def aiter_file_lines(path: Path, size: int = 1 << 16) -> AsyncIterator[tuple[str, bool]]:
    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(size):
                yield chunk

    async for line in aiter_text_lines(chunks()):
        yield line


def row_format(name: str) -> RowFormat:
    """csv or jsonl, from a file name or a content type."""
    lowered = name.lower().split(";")[0].strip()
    if lowered.endswith(("csv", "text/csv")):
        return "csv"
    if lowered.endswith(("jsonl", "ndjson", "json-lines", "jsonlines")):
        return "jsonl"
    raise TemplateError(f"{name}: rows must be CSV (with a header) or JSONL (one object per line)")


class RowReader:
    """Rows from lines of CSV (the first record is the header) or JSONL. `await open()` reads the header,
    so a file that cannot be read at all is refused before any batch exists; afterwards nothing raises: a
    bad row becomes a Row with `error`, and a stream that goes bad ends with one error row."""

    def __init__(self, lines: AsyncIterable[tuple[str, bool]], fmt: RowFormat) -> None:
        self._lines = aiter(lines)
        self.fmt = fmt
        self.header: list[str] | None = None
        self._line_no = 0

    async def _next_record(self) -> tuple[int, str, bool] | None:
        """(first line number, text, decoded fine) of the next non-blank CSV record, whose quoted fields
        may span lines: a record is complete when its quotes balance."""
        parts: list[str] = []
        ok = True
        start = 0
        size = 0
        async for text, good in self._lines:
            self._line_no += 1
            if not parts and not text.strip():
                continue
            if not parts:
                start = self._line_no
            parts.append(text)
            ok = ok and good
            size += len(text)
            if size > MAX_RECORD_BYTES:
                raise TemplateError(f"line {start}: a row over {MAX_RECORD_BYTES} bytes (an unclosed quote?)")
            joined = "\n".join(parts)
            if joined.count('"') % 2 == 0:
                return start, joined, ok
        if parts:
            raise TemplateError(f"line {start}: unclosed quote: the row never ends")
        return None

    @staticmethod
    def _fields(text: str) -> list[str]:
        rows = list(csv.reader(io.StringIO(text), strict=True))
        return rows[0] if rows else []

    async def open(self) -> None:
        if self.fmt != "csv":
            return
        first = await self._next_record()
        if first is None:
            raise TemplateError("empty CSV: the first line must be a header naming the variables")
        line_no, text, ok = first
        try:
            names = [n.strip() for n in self._fields(text)] if ok else []
        except csv.Error as e:
            raise TemplateError(f"CSV header (line {line_no}): {e}") from None
        if not ok:
            raise TemplateError(f"CSV header (line {line_no}) is not UTF-8 text")
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise TemplateError(
                f"CSV header (line {line_no}) must name each column once, got {','.join(names)!r}"
            )
        self.header = names

    async def __aiter__(self) -> AsyncIterator[Row]:
        number = 0
        try:
            if self.fmt == "csv":
                assert self.header is not None, "call open() first"
                while (record := await self._next_record()) is not None:
                    number += 1
                    yield self._csv_row(number, *record)
            else:
                async for text, ok in self._lines:
                    self._line_no += 1
                    if text.strip():
                        number += 1
                        yield self._jsonl_row(number, self._line_no, text, ok)
        except TemplateError as e:  # the stream went bad: say so in one failed row, keep what was read
            yield Row(number + 1, self._line_no, error=f"{e}; rows after this one were not read")

    def _csv_row(self, number: int, line_no: int, text: str, ok: bool) -> Row:
        assert self.header is not None
        if not ok:
            return Row(number, line_no, error="not UTF-8 text")
        try:
            fields = self._fields(text)
        except csv.Error as e:
            return Row(number, line_no, error=f"unreadable CSV ({e})")
        values = dict(zip(self.header, fields, strict=False))  # a short row lacks the last columns
        row = Row(number, line_no, values)
        if any(f.strip() for f in fields[len(self.header) :]):
            row.error = (
                f"{len(fields)} fields but the header has {len(self.header)} (quote values containing commas)"
            )
        return row

    @staticmethod
    def _jsonl_row(number: int, line_no: int, text: str, ok: bool) -> Row:
        if not ok:
            return Row(number, line_no, error="not UTF-8 text")
        try:
            obj = json.loads(text)
        except ValueError as e:
            return Row(number, line_no, error=f"not valid JSON ({e})")
        if not isinstance(obj, dict):
            return Row(number, line_no, error="a row must be a JSON object of variables")
        return Row(number, line_no, obj)


async def read_rows(lines: AsyncIterable[tuple[str, bool]], fmt: RowFormat) -> RowReader:
    """An opened RowReader (the CSV header read and checked). Raises TemplateError."""
    reader = RowReader(lines, fmt)
    await reader.open()
    return reader
