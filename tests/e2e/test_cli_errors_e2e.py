"""Every user mistake of issue 14 item 3, made with the real `mmq` command: each ends with a short
message (one paragraph, naming the file, setting or command that fixes it), a non-zero exit status and
no traceback; and a file that cannot be read leaves no batch behind."""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from tests.e2e.conftest import free_port, run_mmq

pytestmark = [pytest.mark.e2e]

LINE = {"custom_id": "a", "method": "POST", "url": "/v1/images/generations", "body": {"prompt": "a van"}}


def refused(done, *needles: str) -> str:
    """The command failed with one short paragraph on stderr holding every needle; returns it."""
    message = done.stderr.strip()
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert message.startswith("mmq"), message
    assert "\n\n" not in message and len(message.splitlines()) <= 2, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.fixture
def isolated(redis_url: str, tmp_path) -> Iterator[dict[str, str]]:
    """An environment of its own key prefix and queue (other runs may share the database)."""
    prefix = f"mmqerr{uuid.uuid4().hex[:8]}"
    env = {
        "MMQ_REDIS_URL": redis_url,
        "MMQ_KEY_PREFIX": prefix,
        "MMQ_QUEUE_NAME": f"{prefix}:queue",
        "MMQ_STORAGE_URL": f"file://{tmp_path / 'store'}",
        "MMQ_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    }
    yield env


def keys_of(env: dict[str, str]) -> list[bytes]:
    client = redis_sync.Redis.from_url(env["MMQ_REDIS_URL"])
    try:
        return client.keys(env["MMQ_KEY_PREFIX"] + "*")
    finally:
        client.close()


def test_submit_a_missing_file_or_a_folder_names_it_and_leaves_no_batch(isolated, tmp_path):
    (tmp_path / "photos").mkdir()
    missing = run_mmq("submit", "nope.jsonl", env=isolated, cwd=tmp_path)
    refused(missing, "nope.jsonl: no such file")
    folder = run_mmq("submit", "photos", env=isolated, cwd=tmp_path)
    refused(folder, "photos is a folder", "mmq caption")
    (tmp_path / "empty.jsonl").write_text("\n")
    refused(run_mmq("submit", "empty.jsonl", env=isolated, cwd=tmp_path), "empty.jsonl holds no requests")
    assert keys_of(isolated) == []  # no empty, unsealed batch left in_progress forever


def test_redis_down_is_named_with_the_setting(tmp_path):
    (tmp_path / "in.jsonl").write_text(json.dumps(LINE) + "\n")
    env = {"MMQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    for command in (["submit", "in.jsonl"], ["status", "batch_x"], ["batches"]):
        done = run_mmq(*command, env=env, cwd=tmp_path)
        refused(done, "cannot reach Redis at MMQ_REDIS_URL=redis://127.0.0.1:", "connection refused")


@pytest.mark.parametrize("url", ["localhost:6379", "redis://localhost:abc/0", "redis://:pw@localhost/zero"])
def test_a_malformed_redis_url_is_named(tmp_path, url):
    done = run_mmq("status", "batch_x", env={"MMQ_REDIS_URL": url}, cwd=tmp_path)
    message = refused(done, "is not a Redis URL", "redis://HOST:PORT/DB")
    assert "pw@" not in message


def test_a_setting_that_does_not_parse_is_named(tmp_path):
    done = run_mmq("status", "batch_x", env={"MMQ_MAX_JOBS": "lots"}, cwd=tmp_path)
    refused(done, "MMQ_MAX_JOBS", "(got 'lots')")


def test_run_a_missing_file(tmp_path):
    refused(run_mmq("run", "nope.jsonl", env={}, cwd=tmp_path), "nope.jsonl: no such file")
    assert not (tmp_path / "mmq-data").exists()  # nothing was started


def test_a_busy_port_stops_run_and_api(isolated, tmp_path):
    (tmp_path / "in.jsonl").write_text(json.dumps(LINE) + "\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        ran = run_mmq("run", "in.jsonl", "--port", port, env={}, cwd=tmp_path)
        refused(ran, f"port {port} on 127.0.0.1 is already in use", "mmq run --port")
        api = run_mmq("api", "--port", port, env={**isolated, "MMQ_API_KEYS": "{}"}, cwd=tmp_path)
        refused(api, f"port {port} on 127.0.0.1 is already in use", "mmq api --port")


def test_a_worker_without_a_provider_key_refuses_to_start(isolated, tmp_path):
    env = {
        **isolated,
        "MMQ_OPENAI_BASE_URL": "https://api.openai.com/v1",
        "MMQ_OPENAI_API_KEY": "",
        "OPENAI_API_KEY": "",
    }
    done = run_mmq("worker", "--burst", env=env, cwd=tmp_path, timeout=60)
    refused(done, "no API key", "MMQ_OPENAI_API_KEY", "401")
    # a routing config may carry the keys: the worker starts, and says loudly what will fail
    config = json.dumps({"provider": "openai", "api_key": "sk-from-config"})
    warned = run_mmq("worker", "--burst", env={**env, "MMQ_DEFAULT_CONFIG": config}, cwd=tmp_path, timeout=60)
    assert warned.returncode == 0, warned.stderr
    assert "WARNING: no API key" in warned.stderr and "MMQ_DEFAULT_CONFIG" in warned.stderr


def test_results_whose_stored_files_are_missing_name_the_store(mmq_env, worker_process, tmp_path):
    (tmp_path / "in.jsonl").write_text(json.dumps(LINE) + "\n")
    done = run_mmq("submit", "in.jsonl", "--watch", env=mmq_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.split()[0]
    elsewhere = {**mmq_env, "MMQ_STORAGE_URL": f"file://{tmp_path / 'another-store'}"}
    results = run_mmq("results", batch_id, "--out", "out.jsonl", env=elsewhere, cwd=tmp_path)
    refused(results, "MMQ_STORAGE_URL=file://", "share one MMQ_STORAGE_URL")  # another store: stopped first
    store = mmq_env["MMQ_STORAGE_URL"]
    if store.startswith("file://"):  # the right store, its result files gone (on S3 the same, by key)
        shutil.rmtree(Path(store.removeprefix("file://")) / "blobs")
        results = run_mmq("results", batch_id, "--out", "out.jsonl", env=mmq_env, cwd=tmp_path)
        refused(
            results, "is not in the store at MMQ_STORAGE_URL=", "share one MMQ_STORAGE_URL", "mmq results"
        )


def test_a_process_on_another_store_is_stopped_naming_the_setting(mmq_env, tmp_path):
    """The API, the CLI and every worker must share one store; a process started where a relative
    MMQ_STORAGE_URL means another folder stops at once instead of failing every job later."""
    first = run_mmq("batches", env=mmq_env)  # registers the deployment's store
    assert first.returncode == 0, first.stderr
    elsewhere = {**mmq_env, "MMQ_STORAGE_URL": f"file://{tmp_path / 'another-store'}"}
    for command in (["batches"], ["worker", "--burst"]):
        done = run_mmq(*command, env=elsewhere)
        assert done.returncode != 0
        assert "MMQ_STORAGE_URL" in done.stderr and "share one" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
