"""The caption CSV: one vision job per row of an `id,url[,prompt]` file.

`url` is an http(s) or data: URL (the provider fetches it) or a local path (read into a data: URL now).
The file and its header are checked before anything is submitted; a row that cannot become a job (an
empty or repeated id, an unreadable image, too many fields) becomes a failed job naming its CSV line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from producer.submit import BatchLine
from producer.workflows.inputs import (
    CaptionOptions,
    WorkflowError,
    caption_body,
    chat_line,
    check_text_file,
    image_data_url,
)

CSV_COLUMNS = ("id", "url", "prompt")


@dataclass
class CsvRow:
    line_no: int
    id: str
    url: str
    prompt: str | None
    error: str | None = None


def _check_header(fieldnames: list[str] | None, path: Path) -> list[str]:
    names = [(n or "").strip().lower() for n in fieldnames or []]
    expected = "id,url[,prompt]"
    if not names:
        raise WorkflowError(f"{path}: empty file; the first line must be the header {expected}")
    unknown = [n for n in names if n not in CSV_COLUMNS]
    missing = [n for n in ("id", "url") if n not in names]
    if unknown or missing or len(set(names)) != len(names):
        what = []
        if missing:
            what.append("missing " + ", ".join(missing))
        if unknown:
            what.append("unknown " + ", ".join(repr(n) for n in unknown))
        if len(set(names)) != len(names):
            what.append("repeated column")
        raise WorkflowError(f"{path}: header must be {expected}, got {','.join(names)} ({'; '.join(what)})")
    return names


def read_caption_csv(path: Path) -> Iterator[CsvRow]:
    """Rows of an `id,url[,prompt]` CSV. The file and its header are checked now (raises WorkflowError),
    the rows are read lazily."""
    check_text_file(path, as_csv=True)
    f: TextIO = path.open(newline="", encoding="utf-8-sig")  # -sig: Excel writes a BOM
    try:
        reader = csv.reader(f)
        names = _check_header(next(reader, None), path)
    except BaseException:
        f.close()
        raise
    return _csv_rows(f, reader, names)


def _csv_rows(f: TextIO, reader: Any, names: list[str]) -> Iterator[CsvRow]:
    with f:
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank lines
            row = dict(zip(names, (v.strip() for v in values), strict=False))
            error = None
            if any(v.strip() for v in values[len(names) :]):
                error = (
                    f"{len(values)} fields but the header has {len(names)} (quote values containing commas)"
                )
            prompt = row.get("prompt") or None
            yield CsvRow(reader.line_num, row.get("id", ""), row.get("url", ""), prompt, error)


def _row_image_url(row: CsvRow, base_dir: Path) -> str:
    """An http(s)/data: URL as given (the provider fetches it), a local path as a data: URL.
    Raises ValueError with the reason."""
    if not row.url:
        raise ValueError("empty url")
    if row.url.startswith(("http://", "https://", "data:")):
        return row.url
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", row.url):
        raise ValueError(f"url {row.url!r}: only http(s) URLs or local paths are supported")
    path = (base_dir / Path(row.url).expanduser()) if not Path(row.url).is_absolute() else Path(row.url)
    try:
        return image_data_url(path)
    except OSError as e:
        raise ValueError(f"cannot read {row.url!r} ({e.strerror or e})") from None


def caption_lines_from_csv(path: Path, opts: CaptionOptions) -> Iterator[BatchLine]:
    """One vision job per CSV row; custom_id is the id column. A row that cannot become a job (empty or
    repeated id, unreadable file) becomes a failed job naming the CSV line."""
    rows = read_caption_csv(path)
    return _csv_lines(rows, path.parent, opts)


def _row_problem(row: CsvRow, seen: dict[str, int]) -> str | None:
    if row.error:
        return row.error
    if not row.id:
        return "empty id"
    if row.id in seen:  # the outputs are keyed by id: a repeat would be ambiguous
        return f"id {row.id!r} repeats line {seen[row.id]}"
    seen[row.id] = row.line_no
    return None


def _csv_lines(rows: Iterable[CsvRow], base_dir: Path, opts: CaptionOptions) -> Iterator[BatchLine]:
    seen: dict[str, int] = {}
    for row in rows:
        error = _row_problem(row, seen)
        if error is None:
            try:
                url = _row_image_url(row, base_dir)
            except ValueError as e:
                error = str(e)
        if error is not None:
            yield BatchLine(body=None, custom_id=row.id or None, line_no=row.line_no, error=error)
            continue
        yield chat_line(row.id, caption_body(url, row.prompt or opts.prompt, opts), row.line_no)
