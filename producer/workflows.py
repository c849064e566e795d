"""Catalog and recording workflows: a folder, a CSV or a text file becomes BatchLines; a finished batch
becomes CSV / JSONL / TXT / SRT / VTT / media files on disk.

Builders are generators (the producer streams them into Redis); the only thing held whole is the sorted
list of file names of a scanned folder. Writers read the batch from its records and storage, so they
work the same right after a submit and when re-attaching to a batch days later.
"""

from __future__ import annotations

import asyncio
import csv
import json
import mimetypes
import os
import re
import unicodedata
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mmq.contract import JobRecord, JobStatus
from mmq.media import AUDIO_TYPES, IMAGE_TYPES, extension_for, sniff, to_data_url
from mmq.records import Records
from mmq.storage import BlobNotFound, Storage
from producer.safe_names import OutputNames
from producer.submit import BatchLine

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
AUDIO_EXTENSIONS = frozenset(
    {".mp3", ".mp4", ".mpeg", ".mpga", ".m4a", ".wav", ".webm", ".ogg", ".oga", ".opus", ".flac"}
)
DEFAULT_CAPTION_PROMPT = "Write a short, factual caption for this image."
CSV_COLUMNS = ("id", "url", "prompt")
SUBTITLE_FILES = frozenset({"txt", "srt", "vtt"})


class WorkflowError(ValueError):
    """Input that cannot become a batch at all (a missing folder, a bad CSV header)."""


# ============================================================================================ scanning
@dataclass
class Scan:
    """The media files of a folder: paths relative to `root` in a stable (sorted) order."""

    root: Path
    files: list[Path]
    skipped: int = 0


def _is_media(path: Path, extensions: frozenset[str], types: frozenset[str]) -> bool:
    if path.suffix.lower() in extensions:
        return True
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return sniff(head) in types  # a photo without an extension still counts


def scan_folder(root: Path, extensions: frozenset[str], types: frozenset[str]) -> Scan:
    """Every media file under `root`, recursively. Hidden folders (.git, .thumbnails) are not entered;
    every other file that is not media is counted in `skipped`."""
    if not root.is_dir():
        raise WorkflowError(f"{root} is not a folder")
    files: list[Path] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if _is_media(path, extensions, types):
                files.append(path.relative_to(root))
            else:
                skipped += 1
    files.sort(key=lambda p: p.as_posix())
    return Scan(root=root, files=files, skipped=skipped)


def scan_images(root: Path) -> Scan:
    return scan_folder(root, IMAGE_EXTENSIONS, IMAGE_TYPES)


def scan_audio(root: Path) -> Scan:
    return scan_folder(root, AUDIO_EXTENSIONS, AUDIO_TYPES)


def image_data_url(path: Path) -> str:
    """The file as a data: URL typed by its bytes (the producer checks them again and stores a blob)."""
    data = path.read_bytes()
    mime = sniff(data) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return to_data_url(data, mime)


# ============================================================================================ caption
@dataclass
class CaptionOptions:
    model: str = "gpt-4o-mini"
    prompt: str = DEFAULT_CAPTION_PROMPT
    max_tokens: int | None = None
    detail: str = "auto"


def caption_body(image_url: str, prompt: str, opts: CaptionOptions) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": opts.model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": image_url, "detail": opts.detail}},
                ],
            }
        ],
    }
    if opts.max_tokens:
        body["max_tokens"] = opts.max_tokens
    return body


def _chat_line(custom_id: str, body: dict[str, Any], line_no: int | None = None) -> BatchLine:
    return BatchLine(body=body, url="/v1/chat/completions", custom_id=custom_id, line_no=line_no)


def caption_lines_from_folder(scan: Scan, opts: CaptionOptions) -> Iterator[BatchLine]:
    """One vision job per image; custom_id is the path relative to the folder (a/b/c.jpg)."""
    for rel in scan.files:
        custom_id = rel.as_posix()
        try:
            url = image_data_url(scan.root / rel)
        except OSError as e:  # vanished or unreadable since the scan: a failed job, not a crash
            yield BatchLine(
                body=None, custom_id=custom_id, error=f"cannot read {custom_id} ({e.strerror or e})"
            )
            continue
        yield _chat_line(custom_id, caption_body(url, opts.prompt, opts))


