"""The worker's own target: where jobs without a routing config go, and what a config's targets fall
back to for base URL and key when they name the same provider (see worker.routes)."""

from __future__ import annotations

import os

from mmq.settings import Settings
from worker.providers.base import Target


def default_target(settings: Settings) -> Target:
    key = (
        settings.openai_api_key.get_secret_value()
        if settings.openai_api_key
        else os.environ.get("OPENAI_API_KEY")
    )
    key = key.strip() if key else key  # a pasted key's trailing newline is not part of it
    return Target(
        name=settings.provider, provider=settings.provider, base_url=settings.openai_base_url, api_key=key
    )
