"""Audio container sniffing and subtitle rendering for the transcription routes.

The SRT/VTT writer here is the simulator's own on purpose: it plays OpenAI answering one cue for the
whole recording, and the simulator imports nothing of the engine (pyproject's import contract), so that
it stays an independent stand-in for the providers. The engine's writer is mmq/subtitles.py; both write
the same layout, and a change to one is not silently copied into what the e2e tests compare it against.
"""

from __future__ import annotations

import io
import wave

SUPPORTED_FORMATS_MESSAGE = (
    "Invalid file format. Supported formats: "
    "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"
)


def sniff_audio(data: bytes) -> str | None:
    """Container by magic bytes, like the real API does (the filename extension is not trusted)."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if len(data) >= 8 and data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    return None


def wav_duration(data: bytes) -> float:
    """Seconds from the WAV header; raises wave.Error for a WAV that does not parse."""
    try:
        with wave.open(io.BytesIO(data), "rb") as src:
            rate, frames = src.getframerate(), src.getnframes()
    except wave.Error:
        raise
    except Exception as exc:  # wave also leaks EOFError/RuntimeError/struct.error on broken chunks
        raise wave.Error(f"unreadable WAV: {exc!r}") from exc
    if rate <= 0:
        raise wave.Error("bad sample rate")
    return frames / rate


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def _cue_text(text: str) -> str:
    # a blank line would end the cue early and "-->" would read as a timing line
    lines = [line for line in text.replace("-->", "->").splitlines() if line.strip()]
    return "\n".join(lines) or " "


def to_srt(text: str, duration: float) -> str:
    return f"1\n{_timestamp(0, ',')} --> {_timestamp(duration, ',')}\n{_cue_text(text)}\n\n"


def to_vtt(text: str, duration: float) -> str:
    return f"WEBVTT\n\n{_timestamp(0, '.')} --> {_timestamp(duration, '.')}\n{_cue_text(text)}\n\n"