@dataclass
class CsvRow:
    line_no: int
    id: str
    url: str
    prompt: str | None
    error: str | None = None


def _check_header(fieldnames: list[str] | None, path: Path) -> list[str]:
    names = [(n or "").strip().lower() for n in fieldnames or []]
    expected = "id,url[,prompt]"
    if not names:
        raise WorkflowError(f"{path}: empty file; the first line must be the header {expected}")
    unknown = [n for n in names if n not in CSV_COLUMNS]
    missing = [n for n in ("id", "url") if n not in names]
    if unknown or missing or len(set(names)) != len(names):
        what = []
        if missing:
            what.append("missing " + ", ".join(missing))
        if unknown:
            what.append("unknown " + ", ".join(repr(n) for n in unknown))
        if len(set(names)) != len(names):
            what.append("repeated column")
        raise WorkflowError(f"{path}: header must be {expected}, got {','.join(names)} ({'; '.join(what)})")
    return names


def check_text_file(path: Path, *, as_csv: bool = False) -> None:
    """Reads the file once, so that bad encoding or broken CSV stops the command before anything is
    submitted, not half-way through a batch. Raises WorkflowError naming the line."""
    try:
        with path.open("rb") as raw:  # line by line in bytes: the error names the exact line
            for line_no, line in enumerate(raw, start=1):
                try:
                    line.decode("utf-8-sig")
                except UnicodeDecodeError as e:
                    raise WorkflowError(f"{path}: line {line_no} is not UTF-8 text ({e.reason})") from None
        if as_csv:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                try:
                    for _ in reader:
                        pass
                except csv.Error as e:
                    raise WorkflowError(f"{path}: unreadable CSV at line {reader.line_num} ({e})") from None
    except OSError as e:
        raise WorkflowError(f"{path}: {e.strerror or e}") from None


def read_caption_csv(path: Path) -> Iterator[CsvRow]:
    """Rows of an `id,url[,prompt]` CSV. The file and its header are checked now (raises WorkflowError),
    the rows are read lazily."""
    check_text_file(path, as_csv=True)
    f: TextIO = path.open(newline="", encoding="utf-8-sig")  # -sig: Excel writes a BOM
    try:
        reader = csv.reader(f)
        names = _check_header(next(reader, None), path)
    except BaseException:
        f.close()
        raise
    return _csv_rows(f, reader, names)


def _csv_rows(f: TextIO, reader: Any, names: list[str]) -> Iterator[CsvRow]:
    with f:
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank lines
            row = dict(zip(names, (v.strip() for v in values), strict=False))
            error = None
            if any(v.strip() for v in values[len(names) :]):
                error = (
                    f"{len(values)} fields but the header has {len(names)} (quote values containing commas)"
                )
            prompt = row.get("prompt") or None
            yield CsvRow(reader.line_num, row.get("id", ""), row.get("url", ""), prompt, error)


def _row_image_url(row: CsvRow, base_dir: Path) -> str:
    """An http(s)/data: URL as given (the provider fetches it), a local path as a data: URL.
    Raises ValueError with the reason."""
    if not row.url:
        raise ValueError("empty url")
    if row.url.startswith(("http://", "https://", "data:")):
        return row.url
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", row.url):
        raise ValueError(f"url {row.url!r}: only http(s) URLs or local paths are supported")
    path = (base_dir / Path(row.url).expanduser()) if not Path(row.url).is_absolute() else Path(row.url)
    try:
        return image_data_url(path)
    except OSError as e:
        raise ValueError(f"cannot read {row.url!r} ({e.strerror or e})") from None


def caption_lines_from_csv(path: Path, opts: CaptionOptions) -> Iterator[BatchLine]:
    """One vision job per CSV row; custom_id is the id column. A row that cannot become a job (empty or
    repeated id, unreadable file) becomes a failed job naming the CSV line."""
    rows = read_caption_csv(path)
    return _csv_lines(rows, path.parent, opts)


