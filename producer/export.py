"""Write a batch's results to local files: the output JSONL, and optionally every media file."""

from __future__ import annotations

import logging
from pathlib import Path

from mmq.contract import JobRecord
from mmq.media import extension_for
from mmq.records import Records
from mmq.storage import BlobNotFound, Storage
from producer.safe_names import OutputNames
from producer.views import iter_output

log = logging.getLogger(__name__)


async def export_batch(
    records: Records, storage: Storage, batch_id: str, out_jsonl: Path, files_dir: Path | None = None
) -> int:
    """Returns the number of media files written to `files_dir`: one per result file, named after its
    job's custom_id in one flat folder, each name unique in this export (producer/safe_names.py). A file
    that cannot be read or written is skipped with a warning; the others are still written."""
    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    with out_jsonl.open("wb") as f:
        async for chunk in iter_output(records, storage, batch_id):
            f.write(chunk)
    if files_dir is None:
        return 0
    files_dir.mkdir(parents=True, exist_ok=True)
    # the output JSONL may sit in the same folder: no job's file may take its name
    same_folder = out_jsonl.parent.resolve() == files_dir.resolve()
    names = OutputNames(keep_dirs=False, reserved=[out_jsonl.name] if same_folder else [])
    written = 0
    async for ids in records.iter_batch_job_ids(batch_id):
        for job in await records.get_jobs(ids):
            if job is not None and job.result:
                written += await _export_job(job, storage, files_dir, names)
    return written


async def _export_job(job: JobRecord, storage: Storage, files_dir: Path, names: OutputNames) -> int:
    assert job.result is not None
    files = job.result.files
    suffixes = [
        (f"-{n}" if len(files) > 1 else "") + extension_for(rf.content_type) for n, rf in enumerate(files)
    ]
    written = 0
    for rf, rel in zip(files, names.claim(job.custom_id or job.id, suffixes), strict=True):
        try:
            (files_dir / rel).write_bytes(await storage.get(rf.key))
        except (BlobNotFound, OSError) as e:  # this file fails alone: the count stays what is on disk
            log.warning("mmq: %s (custom_id %r) not written: %s", rel, job.custom_id or job.id, e)
            continue
        written += 1
    return written
