"""What every non-OpenAI chat adapter reads the same way from an OpenAI-shaped request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.errors import InvalidJob

SYSTEM_ROLES = frozenset({"system", "developer"})  # lifted out of the turns by providers with a system slot
# OpenAI parameters with no faithful equivalent in the non-OpenAI chat dialects: failing beats
# silently ignoring them, which would change what the caller gets
OPENAI_ONLY_PARAMS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "audio",
    "modalities",
    "prediction",
)


def refuse_openai_only(request: Mapping[str, Any], provider: str) -> None:
    for name in OPENAI_ONLY_PARAMS:
        if request.get(name) not in (None, False, [], {}):
            raise InvalidJob(f"{name} is not supported by the {provider} adapter")


def stop_sequences(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def not_inlined(provider: str, url: str, where: str, reads: str) -> InvalidJob:
    """A URL reached an adapter whose provider takes bytes: the worker's media stage should have
    inlined it (worker.media_ready), so this names a bug or a misdeclared MediaRules."""
    shown = url if len(url) < 80 else url[:77] + "..."
    return InvalidJob(
        f"{where}: {shown} reached the {provider} adapter as a URL; it should have been inlined as a data: "
        f"URL by the worker's media stage ({reads})",
        type="invalid_media",
    )
