"""SRT and WebVTT: timed cues to subtitle text and back, in one place.

Two sides write subtitles and must write them alike: the worker, when a provider that has no subtitle
output of its own (Deepgram) is asked for `response_format=srt|vtt` and the answer is built from its word
timings; and the front, when `mmq transcribe --files srt,vtt` turns a stored transcription (verbose_json
segments, or an srt/vtt answer read back with `parse_cues`) into files on disk. Both write OpenAI's
layout: SRT numbers its cues and times them `HH:MM:SS,mmm`, WebVTT starts with `WEBVTT` and times them
`HH:MM:SS.mmm`; every cue ends with a blank line.

A cue's text never contains a blank line (it would end the cue early) nor `-->` (it would read as a
timing line). The provider simulator keeps its own one-cue writer on purpose: it stands in for the
providers and imports nothing of the engine (pyproject's import contract lists this module too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple


class Cue(NamedTuple):
    """One timed piece of text; a plain (start, end, text) tuple works wherever a Cue does."""

    start: float  # seconds
    end: float
    text: str


def timestamp(seconds: float, sep: str) -> str:
    """`HH:MM:SS<sep>mmm`, rounded to the millisecond (sep is `,` for SRT, `.` for WebVTT)."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def parse_timestamp(value: str) -> float:
    """Seconds of `HH:MM:SS,mmm`, `HH:MM:SS.mmm` or WebVTT's short `MM:SS.mmm`."""
    parts = value.strip().replace(",", ".").split(":")
    seconds = float(parts[-1])
    for n, part in enumerate(reversed(parts[:-1]), start=1):
        seconds += int(part) * 60**n
    return seconds


def cue_text(text: str) -> str:
    """The text as a cue can carry it: no blank line, no `-->`, never empty."""
    # a blank line would end the cue early and "-->" would read as a timing line
    lines = [line for line in text.replace("-->", "->").splitlines() if line.strip()]
    return "\n".join(lines) or " "


def render_srt(cues: Iterable[tuple[float, float, str]]) -> str:
    return "".join(
        f"{n}\n{timestamp(start, ',')} --> {timestamp(end, ',')}\n{cue_text(text)}\n\n"
        for n, (start, end, text) in enumerate(cues, 1)
    )


def render_vtt(cues: Iterable[tuple[float, float, str]]) -> str:
    body = "".join(
        f"{timestamp(start, '.')} --> {timestamp(end, '.')}\n{cue_text(text)}\n\n"
        for start, end, text in cues
    )
    return "WEBVTT\n\n" + body


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
            cues.append(
                Cue(parse_timestamp(start), parse_timestamp(end.split()[0]), "\n".join(lines[timing + 1 :]))
            )
        except (ValueError, IndexError):
            continue
    return cues
