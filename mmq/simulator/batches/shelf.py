"""The files the batch APIs hold: uploaded inputs and the outputs the simulator writes.

Why apart from simulator/files.py: that store is a bounded, content-addressed cache for generated
images; batch files have ids, owners (the provider surface that stored them: OpenAI's files are not
Groq's), purposes and explicit deletion, and must not be evicted while a batch still needs them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(eq=False)
class StoredFile:
    id: str
    provider: str
    filename: str
    purpose: str
    data: bytes
    mime: str = "application/jsonl"
    created_at: float = 0.0
    expires_at: float | None = None
    generated: bool = False  # written by the simulator (batch output), not uploaded


class Shelf:
    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}

    def put(self, file: StoredFile) -> StoredFile:
        file.created_at = file.created_at or time.time()
        self._files[file.id] = file
        return file

    def get(self, provider: str, file_id: str) -> StoredFile | None:
        file = self._files.get(file_id)
        return file if file is not None and file.provider == provider else None

    def delete(self, provider: str, file_id: str) -> bool:
        if self.get(provider, file_id) is None:
            return False
        del self._files[file_id]
        return True

    def newest_first(self, provider: str) -> list[StoredFile]:
        return [f for f in reversed(self._files.values()) if f.provider == provider]

    def clear(self) -> None:
        self._files.clear()
