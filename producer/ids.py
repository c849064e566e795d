"""Ids for batches and jobs: short, random, safe everywhere an id goes.

Why a module: the producer makes one per line of a 100k-line file, so ids are made in blocks (one
urandom call and one translation for 512), and their length is a Redis memory decision (below).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

# An id's random part: 24 characters of a 32-letter alphabet (lowercase letters and 2-7, base32's), 5
# random bits each: 120 bits (a uuid4 has 122), safe in Redis keys, storage paths and file names on
# case-insensitive disks. Every id is written five times per job (its hash's key, its batch's specs hash,
# arq's key, payload and queue entry): 24 characters instead of uuid4's 32 hex keep each of those a size
# class smaller in Redis (~60 B a queued job).
_ID_CHARS = 24
# a random byte → the letter of its low 5 bits
_ID_ALPHABET = bytes(b"abcdefghijklmnopqrstuvwxyz234567"[b & 31] for b in range(256))


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(_ID_CHARS).translate(_ID_ALPHABET).decode()}"


def new_ids(prefix: str, n: int = 512) -> Iterator[str]:
    """`new_id`s, made `n` at a time (one urandom call and one translation for all)."""
    while True:
        text = os.urandom(_ID_CHARS * n).translate(_ID_ALPHABET).decode()
        for start in range(0, len(text), _ID_CHARS):
            yield f"{prefix}_{text[start : start + _ID_CHARS]}"
