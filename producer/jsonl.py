"""Reading OpenAI Batch input files (`{"custom_id", "method", "url", "body"}` per line), streamed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterator
from pathlib import Path

from producer.submit import BatchLine


def parse_line(raw: str | bytes, line_no: int) -> BatchLine | None:
    """None for blank lines; a BatchLine carrying `error` for lines that are not valid JSON."""
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except ValueError as e:
        return BatchLine(body=None, line_no=line_no, error=f"not valid JSON ({e})")
    return BatchLine.from_obj(obj, line_no)


def iter_jsonl(path: str | Path) -> Iterator[BatchLine]:
    """One line at a time: memory does not grow with the file."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            line = parse_line(raw, line_no)
            if line is not None:
                yield line


async def aiter_jsonl_chunks(chunks: AsyncIterable[bytes]):
    """Lines from a byte stream (an HTTP upload), without buffering the whole body."""
    buf = b""
    line_no = 0
    async for chunk in chunks:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line_no += 1
            line = parse_line(raw, line_no)
            if line is not None:
                yield line
    if buf.strip():
        line = parse_line(buf, line_no + 1)
        if line is not None:
            yield line
