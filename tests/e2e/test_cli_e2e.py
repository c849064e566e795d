"""The CLI against a real deployment shape: `mmq submit`, `mmq status --watch`, `mmq results`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mmq.simulator import encode_speech_wav
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

    status = mmq("status", batch_id, "--watch", env=mmq_env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "3/3" in status.stderr  # the progress line reached the end
    assert json.loads(status.stdout)["counts"]["succeeded"] == 3

    results = mmq("results", batch_id, "-o", "out.jsonl", "--files", "files", env=mmq_env, cwd=tmp_path)
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
    results = mmq("results", batch_id, "-o", "out.jsonl", env=mmq_env, cwd=tmp_path)
    assert results.returncode == 0, results.stderr
    [out] = map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
    assert "64x48" in out["response"]["body"]["choices"][0]["message"]["content"]  # what the provider saw


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
