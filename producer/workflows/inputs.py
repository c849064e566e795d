"""Workflow inputs: a folder of images or audio, or a text file of one prompt per line, becomes BatchLines.

Builders are generators (the producer streams them into Redis); the only thing held whole is the sorted
list of file names of a scanned folder. A file that cannot be read at all stops the command before
anything is submitted (WorkflowError); one that vanishes mid-way fails its own job.
"""

from __future__ import annotations

import csv
import mimetypes
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmq.media import AUDIO_TYPES, IMAGE_TYPES, sniff, to_data_url
from producer.submit import BatchLine

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
AUDIO_EXTENSIONS = frozenset(
    {".mp3", ".mp4", ".mpeg", ".mpga", ".m4a", ".wav", ".webm", ".ogg", ".oga", ".opus", ".flac"}
)
DEFAULT_CAPTION_PROMPT = "Write a short, factual caption for this image."
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


def chat_line(custom_id: str, body: dict[str, Any], line_no: int | None = None) -> BatchLine:
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
        yield chat_line(custom_id, caption_body(url, opts.prompt, opts))


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
        raise WorkflowError(f"--write: unknown {', '.join(sorted(unknown))} (use txt, srt, vtt)")
    timed = files & {"srt", "vtt"}
    if requested is None:
        return "verbose_json" if timed else "json"
    if timed and requested in ("json", "text"):
        raise WorkflowError(
            f"--write {','.join(sorted(timed))} needs timings: use --format verbose_json, srt or vtt "
            f"(not {requested})"
        )
    return requested


# ============================================================================================ text lines
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
