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
