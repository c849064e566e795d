"""The provider target a job goes to. Today: one default target from settings. Issue 3 replaces this
with routing configs (fallback, load balancing) whose credentials are virtual keys resolved here."""

from __future__ import annotations

import os

from worker.config import Settings
from worker.providers.base import Target


def default_target(settings: Settings) -> Target:
    key = (
        settings.openai_api_key.get_secret_value()
        if settings.openai_api_key
        else os.environ.get("OPENAI_API_KEY")
    )
    return Target(
        name=settings.provider, provider=settings.provider, base_url=settings.openai_base_url, api_key=key
    )
