from __future__ import annotations

import io
import math
import re
import time
import wave
from array import array

import httpx

from mmq.simulator import decode_speech_wav, encode_speech_wav

UNSUPPORTED = (
    "Invalid file format. Supported formats: "
    "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"
)


def sine_wav(freq: float = 440.0, seconds: float = 1.0, rate: int = 16_000) -> bytes:
    samples = array(
        "h", (round(9000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(int(rate * seconds)))
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buf.getvalue()


async def speak(sim: httpx.AsyncClient, text: str, fmt: str = "wav") -> httpx.Response:
    body = {"model": "gpt-4o-mini-tts", "input": text, "voice": "alloy", "response_format": fmt}
    return await sim.post("/audio/speech", json=body)


async def transcribe(
    sim: httpx.AsyncClient, audio: bytes, fmt: str = "json", route: str = "transcriptions"
) -> httpx.Response:
    files = {"file": ("speech.wav", audio, "audio/wav")}
    data = {"model": "whisper-1", "response_format": fmt}
    return await sim.post(f"/audio/{route}", files=files, data=data)


def test_speech_codec_roundtrip_and_rejection() -> None:
    for text in ("", "hello", "Grüße, 東京!", "x" * 500):
        assert decode_speech_wav(encode_speech_wav(text)) == text
    assert decode_speech_wav(sine_wav()) is None
    assert decode_speech_wav(sine_wav(rate=44_100)) is None
    assert decode_speech_wav(b"not a wav") is None
    # leading silence does not confuse the decoder
    wav = encode_speech_wav("padded")
    with wave.open(io.BytesIO(wav)) as src:
        frames = src.readframes(src.getnframes())
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(bytes(2 * 777) + frames)
    assert decode_speech_wav(buf.getvalue()) == "padded"
    started = time.perf_counter()
    assert decode_speech_wav(encode_speech_wav("é" * 500)) == "é" * 500
    assert time.perf_counter() - started < 0.5


async def test_speech_roundtrips_through_transcription(sim: httpx.AsyncClient) -> None:
    text = "Grüße, 東京! The quick brown fox."
    resp = await speak(sim, text)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(resp.content)) as src:
        assert (src.getnchannels(), src.getsampwidth(), src.getframerate()) == (1, 2, 16_000)
        assert src.getnframes() > 0
    result = await transcribe(sim, resp.content)
    assert result.status_code == 200
    assert result.json()["text"] == text
    assert result.json()["usage"]["type"] == "duration"
    assert result.headers["x-mmq-simulator"] == "1"
    translated = await transcribe(sim, resp.content, route="translations")
    assert translated.json()["text"] == "[mmq simulator translation] " + text


async def test_speech_formats(sim: httpx.AsyncClient) -> None:
    mp3 = await speak(sim, "hi", "mp3")
    assert mp3.headers["content-type"] == "audio/wav"
    assert mp3.headers["x-mmq-simulator-note"] == "mp3 not synthesised, WAV returned"
    pcm = await speak(sim, "hi", "pcm")
    assert pcm.headers["content-type"] == "audio/pcm"
    assert pcm.content == mp3.content[44:]
    assert (await speak(sim, "hi")).content == mp3.content
    bad = await sim.post("/audio/speech", json={"model": "tts-1", "input": "hi"})
    assert bad.status_code == 400
    too_long = await speak(sim, "x" * 4097)
    assert too_long.status_code == 400


async def test_transcription_rejects_non_audio(sim: httpx.AsyncClient) -> None:
    resp = await transcribe(sim, b"hello, I am a text file")
    assert resp.status_code == 400
    assert resp.json() == {
        "error": {"message": UNSUPPORTED, "type": "invalid_request_error", "param": None, "code": None}
    }
    broken = await transcribe(sim, b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    assert broken.status_code == 400
    no_model = await sim.post("/audio/transcriptions", files={"file": ("a.wav", sine_wav(), "audio/wav")})
    assert no_model.status_code == 400


async def test_other_audio_and_subtitle_formats(sim: httpx.AsyncClient) -> None:
    plain = await transcribe(sim, sine_wav(seconds=1.5), fmt="text")
    assert plain.text == "[mmq simulator] 1.50s of audio, no simulator speech found"
    mp3 = await transcribe(sim, b"ID3\x03\x00" + bytes(64))
    assert mp3.json()["text"] == "[mmq simulator] 0.00s of audio, no simulator speech found"

    wav = (await speak(sim, "subtitle me")).content
    srt = (await transcribe(sim, wav, fmt="srt")).text
    assert re.fullmatch(r"1\n00:00:00,000 --> \d\d:\d\d:\d\d,\d{3}\nsubtitle me\n\n", srt)
    vtt = (await transcribe(sim, wav, fmt="vtt")).text
    assert re.fullmatch(r"WEBVTT\n\n00:00:00\.000 --> \d\d:\d\d:\d\d\.\d{3}\nsubtitle me\n\n", vtt)
    verbose = (await transcribe(sim, wav, fmt="verbose_json")).json()
    assert verbose["task"] == "transcribe"
    assert verbose["text"] == "subtitle me"
    assert verbose["duration"] > 0
    assert verbose["segments"][0]["end"] == verbose["duration"]
