"""What every non-OpenAI chat adapter reads the same way from an OpenAI-shaped request: the system
roles, the OpenAI-only parameters they refuse (as parameter-map rows, worker.providers.params), stop
sequences, and message content walked into a provider's blocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmq.errors import InvalidJob
from worker.providers.params import Param, unsupported

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


def openai_only(provider: str) -> dict[str, Param]:
    """Parameter-map rows refusing OPENAI_ONLY_PARAMS: "{name}: not supported by the {provider} adapter"."""
    return {name: unsupported(f"not supported by the {provider} adapter") for name in OPENAI_ONLY_PARAMS}


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


PartMaker = Callable[[Any, str], dict[str, Any]]  # (the part's payload, where) → the provider's block


def content_blocks(
    content: Any,
    where: str,
    provider: str,
    *,
    text: Callable[[str], dict[str, Any]],
    image: PartMaker,
    file: PartMaker,
    audio: PartMaker | None = None,
) -> list[dict[str, Any]]:
    """An OpenAI message `content` as a provider's list of blocks. Strings and text/refusal parts go
    through `text` (blank ones are dropped: these providers reject empty text); image, file and audio
    parts through the adapter's makers, with their payload and location. Audio at a provider without
    an `audio` maker, and unknown part types, fail the job naming the part."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text(content)] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        pwhere = f"{where}.content[{j}]"
        kind = part.get("type")
        if kind in ("text", "refusal"):
            if part.get(kind):
                blocks.append(text(part[kind]))
        elif kind == "image_url":
            blocks.append(image(part.get("image_url"), pwhere))
        elif kind == "file":
            blocks.append(file(part.get("file"), pwhere))
        elif kind == "input_audio" and audio is not None:
            blocks.append(audio(part.get("input_audio"), pwhere))
        elif kind == "input_audio":
            raise InvalidJob(f"{pwhere}: audio input is not supported by the {provider} adapter")
        else:
            raise InvalidJob(
                f"{pwhere}: content part type {kind!r} is not supported by the {provider} adapter"
            )
    return blocks
