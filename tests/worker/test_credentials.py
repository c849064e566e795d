from __future__ import annotations

import json

import pytest

from worker.credentials import UnknownVirtualKey, VirtualKeys


def test_virtual_keys_resolve_from_the_environment_first_then_the_secrets_file(tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(
        json.dumps(
            {
                "openai-prod": {"api_key": "from-file"},
                "local-vllm": {"api_key": "x", "base_url": "http://127.0.0.1:8000/v1"},
            }
        )
    )
    keys = VirtualKeys(secrets, environ={"MMQ_VK_OPENAI_PROD": "from-env"})
    assert keys.resolve("openai-prod").api_key == "from-env"
    assert keys.resolve("local-vllm").base_url == "http://127.0.0.1:8000/v1"
    assert "from-env" not in repr(keys.resolve("openai-prod"))  # never printed by accident
    with pytest.raises(UnknownVirtualKey, match="MMQ_VK_ANTHROPIC_PROD"):
        keys.resolve("anthropic-prod")


def test_a_pasted_keys_trailing_newline_is_not_part_of_it(tmp_path):
    """`echo key > file` and heredocs end keys with a newline; sent as-is every call failed as an invalid
    header (an internal error with no attempt recorded)."""
    import json

    from mmq.settings import Settings
    from worker.credentials import VirtualKeys
    from worker.targets import default_target

    assert default_target(Settings(openai_api_key="sk-abc123\n")).api_key == "sk-abc123"
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"prod": {"api_key": " sk-file-key\r\n"}}))
    keys = VirtualKeys(secrets, environ={"MMQ_VK_ENV": "sk-env-key\n"})
    assert keys.resolve("env").api_key == "sk-env-key"
    assert keys.resolve("prod").api_key == "sk-file-key"