def _row_problem(row: CsvRow, seen: dict[str, int]) -> str | None:
    if row.error:
        return row.error
    if not row.id:
        return "empty id"
    if row.id in seen:  # the outputs are keyed by id: a repeat would be ambiguous
        return f"id {row.id!r} repeats line {seen[row.id]}"
    seen[row.id] = row.line_no
    return None


def _csv_lines(rows: Iterable[CsvRow], base_dir: Path, opts: CaptionOptions) -> Iterator[BatchLine]:
    seen: dict[str, int] = {}
    for row in rows:
        error = _row_problem(row, seen)
        if error is None:
            try:
                url = _row_image_url(row, base_dir)
            except ValueError as e:
                error = str(e)
        if error is not None:
            yield BatchLine(body=None, custom_id=row.id or None, line_no=row.line_no, error=error)
            continue
        yield _chat_line(row.id, caption_body(url, row.prompt or opts.prompt, opts), row.line_no)


# ============================================================================================ transcribe
@dataclass
class TranscribeOptions:
    model: str = "whisper-1"
    translate: bool = False
    language: str | None = None
    response_format: str = "json"


def transcription_lines(scan: Scan, opts: TranscribeOptions) -> Iterator[BatchLine]:
    """One transcription (or translation) job per audio file. `file` is the path relative to the
    folder: the producer (allow_local_paths, base_dir = the folder) reads it into blob storage."""
    url = "/v1/audio/translations" if opts.translate else "/v1/audio/transcriptions"
    for rel in scan.files:
        body: dict[str, Any] = {
            "model": opts.model,
            "file": rel.as_posix(),
            "response_format": opts.response_format,
        }
        if opts.language and not opts.translate:  # translations always answer in English
            body["language"] = opts.language
        yield BatchLine(body=body, url=url, custom_id=rel.as_posix())


def transcript_format(requested: str | None, files: set[str]) -> str:
    """The response_format to ask for: subtitles need timings, so srt/vtt files default to verbose_json.
    Raises WorkflowError when the asked format cannot give the asked files."""
    unknown = files - SUBTITLE_FILES
    if unknown:
        raise WorkflowError(f"--files: unknown {', '.join(sorted(unknown))} (use txt, srt, vtt)")
    timed = files & {"srt", "vtt"}
    if requested is None:
        return "verbose_json" if timed else "json"
    if timed and requested in ("json", "text"):
        raise WorkflowError(
            f"--files {','.join(sorted(timed))} needs timings: use --format verbose_json, srt or vtt "
            f"(not {requested})"
        )
    return requested


# ============================================================================================ text lines
def slug(text: str, max_len: int = 40) -> str:
    """ASCII words joined by '-', for file names ("A red van!" -> "a-red-van")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > max_len:
            break
        out = candidate
    return out or (words[0][:max_len] if words else "")


def line_id(line_no: int, text: str) -> str:
    """custom_id of a text line: zero-padded line number (sorts in file order) plus a slug."""
    s = slug(text)
    return f"{line_no:04d}-{s}" if s else f"{line_no:04d}"


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-empty line, read lazily."""
    with path.open(encoding="utf-8-sig") as f:
        for line_no, raw in enumerate(f, start=1):
            text = raw.strip()
            if text:
                yield line_no, text


def image_lines(
    path: Path, *, model: str | None = None, size: str | None = None, n: int | None = None
) -> Iterator[BatchLine]:
    for line_no, prompt in text_lines(path):
        body: dict[str, Any] = {"prompt": prompt}
        body.update({k: v for k, v in {"model": model, "size": size, "n": n}.items() if v is not None})
        yield BatchLine(
            body=body, url="/v1/images/generations", custom_id=line_id(line_no, prompt), line_no=line_no
        )


def speech_lines(path: Path, *, model: str, voice: str, response_format: str) -> Iterator[BatchLine]:
    for line_no, text in text_lines(path):
        body = {"model": model, "input": text, "voice": voice, "response_format": response_format}
        yield BatchLine(body=body, url="/v1/audio/speech", custom_id=line_id(line_no, text), line_no=line_no)


