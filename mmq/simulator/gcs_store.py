"""The simulator's Cloud Storage: an in-memory object store, bucket → object name → bytes.

Why: Vertex AI batch prediction reads its input from Cloud Storage and writes its predictions there,
so the simulator that stands in for Vertex must also stand in for the bucket: the GCS JSON API routes
(gcs.py) upload, list, read and delete here, and the simulated batch jobs
(batches/vertex.py) read their input and write their output here. Kept apart from the routes, with
no imports of its own, so that the per-app state (state.py) can hold it without an import cycle.
Every bucket exists; objects are kept until deleted or the simulator is reset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(eq=False)
class GcsObject:
    bucket: str
    name: str
    data: bytes
    content_type: str
    generation: int
    created_at: float


def split_uri(uri: object) -> tuple[str, str] | None:
    """`gs://bucket/name` → (bucket, name), or None for anything else."""
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        return None
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return (bucket, name) if bucket and name else None


class GcsStore:
    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], GcsObject] = {}
        self._generation = 0

    def put(
        self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> GcsObject:
        """Writes (or overwrites, as a new generation) one object."""
        self._generation += 1
        obj = GcsObject(bucket, name, data, content_type, self._generation, time.time())
        self._objects[(bucket, name)] = obj
        return obj

    def get(self, bucket: str, name: str) -> GcsObject | None:
        return self._objects.get((bucket, name))

    def delete(self, bucket: str, name: str) -> bool:
        return self._objects.pop((bucket, name), None) is not None

    def listed(self, bucket: str, prefix: str = "") -> list[GcsObject]:
        """A bucket's objects whose names start with `prefix`, in name order (as the JSON API lists)."""
        return sorted(
            (o for (b, name), o in self._objects.items() if b == bucket and name.startswith(prefix)),
            key=lambda o: o.name,
        )

    def clear(self) -> None:
        self._objects.clear()
