"""Reading a local file that a request names (an audio line's `file` through `mmq submit`, in admin or API
mode, or a template's {{file}}): only a regular file, and only up to the size a line may carry.

`file: /dev/zero` was read until memory ran out (issue 13 item 7); a named pipe would block the submit
for ever, a folder failed with an obscure error. The file is opened without blocking, checked with fstat
on that same descriptor (no race with a rename in between) and read to at most one byte past the limit,
so a file that grows while it is read is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class LocalFileError(ValueError):
    """The file cannot be used: the message names it and why, for the line's error."""


def read_local_file(path: Path, shown: str, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path` (named `shown` in messages), at most `max_bytes`
    (MMQ_MAX_LINE_BYTES, the most a line may carry)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise LocalFileError(f"cannot read {shown!r} ({e.strerror or e})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise LocalFileError(f"{shown!r} is not a regular file ({what}); name an audio file")
    with os.fdopen(fd, "rb") as f:
        too_big = LocalFileError(
            f"{shown!r} is larger than {max_bytes} bytes, the most a line may carry (MMQ_MAX_LINE_BYTES)"
        )
        if info.st_size > max_bytes:
            raise too_big
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise LocalFileError(f"cannot read {shown!r} ({e.strerror or e})") from None
        if len(data) > max_bytes:  # it grew while it was read
            raise too_big
        return data
