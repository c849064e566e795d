"""Bounded in-memory store behind GET /sim/files/{name} (image generation with response_format=url)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict


class FileStore:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def put(self, data: bytes, suffix: str = ".png") -> str:
        # content-addressed: identical renders share one slot
        name = hashlib.sha256(data).hexdigest()[:32] + suffix
        self._items[name] = data
        self._items.move_to_end(name)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return name

    def get(self, name: str) -> bytes | None:
        data = self._items.get(name)
        if data is not None:
            self._items.move_to_end(name)
        return data

    def clear(self) -> None:
        self._items.clear()
