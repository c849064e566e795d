"""Workflow outputs: a finished batch becomes friendly files on disk.

    caption          captions.csv (id,caption), captions.jsonl, errors.csv
    transcribe       transcripts.jsonl, plus the wanted .txt/.srt/.vtt per recording, mirroring the folder
    generate-images  one image file per generated image, images.jsonl
    speak            one audio file per line, speech.jsonl

Writers read the batch from its records and storage (reading.py), so they work the same right after a
submit and when re-attaching to a batch days later. Output names come from custom_ids and are made safe
and unique by producer.safe_names; a file that cannot be written fails its own row, not the run.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mmq.contract import JobRecord, JobStatus
from mmq.media import extension_for
from mmq.records import Records
from mmq.storage import BlobNotFound, Storage
from mmq.subtitles import Cue, parse_cues, render_srt, render_vtt
from producer.safe_names import OutputNames
from producer.workflows.reading import caption_text, job_error, job_request, with_bodies


def line_number(custom_id: str | None) -> int | None:
    match = re.match(r"^(\d+)(-|$)", custom_id or "")
    return int(match[1]) if match else None


@dataclass
class Written:
    """What a writer produced: counts and the files, for the closing message."""

    ok: int = 0
    failed: int = 0
    files: list[Path] = field(default_factory=list)
    media: int = 0  # per-job files (images, audio, subtitles)
    untimed: int = 0  # transcripts without timings, so without the .srt/.vtt that was asked for

    def count(self, job: JobRecord) -> None:
        if job.status is JobStatus.succeeded:
            self.ok += 1
        else:
            self.failed += 1


def _jsonl(fp: TextIO, obj: dict[str, Any]) -> None:
    fp.write(json.dumps(obj, ensure_ascii=False) + "\n")


async def write_captions(records: Records, storage: Storage, batch_id: str, out: Path) -> Written:
    """captions.jsonl (custom_id, job_id, caption, status, error), captions.csv (id,caption; a failed row
    has an empty caption) and errors.csv (id,error: one row per job that did not succeed)."""
    out.mkdir(parents=True, exist_ok=True)
    written = Written(files=[out / "captions.csv", out / "captions.jsonl", out / "errors.csv"])
    with (
        written.files[0].open("w", newline="", encoding="utf-8") as csv_f,
        written.files[1].open("w", encoding="utf-8") as jsonl_f,
        written.files[2].open("w", newline="", encoding="utf-8") as err_f,
    ):
        captions, errors = csv.writer(csv_f), csv.writer(err_f)
        captions.writerow(["id", "caption"])
        errors.writerow(["id", "error"])
        async for job, body in with_bodies(records, storage, batch_id):
            written.count(job)
            custom_id = job.custom_id or job.id
            caption, error = caption_text(body), job_error(job)
            captions.writerow([custom_id, caption])
            if error is not None:
                errors.writerow([custom_id, error])
            _jsonl(
                jsonl_f,
                {
                    "custom_id": custom_id,
                    "job_id": job.id,
                    "caption": caption,
                    "status": job.status.value,
                    "error": error,
                },
            )
    return written


def transcript_parts(body: Any) -> tuple[str, list[Cue] | None]:
    """(plain text, cues or None) from any stored transcription result: json / verbose_json bodies, or
    the {"text", "format"} record of a text / srt / vtt answer."""
    if not isinstance(body, dict):
        return "", None
    text = body.get("text") or ""
    fmt = body.get("format")
    if fmt in ("srt", "vtt"):
        cues = parse_cues(text)
        return " ".join(c.text.replace("\n", " ").strip() for c in cues), cues
    segments = body.get("segments")
    if isinstance(segments, list):
        cues = [
            Cue(float(s.get("start", 0)), float(s.get("end", 0)), str(s.get("text", "")).strip())
            for s in segments
            if isinstance(s, dict)
        ]
        return text, cues
    return text, None


def transcript_files(body: Any, wanted: set[str]) -> tuple[str, dict[str, str]]:
    """(plain text, {extension: file content}) for the wanted txt/srt/vtt files that the body allows."""
    text, cues = transcript_parts(body)
    files: dict[str, str] = {}
    if "txt" in wanted:
        files["txt"] = text + "\n"
    if cues is not None:
        if "srt" in wanted:
            files["srt"] = render_srt(cues)
        if "vtt" in wanted:
            files["vtt"] = render_vtt(cues)
    return text, files


def _write_file(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)


def _write_error(rel: str, e: OSError) -> str:
    return f"cannot write {rel}: {e.strerror or e}"


async def write_transcripts(
    records: Records, storage: Storage, batch_id: str, out: Path, wanted: set[str]
) -> Written:
    """transcripts.jsonl (custom_id, job_id, text, status, error, files) plus, per input file, the
    wanted .txt/.srt/.vtt under `out`, mirroring the input folder."""
    out.mkdir(parents=True, exist_ok=True)
    written = Written(files=[out / "transcripts.jsonl"])
    # mirroring the inputs: `a.wav` gets a.srt, or a.wav.srt when a.mp3 took that (see safe_names)
    names = OutputNames(reserved=[p.name for p in written.files])
    with written.files[0].open("w", encoding="utf-8") as index:
        async for job, body in with_bodies(records, storage, batch_id):
            written.count(job)
            custom_id = job.custom_id or job.id
            text, contents = transcript_files(body, wanted) if body is not None else ("", {})
            timed = wanted & {"srt", "vtt"}
            if body is not None and timed and not timed & set(contents):
                written.untimed += 1
            paths: list[str] = []
            problem = None
            rels = names.claim(custom_id, ["." + ext for ext in contents], replace_ext=True)
            for rel, content in zip(rels, contents.values(), strict=True):
                try:
                    _write_file(out / rel, content)
                except OSError as e:  # only this recording's row says so; the others are written
                    problem = _write_error(rel, e)
                    break
                paths.append(rel)
            written.media += len(paths)
            row = {
                "custom_id": custom_id,
                "job_id": job.id,
                "text": text,
                "status": job.status.value,
                "error": job_error(job) or problem,
                "files": paths,
            }
            if isinstance(body, dict):
                row.update({k: body[k] for k in ("language", "duration") if k in body})
            _jsonl(index, row)
    return written


async def _save_files(
    job: JobRecord, storage: Storage, out: Path, names: OutputNames
) -> tuple[list[str], str | None]:
    """The job's result files as <custom_id>[-n].<ext> under `out` (names unique in this run, see
    safe_names); returns their relative paths and, if one could not be written, why."""
    if job.status is not JobStatus.succeeded or not job.result:
        return [], None
    files = job.result.files
    suffixes = [
        (f"-{n + 1}" if len(files) > 1 else "") + extension_for(rf.content_type) for n, rf in enumerate(files)
    ]
    saved = []
    for rf, rel in zip(files, names.claim(job.custom_id or job.id, suffixes), strict=True):
        try:
            data = await storage.get(rf.key)
        except BlobNotFound:
            continue
        try:
            await asyncio.to_thread(_write_file, out / rel, data)
        except OSError as e:  # only this job's row says so; the others are written
            return saved, _write_error(rel, e)
        saved.append(rel)
    return saved, None


async def write_images(records: Records, storage: Storage, batch_id: str, out: Path) -> Written:
    """One PNG (or whatever the provider sent) per generated image, named <line>-<slug>[-n].png, and
    images.jsonl (line, custom_id, job_id, prompt, status, error, files, revised_prompt)."""
    out.mkdir(parents=True, exist_ok=True)
    written = Written(files=[out / "images.jsonl"])
    names = OutputNames(reserved=[p.name for p in written.files])
    with written.files[0].open("w", encoding="utf-8") as index:
        async for job, body in with_bodies(records, storage, batch_id, chunk=16):
            written.count(job)
            files, problem = await _save_files(job, storage, out, names)
            written.media += len(files)
            revised = None
            if isinstance(body, dict) and body.get("data"):
                revised = body["data"][0].get("revised_prompt")
            request = await job_request(job, storage)
            _jsonl(
                index,
                {
                    "line": line_number(job.custom_id),
                    "custom_id": job.custom_id,
                    "job_id": job.id,
                    "prompt": request.get("prompt"),
                    "status": job.status.value,
                    "error": job_error(job) or problem,
                    "files": files,
                    "revised_prompt": revised,
                },
            )
    return written


async def write_speech(records: Records, storage: Storage, batch_id: str, out: Path) -> Written:
    """One audio file per line, named <line>-<slug>.<ext> — the extension of the bytes' real type (the
    simulator answers WAV whatever was asked) — and speech.jsonl (line, custom_id, job_id, text, status,
    error, file, content_type, requested_format)."""
    out.mkdir(parents=True, exist_ok=True)
    written = Written(files=[out / "speech.jsonl"])
    names = OutputNames(reserved=[p.name for p in written.files])
    with written.files[0].open("w", encoding="utf-8") as index:
        async for job, body in with_bodies(records, storage, batch_id, chunk=16):
            written.count(job)
            files, problem = await _save_files(job, storage, out, names)
            written.media += len(files)
            request = await job_request(job, storage)
            _jsonl(
                index,
                {
                    "line": line_number(job.custom_id),
                    "custom_id": job.custom_id,
                    "job_id": job.id,
                    "text": request.get("input"),
                    "status": job.status.value,
                    "error": job_error(job) or problem,
                    "file": files[0] if files else None,
                    "content_type": body.get("content_type") if isinstance(body, dict) else None,
                    "requested_format": request.get("response_format"),
                },
            )
    return written
