"""Virtual keys: configs name a credential (`virtual_key: "openai-prod"`); only workers resolve it.

Sources, first match wins:
1. the environment: `MMQ_VK_OPENAI_PROD=<api key>` (name upper-cased, `-` and `.` become `_`), with an
   optional `MMQ_VK_OPENAI_PROD_BASE_URL`;
2. a secrets file (`MMQ_SECRETS_FILE`, JSON): `{"openai-prod": {"api_key": "...", "base_url": "..."}}`.

Nothing resolved here is ever written to Redis, storage, logs or results.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


def _clean(key: str | None) -> str | None:
    """A key as pasted: a trailing newline (`echo key > file`, a heredoc) made every call fail as an
    invalid header, recorded as an internal error with no attempt. Surrounding whitespace is never part
    of a key."""
    return key.strip() if isinstance(key, str) else key


class UnknownVirtualKey(LookupError):
    pass


@dataclass(frozen=True)
class Credential:
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def _env_name(name: str) -> str:
    return "MMQ_VK_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


class VirtualKeys:
    def __init__(self, secrets_file: Path | None = None, environ: dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.file_entries: dict[str, dict] = {}
        if secrets_file is not None and secrets_file.exists():
            self.file_entries = json.loads(secrets_file.read_text())

    def resolve(self, name: str) -> Credential:
        env = _env_name(name)
        if env in self.environ:
            return Credential(api_key=_clean(self.environ[env]), base_url=self.environ.get(env + "_BASE_URL"))
        entry = self.file_entries.get(name)
        if entry is not None:
            return Credential(
                api_key=_clean(entry.get("api_key")),
                base_url=entry.get("base_url"),
                headers=dict(entry.get("headers") or {}),
            )
        raise UnknownVirtualKey(
            f"virtual key {name!r} is not defined on this worker (set {env} or add it to MMQ_SECRETS_FILE)"
        )
