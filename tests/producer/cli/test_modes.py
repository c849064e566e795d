"""The CLI's two modes: `--help` says which one this shell is in; API mode needs a key, refuses --tenant,
sends local audio files with their bytes, and turns the API's refusals into one-paragraph messages."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from mmq.settings import get_settings
from producer.cli import build_parser, remote
from producer.cli.errors import UserError


@pytest.fixture
def env(monkeypatch):
    for name in ("MMQ_API_URL", "MMQ_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_help_names_both_modes_and_the_current_one(env):
    text = build_parser().format_help()
    assert "API mode" in text and "admin mode" in text and "now: admin mode" in text
    assert remote.api_mode() is None
    env.setenv("MMQ_API_URL", "http://mmq.test:8000")
    env.setenv("MMQ_API_KEY", "mmq_x")
    get_settings.cache_clear()
    assert "now: API mode (MMQ_API_URL=http://mmq.test:8000)" in build_parser().format_help()
    assert remote.api_mode() is not None
    submit_help = build_parser()._subparsers._group_actions[0].choices["submit"].format_help()
    assert "MMQ_API_URL" in submit_help


def test_api_mode_needs_a_key_and_the_key_decides_the_tenant(env):
    env.setenv("MMQ_API_URL", "http://mmq.test:8000")
    get_settings.cache_clear()
    with pytest.raises(UserError, match="MMQ_API_KEY is not"):
        remote.api_mode()
    args = build_parser().parse_args(["submit", "in.jsonl", "--tenant", "acme"])
    with pytest.raises(UserError, match="--tenant acme is for admin mode"):
        remote.no_tenant(args)
    remote.no_tenant(build_parser().parse_args(["submit", "in.jsonl"]))  # the default is fine


def test_local_audio_files_are_sent_as_data_urls(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"RIFF....WAVEfmt ")
    raw = json.dumps(
        {"custom_id": "a", "url": "/v1/audio/transcriptions", "body": {"file": "a.wav"}}
    ).encode()
    sent = json.loads(remote._inline_audio(raw, 1, tmp_path))
    mime, _, data = sent["body"]["file"].removeprefix("data:").partition(";base64,")
    assert mime.startswith("audio/") and base64.b64decode(data) == b"RIFF....WAVEfmt "
    assert sent["body"]["filename"] == "a.wav"
    missing = raw.replace(b"a.wav", b"gone.wav")
    assert remote._inline_audio(missing, 7, tmp_path) == missing  # the API names the line's failure
    assert "line 7: cannot read 'gone.wav'" in capsys.readouterr().err


async def test_refusals_become_messages():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/batches":
            return httpx.Response(401, json={"detail": "missing or unknown API key"})
        if request.url.path == "/api/batches/batch_x":
            return httpx.Response(404, json={"detail": "no batch batch_x"})
        raise httpx.ConnectError("connection refused")

    async with remote.Remote("http://mmq.test", "mmq_k", transport=httpx.MockTransport(answer)) as api:
        with pytest.raises(UserError, match="refuses MMQ_API_KEY"):
            await api.call("GET", "/api/batches")
        with pytest.raises(UserError, match="no batch batch_x for the tenant of MMQ_API_KEY"):
            await api.call("GET", "/api/batches/batch_x", missing="no batch batch_x")
        with pytest.raises(UserError, match="cannot reach the mmq API at MMQ_API_URL="):
            await api.call("GET", "/api/jobs/job_y")
