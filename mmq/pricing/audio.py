"""Audio duration read from the audio bytes themselves: what a transcription is billed by.

Why here: a quote must know how long each recording is without storing it or calling anyone, and a job
whose provider reports no duration is costed from the same figure. Nothing here trusts a file name or
a declared type: the container is sniffed from the bytes.

How exact:
- WAV (RIFF/RIFX/RF64): exact, from the header (data bytes / byte rate; the `fact` sample count for
  compressed WAV). A data chunk that claims more than the bytes present counts what is present.
- FLAC: exact, from STREAMINFO (total samples / sample rate).
- WebM/Matroska: exact when the Segment Info carries a Duration (recorders that stream often leave it
  out: then unknown).
- MP3, OGG (Vorbis/Opus/FLAC), M4A/MP4, AIFF and the rest: through mutagen when it is installed (exact
  from the container's header; CBR MP3 without a Xing/VBRI header is estimated from its bit rate).
- Anything else, or without mutagen: unknown (None), with the reason in probe_audio's answer; a quote
  then says how many jobs it could not price instead of guessing.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

try:  # optional: MP3/OGG/M4A durations
    import mutagen
except ImportError:  # pragma: no cover - exercised only where mutagen is missing
    mutagen = None


@dataclass(frozen=True)
class AudioProbe:
    seconds: float | None
    container: str | None  # wav, flac, webm, mp3, ogg, mp4, ... (sniffed)
    how: str | None = None  # "header" (parsed here) or "mutagen"
    reason: str | None = None  # why seconds is None


def sniff_container(data: bytes) -> str | None:
    """The audio container by magic bytes."""
    if len(data) >= 12 and data[:4] in (b"RIFF", b"RIFX", b"RF64") and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC" or (data[:3] == b"ID3" and _after_id3(data)[:4] == b"fLaC"):
        return "flac"
    if data[:3] == b"ID3" or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    if data[:4] == b"OggS":
        return "ogg"
    if len(data) >= 8 and data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if len(data) >= 12 and data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    return None


def _after_id3(data: bytes) -> bytes:
    if len(data) < 10 or data[:3] != b"ID3":
        return data
    size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
    footer = 10 if data[5] & 0x10 else 0
    return data[10 + size + footer :]


# -------------------------------------------------------------------------------------------- WAV
def wav_seconds(data: bytes) -> float | None:
    """Seconds of a WAV file from its header, or None when the header does not parse."""
    if len(data) < 12 or data[8:12] != b"WAVE":
        return None
    endian = ">" if data[:4] == b"RIFX" else "<"
    pos = 12
    fmt: tuple[int, int, int, int, int] | None = None
    fact_samples: int | None = None
    ds64_data: int | None = None
    data_size: int | None = None
    while pos + 8 <= len(data):
        chunk = data[pos : pos + 4]
        (size,) = struct.unpack(endian + "I", data[pos + 4 : pos + 8])
        body = pos + 8
        if chunk == b"ds64" and size >= 16 and body + 16 <= len(data):
            ds64_data = struct.unpack(endian + "Q", data[body + 8 : body + 16])[0]
        elif chunk == b"fmt " and size >= 14 and body + 14 <= len(data):
            fmt = struct.unpack(endian + "HHIIH", data[body : body + 14])
        elif chunk == b"fact" and size >= 4 and body + 4 <= len(data):
            (fact_samples,) = struct.unpack(endian + "I", data[body : body + 4])
        elif chunk == b"data":
            available = len(data) - body
            declared = ds64_data if size == 0xFFFFFFFF and ds64_data is not None else size
            # a streaming writer leaves 0 or 0xFFFFFFFF; a cut file declares more than it holds
            data_size = available if declared in (0, 0xFFFFFFFF) else min(declared, available)
            break
        pos = body + size + (size & 1)
    if fmt is None or data_size is None:
        return None
    tag, _channels, rate, byte_rate, _block_align = fmt
    if tag not in (1, 3, 0xFFFE) and fact_samples and rate:
        return fact_samples / rate
    return data_size / byte_rate if byte_rate else None


# ------------------------------------------------------------------------------------------- FLAC
def flac_seconds(data: bytes) -> float | None:
    """Seconds from FLAC's STREAMINFO block, or None (no STREAMINFO, or total samples left unknown)."""
    data = _after_id3(data)
    if data[:4] != b"fLaC" or len(data) < 8 + 18 or data[4] & 0x7F != 0:
        return None
    info = data[8:26]
    rate = int.from_bytes(info[10:13], "big") >> 4
    total = int.from_bytes(info[13:18], "big") & 0xFFFFFFFFF
    return total / rate if rate and total else None


