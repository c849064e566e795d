"""measure_image and measure_audio: sizes and durations from the bytes themselves."""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import pytest
from PIL import Image

from mmq.pricing import measure_audio, measure_image, probe_audio

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def wav_bytes(seconds: float, rate: int = 16000, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\x00" * int(seconds * rate) * channels * width)
    return buf.getvalue()


def image_bytes(size: tuple[int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_measure_image_reads_the_header(fmt):
    assert measure_image(image_bytes((1024, 768), fmt)) == (1024, 768)


def test_measure_image_reads_only_the_header():
    data = image_bytes((300, 200), "PNG")
    # a PNG cut after its header still has a size: the pixels are never decoded
    assert measure_image(data[:64]) == (300, 200)
    assert measure_image(b"not an image") is None
    assert measure_image(b"") is None


def test_measure_image_on_the_example_catalog():
    photo = sorted((EXAMPLES / "catalog").glob("*.jpg"))[0].read_bytes()
    width, height = measure_image(photo)
    assert width > 0 and height > 0


@pytest.mark.parametrize(
    ("seconds", "rate", "channels", "width"), [(2.5, 16000, 1, 2), (1.0, 44100, 2, 2), (0.75, 8000, 1, 1)]
)
def test_wav_duration_is_exact(seconds, rate, channels, width):
    probe = probe_audio(wav_bytes(seconds, rate, channels, width))
    assert probe.seconds == pytest.approx(seconds, abs=1 / rate)
    assert (probe.container, probe.how) == ("wav", "header")


def test_wav_that_claims_more_than_it_holds_counts_what_is_there():
    data = wav_bytes(2.0)
    assert measure_audio(data[: len(data) // 2]) == pytest.approx(1.0, abs=0.01)


def test_the_example_recordings_have_durations():
    for path in (EXAMPLES / "audio").glob("*.wav"):
        assert measure_audio(path.read_bytes()) > 0


def test_flac_duration_from_streaminfo():
    rate, channels, bits, total = 48000, 2, 16, 48000 * 3
    packed = (rate << 44) | ((channels - 1) << 41) | ((bits - 1) << 36) | total
    streaminfo = struct.pack(">HH", 4096, 4096) + b"\x00" * 6 + packed.to_bytes(8, "big") + b"\x00" * 16
    data = b"fLaC" + bytes([0x80, 0, 0, 34]) + streaminfo
    probe = probe_audio(data)
    assert probe.seconds == 3.0 and probe.container == "flac" and probe.how == "header"


def _ebml(element_id: bytes, payload: bytes) -> bytes:
    return element_id + bytes([0x80 | len(payload)]) + payload  # one-byte sizes (< 127)


def test_webm_duration_from_segment_info():
    info = _ebml(b"\x2a\xd7\xb1", (1_000_000).to_bytes(3, "big")) + _ebml(
        b"\x44\x89", struct.pack(">d", 12345.0)
    )
    segment = b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff" + _ebml(b"\x15\x49\xa9\x66", info)
    data = _ebml(b"\x1a\x45\xdf\xa3", _ebml(b"\x42\x82", b"webm")) + segment
    probe = probe_audio(data)
    assert probe.seconds == pytest.approx(12.345) and probe.container == "webm"
    # a live recording without Duration: unknown, with the reason
    no_duration = _ebml(b"\x1a\x45\xdf\xa3", b"") + b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff"
    no_duration += _ebml(b"\x15\x49\xa9\x66", _ebml(b"\x2a\xd7\xb1", b"\x0f\x42\x40"))
    probe = probe_audio(no_duration)
    assert probe.seconds is None and "no Duration" in probe.reason


def test_mp3_duration_through_mutagen():
    pytest.importorskip("mutagen")
    # MPEG-1 Layer III, 128 kb/s, 44.1 kHz: 417-byte frames of 1152 samples
    frame = b"\xff\xfb\x90\x00" + b"\x00" * 413
    frames = 383
    probe = probe_audio(frame * frames)
    assert probe.container == "mp3" and probe.how == "mutagen"
    assert probe.seconds == pytest.approx(frames * 1152 / 44100, rel=0.01)


def test_unknown_audio_is_none_with_a_reason():
    probe = probe_audio(b"definitely not audio")
    assert probe.seconds is None and probe.reason == "not a known audio container"
    assert measure_audio(b"RIFF\x00\x00\x00\x00WAVEjunk") is None
    assert probe_audio(b"OggS" + b"\x00" * 40).seconds is None
