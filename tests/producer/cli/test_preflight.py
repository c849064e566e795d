"""What commands check before they start (producer/cli/preflight.py, inputs.py, common.py): a worker
without a key for OpenAI's public endpoint refuses to start (warns when a routing config could supply
keys); a busy port is named; input files are opened before any batch exists; a bad MMQ_REDIS_URL is
named; known failures become one paragraph (errors.py), bugs keep their traceback."""

from __future__ import annotations

import socket

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from mmq.settings import Settings
from mmq.storage import BlobNotFound
from producer.cli import main
from producer.cli.common import need_redis
from producer.cli.errors import UserError, explain
from producer.cli.inputs import input_file, opened_jsonl
from producer.cli.preflight import bound_socket, provider_key_problem

OPENAI = "https://api.openai.com/v1"


def test_a_worker_without_a_key_for_openai_refuses_to_start():
    message, fatal = provider_key_problem(Settings(openai_base_url=OPENAI, openai_api_key=None), {})
    assert fatal
    assert "MMQ_OPENAI_API_KEY" in message and "401" in message and "MMQ_OPENAI_BASE_URL" in message


def test_a_key_from_either_variable_or_a_self_hosted_target_is_fine():
    assert provider_key_problem(Settings(openai_base_url=OPENAI, openai_api_key="sk-1"), {}) == ("", False)
    assert provider_key_problem(Settings(openai_base_url=OPENAI), {"OPENAI_API_KEY": "sk-2"}) == ("", False)
    local = Settings(openai_base_url="http://127.0.0.1:8090/v1")
    assert provider_key_problem(local, {}) == ("", False)  # the simulator, a self-hosted server


def test_an_empty_key_counts_as_none():
    settings = Settings(openai_base_url=OPENAI, openai_api_key="")
    assert provider_key_problem(settings, {"OPENAI_API_KEY": ""})[1] is True


@pytest.mark.parametrize(
    ("settings", "env", "source"),
    [
        ({"default_config": {"provider": "openai", "api_key": "sk-x"}}, {}, "MMQ_DEFAULT_CONFIG"),
        ({"secrets_file": "/etc/mmq/secrets.json"}, {}, "MMQ_SECRETS_FILE"),
        ({}, {"MMQ_VK_PROD": "sk-x"}, "MMQ_VK_*"),
    ],
)
def test_a_worker_whose_configs_may_carry_keys_starts_with_a_loud_warning(settings, env, source):
    message, fatal = provider_key_problem(Settings(openai_base_url=OPENAI, **settings), env)
    assert not fatal
    assert "WARNING" in message and source in message and "401" in message


def test_a_busy_port_is_named_with_the_flag_to_change():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use") as e:
            bound_socket("127.0.0.1", port, "api")
    assert f"mmq api --port {port + 1}" in str(e.value)


def test_input_files_are_checked_and_opened_first(tmp_path):
    with pytest.raises(UserError, match=r"nope\.jsonl: no such file"):
        input_file(str(tmp_path / "nope.jsonl"), kind="a JSONL file")
    with pytest.raises(UserError, match="is a folder, not a JSONL file; use caption"):
        input_file(str(tmp_path), kind="a JSONL file", instead="use caption")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match="holds no requests"):
        opened_jsonl(tmp_path / "blank.jsonl", 1000)
    (tmp_path / "in.jsonl").write_text('{"custom_id": "a"}\n{"custom_id": "b"}\n')
    assert [line.line_no for line in opened_jsonl(tmp_path / "in.jsonl", 1000)] == [1, 2]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("localhost:6379", "must specify one of the following schemes"),
        ("redis://localhost:abc/0", "Port could not be cast"),
        ("redis://localhost:6379/zero", "'zero' after the last / is not a number"),
    ],
)
def test_a_malformed_redis_url_is_named(url, why):
    with pytest.raises(UserError, match="MMQ_REDIS_URL=") as e:
        need_redis(Settings(redis_url=url))
    assert why in str(e.value) and "redis://HOST:PORT/DB" in str(e.value)


def test_passwords_stay_out_of_messages():
    with pytest.raises(UserError) as e:
        need_redis(Settings(redis_url="redis://:s3cret@localhost:abc/0"))
    assert "s3cret" not in str(e.value) and ":***@" in str(e.value)


def test_known_failures_are_explained_and_bugs_are_not():
    refused = RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    assert "cannot reach Redis at MMQ_REDIS_URL" in explain(refused, "status")
    assert "(connection refused)" in explain(refused, "status")
    missing = explain(BlobNotFound("blobs/sha256/ab/cd.json"), "results")
    assert "blobs/sha256/ab/cd.json" in missing and "share one MMQ_STORAGE_URL" in missing
    assert "`mmq results …`" in missing
    assert explain(ZeroDivisionError(), "status") is None


def test_main_prints_one_paragraph_and_returns_1(monkeypatch, capsys):
    import producer.cli.status as status

    def refused(args):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(status, "cmd_status", refused)
    assert main(["status", "batch_x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mmq: cannot reach Redis") and err.count("\n") == 1
