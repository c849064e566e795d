"""The CLI against a real deployment shape: `mmq submit`, `mmq status --watch`, `mmq results`."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import pytest

from mmq.simulator import encode_speech_wav
from producer.cli.humanize import clock
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import ROOT, run_mmq

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


mmq = run_mmq


def test_submit_watch_and_download_results(mmq_env, worker_process, tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "note.wav").write_bytes(encode_speech_wav("call the supplier at nine"))
    lines = [
        {
            "custom_id": "photo",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": chat_body(data_url(png_bytes((240, 130, 20), (90, 90)))),
        },
        {
            "custom_id": "note",
            "method": "POST",
            "url": "/v1/audio/transcriptions",
            "body": {"model": "whisper-1", "file": "clips/note.wav", "response_format": "srt"},
        },
        {
            "custom_id": "poster",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"prompt": "a van"},
        },
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))

    submitted = mmq("submit", "in.jsonl", "--tenant", "ops", env=mmq_env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    assert batch_id.startswith("batch_")

    status = mmq("status", batch_id, "--watch", "--json", env=mmq_env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "3/3" in status.stderr  # the progress line reached the end
    assert json.loads(status.stdout)["counts"]["succeeded"] == 3

    results = mmq("results", batch_id, "--out", "out.jsonl", "--files", "files", env=mmq_env, cwd=tmp_path)
    assert results.returncode == 0, results.stderr
    out = {x["custom_id"]: x for x in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert "orange" in out["photo"]["response"]["body"]["choices"][0]["message"]["content"]
    srt = (tmp_path / "files" / "note.srt").read_text()
    assert "00:00:00,000 -->" in srt and "call the supplier at nine" in srt
    assert (tmp_path / "files" / "poster.png").read_bytes().startswith(b"\x89PNG")

    job = mmq("status", "job_nope", env=mmq_env, cwd=tmp_path)
    assert job.returncode != 0 and "no job" in job.stderr


def test_submit_can_downscale_images_before_they_are_sent(mmq_env, worker_process, tmp_path):
    line = {
        "custom_id": "big",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": chat_body(data_url(png_bytes((240, 130, 20), (640, 480)))),
    }
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    submitted = mmq("submit", "in.jsonl", "--max-side", "64", "--watch", env=mmq_env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.splitlines()[0].strip()
    results = mmq("results", batch_id, "-o", "out.jsonl", env=mmq_env, cwd=tmp_path)  # the old spelling
    assert results.returncode == 0, results.stderr
    assert "-o/--output is deprecated; use --out" in results.stderr
    [out] = map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
    assert "64x48" in out["response"]["body"]["choices"][0]["message"]["content"]  # what the provider saw


def test_status_and_batches_read_as_a_person_would(mmq_env, worker_process, tmp_path):
    """A batch waiting for its window says until when (local time); `mmq batches` lists the newest
    first; `mmq status` groups failures by error type; `--json` keeps the API's view for scripts."""
    good = {"custom_id": "ok", "method": "POST", "url": "/v1/images/generations", "body": {"prompt": "a"}}
    (tmp_path / "now.jsonl").write_text(json.dumps(good) + "\n" + "{not json\n")
    later = {**good, "body": {"prompt": "another"}}  # not answered from the cache at submit
    (tmp_path / "night.jsonl").write_text(json.dumps(later) + "\n")
    now = mmq("submit", "now.jsonl", "--tenant", "people", "--watch", env=mmq_env, cwd=tmp_path)
    assert now.returncode == 0, now.stderr
    opens = time.time() + 6 * 3600
    night = mmq(
        "submit", "night.jsonl", "--tenant", "people", "--not-before", str(opens), env=mmq_env, cwd=tmp_path
    )
    assert night.returncode == 0, night.stderr
    now_id, night_id = now.stdout.split()[0], night.stdout.strip()

    waiting = mmq("status", night_id, env=mmq_env, cwd=tmp_path)
    assert waiting.returncode == 0, waiting.stderr
    assert f"status    waiting until {clock(opens)} (in 5h" in waiting.stdout  # local time
    assert "ETA" not in waiting.stdout
    ended = mmq("status", now_id, env=mmq_env, cwd=tmp_path)
    assert "status    completed" in ended.stdout
    assert "2 in all: 1 ok, 1 failed" in ended.stdout
    assert "failures by error type:" in ended.stdout and "invalid_request" in ended.stdout
    assert json.loads(mmq("status", now_id, "--json", env=mmq_env, cwd=tmp_path).stdout)["id"] == now_id

    listed = mmq("batches", "--tenant", "people", env=mmq_env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split()[:3] == ["BATCH", "CREATED", "STATE"]
    assert rows[1].startswith(night_id) and f"waiting until {clock(opens)}" in rows[1]  # newest first
    assert rows[2].startswith(now_id) and "completed" in rows[2]
    as_json = json.loads(mmq("batches", "--tenant", "people", "--json", env=mmq_env, cwd=tmp_path).stdout)
    assert [b["id"] for b in as_json] == [night_id, now_id]


def test_progress_fits_a_70_column_terminal(redis_url, storage_url, tmp_path):
    """`mmq status --watch` in a real 70-column terminal (a pty): every redraw fits on one line (the old
    line was ~110 columns, wrapped, and stacked), and a batch waiting for its window says until when."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    env = {"MMQ_REDIS_URL": redis_url, "MMQ_STORAGE_URL": storage_url, "MMQ_QUEUE_NAME": "mmq:pty-queue"}
    line = {"custom_id": "x", "method": "POST", "url": "/v1/images/generations", "body": {"prompt": "x"}}
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    opens = time.time() + 3 * 3600
    submitted = mmq("submit", "in.jsonl", "--not-before", str(opens), env=env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 70, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "status", submitted.stdout.strip(), "--watch"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=tmp_path,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": ""},
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"waiting until" not in seen and time.monotonic() < deadline:
            seen += os.read(leader, 65536)
        time.sleep(1.5)  # a few redraws
        proc.terminate()
        proc.wait(30)
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 65536):
                seen += chunk
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
    drawn = [s for s in re.split(r"[\r\n]", text) if s.strip()]
    assert any(f"waiting until {clock(opens)}" in s for s in drawn), drawn
    assert all(len(s) <= 70 for s in drawn), [s for s in drawn if len(s) > 70]


_S3_CHILD = """
import asyncio, sys
from producer.cli import exit_now
from mmq.storage import open_storage, put_blob

async def main(url):
    storage = open_storage(url)
    for i in range(50):
        await storage.get(await put_blob(storage, b"%d" % i * 1000, "image/png"))

asyncio.run(main(sys.argv[1]))
exit_now(0)
"""


def test_processes_using_s3_storage_exit_cleanly(s3_server):
    """obstore's Tokio threads can abort a process (SIGABRT) during interpreter shutdown after all its
    work is done: about half of such runs did with a plain exit. mmq's entry point leaves without
    finalization when obstore is loaded (producer.cli.exit_now)."""
    env = {**os.environ, **s3_server.env, "PYTHONPATH": str(ROOT)}
    codes = [
        subprocess.run(
            [sys.executable, "-c", _S3_CHILD, s3_server.storage_url("mmq-test", f"exit-{n}")],
            env=env,
            capture_output=True,
            timeout=60,
        ).returncode
        for n in range(12)
    ]
    assert codes == [0] * 12
