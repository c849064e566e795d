"""Simulator "speech": text carried as audible tones (16-FSK) in a 16 kHz mono 16-bit WAV.

Layout, one 20 ms tone per symbol: preamble LO HI LO HI, then nibbles (high first) of
len(payload) as 4 bytes, the UTF-8 payload, and its CRC32 as 4 bytes. Nibble n is a tone of
600 + 200*n Hz. Every frequency is a whole number of cycles per symbol, so each symbol starts and
ends at phase 0 (no clicks) and the decoder can count zero crossings instead of running FFTs.
"""

from __future__ import annotations

import io
import itertools
import math
import sys
import wave
import zlib
from array import array
from functools import cache

SAMPLE_RATE = 16_000
SYMBOL_SAMPLES = 320  # 20 ms
_BASE_HZ = 600
_STEP_HZ = 200  # far wider than the +/-25 Hz error of zero-crossing counting
_MARK_LO_HZ = 400
_MARK_HI_HZ = 3800
_PREAMBLE = (_MARK_LO_HZ, _MARK_HI_HZ, _MARK_LO_HZ, _MARK_HI_HZ)
_AMPLITUDE = 12_000
_TOLERANCE_HZ = 75
_MAX_PAYLOAD = 1 << 20  # sanity bound on the length header


@cache
def _tone(freq: int) -> bytes:
    step = 2 * math.pi * freq / SAMPLE_RATE
    samples = array("h", (round(_AMPLITUDE * math.sin(step * i)) for i in range(SYMBOL_SAMPLES)))
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    return samples.tobytes()


def _nibble_hz(nibble: int) -> int:
    return _BASE_HZ + _STEP_HZ * nibble


def encode_speech_wav(text: str) -> bytes:
    """Synthesise `text` as simulator speech; returns complete WAV file bytes."""
    payload = text.encode("utf-8")
    frame = len(payload).to_bytes(4, "big") + payload + zlib.crc32(payload).to_bytes(4, "big")
    tones = [_tone(_nibble_hz(n)) for n in range(16)]
    parts = [_tone(f) for f in _PREAMBLE]
    for byte in frame:
        parts.append(tones[byte >> 4])
        parts.append(tones[byte & 0x0F])
    parts.append(bytes(2 * SYMBOL_SAMPLES))  # a short tail of silence
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(b"".join(parts))
    return buf.getvalue()


def _symbol_hz(samples: array, start: int) -> float:
    window = samples[start : start + SYMBOL_SAMPLES]
    crossings = sum(1 for a, b in itertools.pairwise(window) if (a < 0) != (b < 0))
    # k whole cycles starting at phase 0 show 2k-1 sign changes inside the window
    return (crossings + 1) * SAMPLE_RATE / (2 * SYMBOL_SAMPLES)


def _nibble(hz: float) -> int | None:
    n = round((hz - _BASE_HZ) / _STEP_HZ)
    if 0 <= n <= 15 and abs(hz - _nibble_hz(n)) <= _TOLERANCE_HZ:
        return n
    return None


def _read_samples(data: bytes) -> array | None:
    try:
        with wave.open(io.BytesIO(data), "rb") as src:
            if (src.getnchannels(), src.getsampwidth(), src.getframerate()) != (1, 2, SAMPLE_RATE):
                return None
            frames = src.readframes(src.getnframes())
    except Exception:  # wave leaks several exception types on malformed files; all mean "not ours"
        return None
    samples = array("h")
    samples.frombytes(frames[: len(frames) - len(frames) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def decode_speech_wav(data: bytes) -> str | None:
    """Recover text from simulator speech, or None if the WAV does not carry any."""
    samples = _read_samples(data)
    if samples is None:
        return None
    # tolerate leading silence: the first tone rises to ~1900 on its second sample
    start = next((i for i, s in enumerate(samples) if abs(s) > _AMPLITUDE // 8), None)
    if start is None:
        return None
    start = max(0, start - 1)
    total_symbols = (len(samples) - start) // SYMBOL_SAMPLES

    def symbol(k: int) -> float:
        return _symbol_hz(samples, start + k * SYMBOL_SAMPLES)

    if total_symbols < len(_PREAMBLE) + 16:
        return None
    # cheap rejection of arbitrary audio: the alternating LO/HI preamble must be there
    for k, expected in enumerate(_PREAMBLE):
        if abs(symbol(k) - expected) > _TOLERANCE_HZ:
            return None

    def read_bytes(first_symbol: int, count: int) -> bytes | None:
        out = bytearray()
        for k in range(first_symbol, first_symbol + 2 * count, 2):
            hi, lo = _nibble(symbol(k)), _nibble(symbol(k + 1))
            if hi is None or lo is None:
                return None
            out.append(hi << 4 | lo)
        return bytes(out)

    body = len(_PREAMBLE)
    header = read_bytes(body, 4)
    if header is None:
        return None
    length = int.from_bytes(header, "big")
    if length > _MAX_PAYLOAD or body + 2 * (4 + length + 4) > total_symbols:
        return None
    payload = read_bytes(body + 8, length)
    crc = read_bytes(body + 8 + 2 * length, 4)
    if payload is None or crc is None or zlib.crc32(payload) != int.from_bytes(crc, "big"):
        return None
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
