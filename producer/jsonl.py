"""Reading OpenAI Batch input files (`{"custom_id", "method", "url", "body"}` per line), streamed.

Lines are parsed by orjson (in C, ~4x the standard library's speed: json.loads was ~6% of a 100k-line
submit's CPU) wherever it reads them as the standard library does; the rest, and every error
message, are json's (see `_loads`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson

from producer.submit import BatchLine

# orjson reads an integer past 64 bits as a float where json keeps it exact: a line with 19 digits in a
# row may hold one. Found by mapping every digit to "9" (a C translate and a C find: a regex scan cost as
# much as the parse).
_DIGITS_AS_NINES = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"9" * 19


def _loads(raw: str | bytes) -> Any:
    """json.loads(raw). orjson gives the same for what it accepts, except integers past 64 bits (so a line
    holding 19 digits in a row is json's); what it refuses (NaN, a byte-order mark, a lone surrogate, bad
    JSON…) is json's too, which takes some of it and words the errors."""
    if isinstance(raw, bytes) and _LONG_RUN not in raw.translate(_DIGITS_AS_NINES):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def parse_line(raw: str | bytes, line_no: int) -> BatchLine | None:
    """None for blank lines; a BatchLine carrying `error` for lines that are not valid JSON."""
    if not raw.strip():
        return None
    try:
        obj = _loads(raw)
    except ValueError as e:
        return BatchLine(body=None, line_no=line_no, error=f"not valid JSON ({e})")
    except RecursionError:  # nesting past the parsers' own limits (about 1,000 levels)
        return BatchLine(body=None, line_no=line_no, error="not valid JSON (nested too deep to read)")
    return BatchLine.from_obj(obj, line_no)


DEFAULT_MAX_LINE_BYTES = 32 * 1024 * 1024  # as Settings.max_line_bytes (MMQ_MAX_LINE_BYTES)


def _too_long(line_no: int, max_line_bytes: int) -> BatchLine:
    return BatchLine(
        body=None,
        line_no=line_no,
        error=f"line is longer than {max_line_bytes} bytes (MMQ_MAX_LINE_BYTES); it was not read",
    )


def iter_jsonl(path: str | Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[BatchLine]:
    """One line at a time: memory does not grow with the file, nor past `max_line_bytes` for one line
    (a longer line fails alone, its rest skipped unread into memory)."""
    with open(path, "rb") as f:
        line_no = 0
        while raw := f.readline(max_line_bytes + 1):
            line_no += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                yield _too_long(line_no, max_line_bytes)
                continue
            line = parse_line(raw, line_no)
            if line is not None:
                yield line


async def aiter_jsonl_chunks(
    chunks: AsyncIterable[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncIterator[BatchLine]:
    """Lines from a byte stream (an HTTP upload), without buffering the whole body, nor more than
    `max_line_bytes` of one line: a longer line fails alone and the stream goes on after it."""
    buf = bytearray()
    line_no = 0
    skipping = False  # inside a line already reported as too long
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            line_no += 1
            if skipping:
                skipping = False
            elif len(buf) + end - start > max_line_bytes:
                yield _too_long(line_no, max_line_bytes)
            else:
                buf += chunk[start:end]
                line = parse_line(bytes(buf), line_no)
                if line is not None:
                    yield line
            buf.clear()
            start = end + 1
        if not skipping:
            buf += chunk[start:]
            if len(buf) > max_line_bytes:
                buf.clear()
                skipping = True
                yield _too_long(line_no + 1, max_line_bytes)
    if buf.strip() and not skipping:
        line = parse_line(bytes(buf), line_no + 1)
        if line is not None:
            yield line
