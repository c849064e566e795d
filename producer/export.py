"""Write a batch's results to local files: the output JSONL, and optionally every media file."""

from __future__ import annotations

from pathlib import Path

from producer.views import iter_output
from worker.media import extension_for
from worker.records import Records
from worker.storage import Storage, safe_segment


async def export_batch(
    records: Records, storage: Storage, batch_id: str, out_jsonl: Path, files_dir: Path | None = None
) -> int:
    """Returns the number of media files written to `files_dir`."""
    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    with out_jsonl.open("wb") as f:
        async for chunk in iter_output(records, storage, batch_id):
            f.write(chunk)
    if files_dir is None:
        return 0
    files_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    async for ids in records.iter_batch_job_ids(batch_id):
        for job in await records.get_jobs(ids):
            if job is None or not job.result:
                continue
            stem = safe_segment(job.custom_id or job.id)
            for n, rf in enumerate(job.result.files):
                suffix = f"-{n}" if len(job.result.files) > 1 else ""
                path = files_dir / f"{stem}{suffix}{extension_for(rf.content_type)}"
                path.write_bytes(await storage.get(rf.key))
                written += 1
    return written