# ------------------------------------------------------------------------------------ WebM / MKV
_SEGMENT, _INFO, _TIMECODE_SCALE, _DURATION = 0x18538067, 0x1549A966, 0x2AD7B1, 0x4489
_EBML_HEADER = 0x1A45DFA3


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, next position, all value bits set) of an EBML variable-size integer."""
    if pos >= len(data):
        raise ValueError("truncated")
    first, length, marker = data[pos], 1, 0x80
    while length <= 8 and not first & marker:
        marker >>= 1
        length += 1
    if length > 8 or pos + length > len(data):
        raise ValueError("bad variable-size integer")
    value = first if keep_marker else first & (marker - 1)
    for byte in data[pos + 1 : pos + length]:
        value = value << 8 | byte
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return value, pos + length, unknown


def webm_seconds(data: bytes) -> float | None:
    """Seconds from a WebM/Matroska Segment Info Duration x TimecodeScale, or None without one."""
    try:
        pos = 0
        while pos < len(data):
            element, pos, _ = _vint(data, pos, keep_marker=True)
            size, pos, unknown = _vint(data, pos, keep_marker=False)
            if element == _EBML_HEADER:
                pos += size
                continue
            if element != _SEGMENT:
                return None
            end = len(data) if unknown else min(len(data), pos + size)
            while pos < end:
                child, pos, _ = _vint(data, pos, keep_marker=True)
                child_size, pos, child_unknown = _vint(data, pos, keep_marker=False)
                if child == _INFO and not child_unknown:
                    return _info_seconds(data[pos : pos + child_size])
                if child_unknown:
                    return None
                pos += child_size
            return None
    except ValueError:
        return None
    return None


def _info_seconds(info: bytes) -> float | None:
    pos, scale, duration = 0, 1_000_000, None
    while pos < len(info):
        element, pos, _ = _vint(info, pos, keep_marker=True)
        size, pos, _ = _vint(info, pos, keep_marker=False)
        value = info[pos : pos + size]
        if element == _TIMECODE_SCALE and value:
            scale = int.from_bytes(value, "big")
        elif element == _DURATION and size in (4, 8):
            duration = struct.unpack(">f" if size == 4 else ">d", value)[0]
        pos += size
    if duration is None or duration <= 0:
        return None
    return duration * scale / 1e9


# ------------------------------------------------------------------------------------------ probe
def _with_mutagen(data: bytes) -> tuple[float | None, str | None]:
    if mutagen is None:
        return None, "mutagen is not installed: duration unknown"
    try:
        found = mutagen.File(io.BytesIO(data))
    except Exception as e:  # mutagen raises its own error types per format
        return None, f"unreadable audio header ({type(e).__name__})"
    length = getattr(getattr(found, "info", None), "length", None)
    if not length or length <= 0:
        return None, "the audio header carries no duration"
    return float(length), None


def probe_audio(data: bytes) -> AudioProbe:
    """The duration of `data` and how it was found (or why it is unknown)."""
    container = sniff_container(data)
    parsers = {"wav": wav_seconds, "flac": flac_seconds, "webm": webm_seconds}
    if container in parsers:
        seconds = parsers[container](data)
        if seconds is not None:
            return AudioProbe(seconds, container, "header")
        if container == "wav":
            return AudioProbe(None, container, reason="the WAV header does not parse")
        if container == "webm":
            return AudioProbe(None, container, reason="the WebM/Matroska file carries no Duration")
    if container is None:
        return AudioProbe(None, None, reason="not a known audio container")
    seconds, reason = _with_mutagen(data)
    return AudioProbe(seconds, container, "mutagen" if seconds is not None else None, reason)


def measure_audio(data: bytes) -> float | None:
    """Seconds of audio in `data`, or None when unknown (see probe_audio for the reason)."""
    return probe_audio(data).seconds
