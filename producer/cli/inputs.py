"""Input files checked and opened before anything is submitted.

A batch record exists from its first line on, and stays `in_progress` until sealed: a file that cannot
be read must stop the command before the batch is created, or an empty batch is left behind forever.
`input_file` names what is wrong with a path (missing, a folder, unreadable); `opened_jsonl` reads the
first request of a JSONL file up front, so the file is open (and not empty) before `submit_batch` runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from producer.cli.errors import UserError

if TYPE_CHECKING:
    from producer.submit import BatchLine


def input_file(name: str, *, kind: str, instead: str = "") -> Path:
    """`name` as a readable file; `kind` says what it should be (`a JSONL file`), `instead` what to run
    for a folder."""
    path = Path(name)
    if path.is_dir():
        hint = f"; {instead}" if instead else ""
        raise UserError(f"{path} is a folder, not {kind}{hint}.")
    if not path.exists():
        raise UserError(
            f"{path}: no such file (looked in {path.resolve().parent}). Give the path of {kind}, "
            "relative to this folder or absolute."
        )
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e}).") from None
    return path


def opened_jsonl(path: Path, max_line_bytes: int) -> Iterator[BatchLine]:
    """The requests of a JSONL file, the first already read: an unreadable or empty file raises
    UserError here, before the caller creates a batch."""
    from producer.jsonl import iter_jsonl

    lines = iter_jsonl(path, max_line_bytes)
    try:
        first = next(lines, None)
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e}).") from None
    if first is None:
        raise UserError(f"{path} holds no requests (every line is empty); nothing was submitted.")
    return itertools.chain([first], lines)
