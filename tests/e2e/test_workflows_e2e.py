"""`mmq caption / transcribe / generate-images / speak` against real Redis, a worker process and the
simulator process: the files they write hold what the provider answered for each input."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from mmq.simulator import decode_speech_wav, encode_speech_wav
from tests.conftest import png_bytes
from tests.e2e.conftest import ROOT, _spawn, _stop, run_mmq

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


mmq = run_mmq


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def make_catalog(root: Path, count: int) -> dict[str, tuple[int, int, str]]:
    """`count` solid images in nested folders, each with its own size and colour.
    Returns {relative path: (width, height, "#rrggbb")}."""
    expected = {}
    for i in range(count):
        colour = ((i * 37) % 256, (i * 91 + 50) % 256, (i * 153 + 100) % 256)
        size = (16 + i, 12 + (i * 7) % 40)  # the width alone tells every image apart
        folder = root / f"dept-{i % 4}" / f"shelf-{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        fmt, ext = ("BMP", "bmp") if i % 10 == 0 else ("PNG", "png")
        name = folder / f"item-{i:03d}.{ext}"
        Image.new("RGB", size, colour).save(name, format=fmt)
        expected[name.relative_to(root).as_posix()] = (*size, "#{:02x}{:02x}{:02x}".format(*colour))
    assert len({v[2] for v in expected.values()}) == count  # distinct colours too
    return expected


def test_caption_a_folder_of_200_images(mmq_env, worker_process, tmp_path):
    expected = make_catalog(tmp_path / "catalog", 200)
    (tmp_path / "catalog" / "README.md").write_text("not an image")
    (tmp_path / "catalog" / "dept-1" / "prices.xlsx").write_bytes(b"PK\x03\x04")

    done = mmq("caption", "catalog", "--out", "out", "--max-tokens", "200", env=mmq_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "200 images in catalog; 2 other files skipped" in done.stderr
    assert "200/200 100%" in done.stderr and "ETA" in done.stderr
    assert "captions in out/: captions.csv, captions.jsonl, errors.csv" in done.stderr

    rows = read_csv(tmp_path / "out" / "captions.csv")
    assert rows[0] == ["id", "caption"] and len(rows) == 201
    assert sorted(r[0] for r in rows[1:]) == sorted(expected)
    for custom_id, caption in rows[1:]:
        width, height, colour = expected[custom_id]
        # the simulator describes the pixels it received: this image's own size and colour
        assert f"Image 1: {width}x{height} PNG, " in caption, (custom_id, caption)
        assert f"({colour})" in caption, (custom_id, caption)
    assert read_csv(tmp_path / "out" / "errors.csv") == [["id", "error"]]
    index = jsonl(tmp_path / "out" / "captions.jsonl")
    assert len(index) == 200 and {x["status"] for x in index} == {"succeeded"}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[str]:
    """An http server for tmp_path/web (a stand-in for a CDN) on loopback."""
    (tmp_path / "web").mkdir()
    handler = functools.partial(_Quiet, directory=str(tmp_path / "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_caption_a_csv_with_local_and_remote_images(mmq_env, worker_process, tmp_path, image_server):
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "boot.png").write_bytes(png_bytes((200, 30, 30), (50, 40)))
    (tmp_path / "web" / "hat.png").write_bytes(png_bytes((30, 30, 200), (70, 20)))
    (tmp_path / "catalog.csv").write_text(
        "id,url,prompt\n"
        'sku-1,shots/boot.png,"Describe it, briefly."\n'
        f"sku-2,{image_server}/hat.png,\n"
        "sku-3,shots/missing.png,\n",
        encoding="utf-8",
    )
    done = mmq("caption", "catalog.csv", "--out", "out", "--prompt", "Caption:", env=mmq_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    rows = read_csv(tmp_path / "out" / "captions.csv")
    assert [r[0] for r in rows] == ["id", "sku-1", "sku-2", "sku-3"]
    assert "50x40 PNG" in rows[1][1] and "Prompt: Describe it, briefly." in rows[1][1]
    assert "70x20 PNG" in rows[2][1] and "Prompt: Caption:" in rows[2][1]  # fetched over http
    assert rows[3][1] == ""
    [_header, (bad_id, error)] = read_csv(tmp_path / "out" / "errors.csv")
    assert bad_id == "sku-3" and "line 4" in error and "cannot read 'shots/missing.png'" in error

    (tmp_path / "bad.csv").write_text("sku,image\nx,y\n")
    bad = mmq("caption", "bad.csv", env=mmq_env, cwd=tmp_path)
    assert bad.returncode != 0 and "header must be id,url[,prompt]" in bad.stderr
    assert not (tmp_path / "mmq-captions").exists()


def test_transcribe_a_folder_writes_srt_per_recording(mmq_env, worker_process, tmp_path):
    rec = tmp_path / "recordings"
    (rec / "monday").mkdir(parents=True)
    (rec / "monday" / "call.wav").write_bytes(encode_speech_wav("call the supplier at nine"))
    (rec / "memo.wav").write_bytes(encode_speech_wav("buy blue paint"))
    (rec / "cover.jpg").write_bytes(png_bytes((1, 2, 3), fmt="JPEG"))

    done = mmq("transcribe", "recordings", "--write", "srt,txt", "--out", "subs", env=mmq_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 audio files in recordings; 1 other files skipped (transcriptions, verbose_json)" in done.stderr

    srt = (tmp_path / "subs" / "monday" / "call.srt").read_text()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,")
    assert "call the supplier at nine" in srt
    assert (tmp_path / "subs" / "memo.txt").read_text() == "buy blue paint\n"
    index = {x["custom_id"]: x for x in jsonl(tmp_path / "subs" / "transcripts.jsonl")}
    assert index["monday/call.wav"]["files"] == ["monday/call.txt", "monday/call.srt"]
    assert index["memo.wav"]["text"] == "buy blue paint"

    # the same recordings again: answered from the cache, unless told not to
    again = mmq("transcribe", "recordings", "--write", "srt", "--out", "again", env=mmq_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 ok, 0 failed, 0 cancelled, 2 from cache" in again.stderr
    assert (tmp_path / "again" / "monday" / "call.srt").read_text() == srt
    fresh = mmq("transcribe", "recordings", "--no-cache", "--out", "fresh", env=mmq_env, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "2 ok, 0 failed, 0 cancelled, 0 from cache" in fresh.stderr


def test_generate_images_and_speak_write_files(mmq_env, worker_process, tmp_path):
    (tmp_path / "lines.txt").write_text("A red van, parked\n\nA teapot\n", encoding="utf-8")

    images = mmq("generate-images", "lines.txt", "--size", "64x64", "--out", "art", env=mmq_env, cwd=tmp_path)
    assert images.returncode == 0, images.stderr
    art = tmp_path / "art"
    assert sorted(p.name for p in art.iterdir()) == [
        "0001-a-red-van-parked.png",
        "0003-a-teapot.png",
        "images.jsonl",
    ]
    with Image.open(art / "0003-a-teapot.png") as img:
        assert img.size == (64, 64) and img.info.get("prompt") == "A teapot"  # the simulator's stamp
    index = jsonl(art / "images.jsonl")
    assert [(x["line"], x["prompt"], x["files"]) for x in index] == [
        (1, "A red van, parked", ["0001-a-red-van-parked.png"]),
        (3, "A teapot", ["0003-a-teapot.png"]),
    ]

    speech = mmq("speak", "lines.txt", "--voice", "nova", "--out", "voice", env=mmq_env, cwd=tmp_path)
    assert speech.returncode == 0, speech.stderr
    voice = tmp_path / "voice"
    # the simulator answers WAV whatever was asked, and the file is named for what it is
    assert decode_speech_wav((voice / "0001-a-red-van-parked.wav").read_bytes()) == "A red van, parked"
    assert decode_speech_wav((voice / "0003-a-teapot.wav").read_bytes()) == "A teapot"
    index = jsonl(voice / "speech.jsonl")
    assert [(x["text"], x["file"], x["requested_format"]) for x in index] == [
        ("A red van, parked", "0001-a-red-van-parked.wav", "mp3"),
        ("A teapot", "0003-a-teapot.wav", "mp3"),
    ]


@pytest.fixture
def slow_env(redis_url: str, make_simulator, tmp_path: Path, storage_url: str) -> Iterator[dict[str, str]]:
    """A slow provider and a worker running 4 jobs at a time: a batch that takes a few seconds."""
    env = {
        "MMQ_REDIS_URL": redis_url,
        "MMQ_STORAGE_URL": storage_url,
        "MMQ_OPENAI_BASE_URL": make_simulator("--latency-ms", "250", "--seed", "7"),
        "MMQ_OPENAI_API_KEY": "sk-test-e2e-virtual",
        "MMQ_POLL_DELAY_S": "0.05",
    }
    worker = _spawn(["worker"], {**env, "MMQ_MAX_JOBS": "4"}, tmp_path / "worker.log")
    yield env
    _stop(worker)


def test_ctrl_c_detaches_and_resume_still_writes_the_csv(slow_env, tmp_path):
    expected = make_catalog(tmp_path / "catalog", 24)
    cli = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "caption", "catalog", "--out", "out"],
        cwd=tmp_path,
        env={**os.environ, **slow_env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    batch_id = cli.stdout.readline().strip()  # printed as soon as the batch is submitted
    assert batch_id.startswith("batch_"), cli.communicate(timeout=30)
    time.sleep(0.5)  # watching now
    cli.send_signal(signal.SIGINT)
    _, stderr = cli.communicate(timeout=30)
    assert cli.returncode == 130, stderr
    assert "detached" in stderr and f"mmq caption --resume {batch_id} --out out" in stderr
    assert f"mmq status {batch_id} --watch" in stderr
    assert not (tmp_path / "out").exists()  # nothing written while the batch was still running

    wrong = mmq("speak", "--resume", batch_id, env=slow_env, cwd=tmp_path)
    assert wrong.returncode != 0 and "made by `mmq caption`" in wrong.stderr

    resumed = mmq("caption", "--resume", batch_id, "--out", "out", env=slow_env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"batch {batch_id} completed: 24 ok" in resumed.stderr
    rows = read_csv(tmp_path / "out" / "captions.csv")
    assert len(rows) == 25
    for custom_id, caption in rows[1:]:
        width, height, colour = expected[custom_id]
        assert f"{width}x{height} PNG" in caption and colour in caption