# ============================================================================================ reading a batch
async def iter_jobs(records: Records, batch_id: str, chunk: int = 200) -> AsyncIterator[JobRecord]:
    """The batch's jobs in submission order."""
    async for ids in records.iter_batch_job_ids(batch_id, chunk=chunk):
        for job in await records.get_jobs(ids):
            if job is not None:
                yield job


async def result_body(job: JobRecord, storage: Storage) -> Any:
    if job.status is not JobStatus.succeeded or not job.result:
        return None
    try:
        return json.loads(await storage.get(job.result.body_key))
    except BlobNotFound:
        return None


async def job_request(job: JobRecord, storage: Storage) -> dict[str, Any]:
    """The request as stored (small ones inline, large ones in storage); {} if it is gone."""
    if job.request is not None:
        return job.request
    if job.request_key:
        try:
            return json.loads(await storage.get(job.request_key))
        except BlobNotFound:
            return {}
    return {}


def job_error(job: JobRecord) -> str | None:
    if job.status is JobStatus.succeeded:
        return None
    if job.error:
        return job.error.message
    if job.status is JobStatus.cancelled:
        return "cancelled"
    return f"not finished ({job.status.value})"


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


async def _with_bodies(
    records: Records, storage: Storage, batch_id: str, chunk: int = 64
) -> AsyncIterator[tuple[JobRecord, Any]]:
    """(job, result body) in submission order; bodies are read concurrently, a chunk at a time."""
    pending: list[JobRecord] = []

    async def flush() -> list[tuple[JobRecord, Any]]:
        bodies = await asyncio.gather(*(result_body(j, storage) for j in pending))
        out = list(zip(pending, bodies, strict=True))
        pending.clear()
        return out

    async for job in iter_jobs(records, batch_id):
        pending.append(job)
        if len(pending) >= chunk:
            for pair in await flush():
                yield pair
    for pair in await flush():
        yield pair


# ============================================================================================ writers
def caption_text(body: Any) -> str:
    """The assistant text of a chat.completion ("" when there is none)."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    if isinstance(content, list):  # some compatible servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


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
        async for job, body in _with_bodies(records, storage, batch_id):
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


# ------------------------------------------------------------------------------ subtitles
@dataclass
class Cue:
    start: float
    end: float
    text: str


def _ts(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def _parse_ts(value: str) -> float:
    parts = value.strip().replace(",", ".").split(":")
    seconds = float(parts[-1])
    for n, part in enumerate(reversed(parts[:-1]), start=1):
        seconds += int(part) * 60**n
    return seconds


def parse_cues(text: str) -> list[Cue]:
    """Cues of an SRT or WebVTT document (blocks with an `a --> b` timing line)."""
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = block.split("\n")
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue  # WEBVTT header, NOTE, STYLE
        start, _, end = lines[timing].partition("-->")
        try:
            cues.append(Cue(_parse_ts(start), _parse_ts(end.split()[0]), "\n".join(lines[timing + 1 :])))
        except (ValueError, IndexError):
            continue
    return cues


def _cue_text(text: str) -> str:
    # a blank line would end the cue early and "-->" would read as a timing line
    return "\n".join(line for line in text.replace("-->", "->").splitlines() if line.strip()) or " "


def render_srt(cues: list[Cue]) -> str:
    return "".join(
        f"{n}\n{_ts(c.start, ',')} --> {_ts(c.end, ',')}\n{_cue_text(c.text)}\n\n"
        for n, c in enumerate(cues, 1)
    )


def render_vtt(cues: list[Cue]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{_ts(c.start, '.')} --> {_ts(c.end, '.')}\n{_cue_text(c.text)}\n\n" for c in cues
    )


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
        async for job, body in _with_bodies(records, storage, batch_id):
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
        async for job, body in _with_bodies(records, storage, batch_id, chunk=16):
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
        async for job, body in _with_bodies(records, storage, batch_id, chunk=16):
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
