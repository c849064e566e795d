"""How a stored result body names its files, and how a reader shows them.

A result body names its media files `mmq-file:<n>`, never a job's URL: the body does not depend on the
job that made it, so a cache hit shares it as is. Readers (API, exports) turn each reference into the
reading job's API path (`/api/jobs/{job_id}/files/{n}`).
"""

from __future__ import annotations

from typing import Any

FILE_REF = "mmq-file:"


def file_url(job_id: str, n: int) -> str:
    return f"/api/jobs/{job_id}/files/{n}"


def file_ref(n: int) -> str:
    return f"{FILE_REF}{n}"


def resolve_file_refs(body: Any, job_id: str) -> Any:
    """A stored body as `job_id` shows it: every `mmq-file:<n>` becomes that job's file URL."""
    if isinstance(body, dict):
        return {k: resolve_file_refs(v, job_id) for k, v in body.items()}
    if isinstance(body, list):
        return [resolve_file_refs(v, job_id) for v in body]
    if isinstance(body, str) and body.startswith(FILE_REF) and body[len(FILE_REF) :].isdigit():
        return file_url(job_id, int(body[len(FILE_REF) :]))
    return body
