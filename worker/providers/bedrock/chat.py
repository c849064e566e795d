"""AWS Bedrock chat: OpenAI chat completions <-> Converse (`POST {base}/model/{modelId}/converse`).

The request side turns OpenAI messages into Converse's shape, the response side turns the Converse
answer back into an OpenAI chat completion; both are pure, so golden tests can pin the exact bodies.

System/developer messages become top-level `system` blocks; user/assistant turns are merged so they
alternate and must start with a user turn; images become `image{format, source{bytes}}` with the format
taken from the bytes; file parts become `document{format, name, source{bytes}}`, the name derived from
the filename and sanitised to Bedrock's alphabet. Bedrock reads bytes only (S3 aside), so MediaRules says
remote_urls=False: an http(s) URL that still reaches the adapter is refused (InvalidJob), the worker's
media stage should have inlined it. OpenAI parameters map through the PARAMS table
(worker.providers.params): sampling into inferenceConfig, OpenAI-only ones (seed, penalties, user)
dropped, tools and n > 1 refused.

The media limits here (IMAGE_FORMATS, DOCUMENT_FORMATS, MAX_IMAGE_*) are also the adapter's MediaRules.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from mmq.errors import InvalidJob
from mmq.media import MediaError, base64_payload, sniff_base64
from worker.providers.bedrock.errors import unparseable_body
from worker.providers.chat_shape import (
    SYSTEM_ROLES,
    content_blocks,
    not_inlined,
    openai_only,
    stop_sequences,
)
from worker.providers.params import ParamTable, drop, map_params, refuse_if, rename, validate

# -------------------------------------------------------------------------------------------- media
IMAGE_FORMATS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
DOCUMENT_FORMATS: dict[str, str] = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
MAX_IMAGE_BYTES = 3_932_160  # 3.75 MB per image (Message.content limits, reference §5.2)
MAX_IMAGE_SIDE = 8000
MAX_IMAGES = 20  # per message; kept per request so merged turns can never exceed it
MAX_DOCUMENT_NAME = 200
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")


# --------------------------------------------------------------------------------------------- chat
def _temperature(value: Any) -> float:
    return min(float(value), 1.0)  # OpenAI allows up to 2, Converse up to 1: clamp, not fail


def _text_format_only(fmt: Any) -> None:
    kind = fmt.get("type") if isinstance(fmt, Mapping) else fmt
    if kind not in (None, "text"):
        raise InvalidJob(f"response_format {kind!r} is not supported by the bedrock adapter")


# OpenAI chat fields -> Converse fields (worker.providers.params): sampling goes into inferenceConfig; the
# earlier row wins for the same field (max_completion_tokens over the legacy max_tokens). Messages are
# translated by _conversation.
PARAMS: ParamTable = {
    **openai_only("bedrock"),
    "n": refuse_if(lambda n: (n or 1) > 1, "Bedrock Converse returns one choice per request; send n=1"),
    "response_format": validate(_text_format_only),
    "max_completion_tokens": rename("inferenceConfig.maxTokens", int),
    "max_tokens": rename("inferenceConfig.maxTokens", int),
    "temperature": rename("inferenceConfig.temperature", _temperature),
    "top_p": rename("inferenceConfig.topP", float),
    "stop": rename("inferenceConfig.stopSequences", stop_sequences),
    "seed": drop("no Converse equivalent"),
    "presence_penalty": drop("no Converse equivalent"),
    "frequency_penalty": drop("no Converse equivalent"),
    "user": drop("no Converse equivalent"),
}
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}  # anything else reads as "stop"


# ======================================================================================= request
def _not_inlined(url: str, where: str) -> InvalidJob:
    return not_inlined("bedrock", url, where, "Bedrock reads inline bytes only")


def _inline(url: str, where: str) -> tuple[str | None, str, str | None]:
    """(sniffed mime, base64 payload, declared mime) of a data: URL, its payload sent as given."""
    try:
        declared, payload = base64_payload(url)
        return sniff_base64(payload), payload, declared
    except MediaError as e:
        raise InvalidJob(f"{where}: {e}", type="invalid_media") from None


def _image_block(spec: Any, where: str) -> dict[str, Any]:
    url = spec.get("url") if isinstance(spec, Mapping) else spec
    if not isinstance(url, str) or not url:
        raise InvalidJob(f"{where}: image_url.url is required")
    if not url.startswith("data:"):
        raise _not_inlined(url, where)
    mime, payload, _ = _inline(url, where)
    # Bedrock rejects a format that disagrees with the bytes; the bytes decide, as everywhere in mmq
    if mime not in IMAGE_FORMATS:
        raise InvalidJob(
            f"{where}: Bedrock accepts {', '.join(IMAGE_FORMATS.values())} images, "
            f"not {mime or 'unknown data'}",
            type="invalid_media",
        )
    # detail has no Converse equivalent and is dropped
    return {"image": {"format": IMAGE_FORMATS[mime], "source": {"bytes": payload}}}


def document_name(filename: Any, index: int) -> str:
    """A Bedrock document name from a filename: extension dropped, only alphanumerics, single spaces,
    hyphens, parentheses and square brackets kept, at most 200 characters. Neutral fallback."""
    stem = str(filename or "").rsplit("/", 1)[-1]
    if "." in stem.strip(".") and not stem.startswith("."):
        stem = stem.rsplit(".", 1)[0]
    name = _NAME_BAD_CHARS.sub("-", stem)
    name = re.sub(r"\s+", " ", name)
    name = re.sub(r"-{2,}", "-", name).strip(" -")[:MAX_DOCUMENT_NAME].strip(" ")
    return name or f"document-{index}"


def _document_format(mime: str | None, declared: str | None, filename: Any) -> str | None:
    if mime == "application/pdf":
        return "pdf"
    if declared in DOCUMENT_FORMATS:
        return DOCUMENT_FORMATS[declared]
    ext = str(filename or "").rsplit(".", 1)[-1].lower() if "." in str(filename or "") else ""
    return ext if ext in DOCUMENT_FORMATS.values() else None


def _document_block(spec: Any, where: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise InvalidJob(f"{where}: file must be an object")
    url = spec.get("file_data")
    if not isinstance(url, str):
        raise InvalidJob(f"{where}: Bedrock needs inline file_data (OpenAI file_id means nothing there)")
    if not url.startswith("data:"):
        raise _not_inlined(url, where)
    mime, payload, declared = _inline(url, where)
    fmt = _document_format(mime, declared, spec.get("filename"))
    if fmt is None:
        raise InvalidJob(
            f"{where}: Bedrock documents are {', '.join(DOCUMENT_FORMATS.values())}, "
            f"not {mime or declared or 'unknown data'}",
            type="invalid_media",
        )
    name = base = document_name(spec.get("filename"), len(names) + 1)
    copy = 2
    while name in names:  # two files called report.pdf must still be told apart
        suffix = f" ({copy})"
        name, copy = base[: MAX_DOCUMENT_NAME - len(suffix)] + suffix, copy + 1
    names.add(name)
    return {"document": {"format": fmt, "name": name, "source": {"bytes": payload}}}


def _blocks(content: Any, where: str, names: set[str]) -> list[dict[str, Any]]:
    return content_blocks(
        content,
        where,
        "bedrock",
        text=lambda text: {"text": text},
        image=_image_block,
        file=lambda spec, pwhere: _document_block(spec, pwhere, names),
    )


def _conversation(messages: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating user/assistant messages starting with user)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        if message.get("tool_calls") or message.get("function_call") or role == "tool":
            raise InvalidJob(f"{where}: tool calls are not supported by the bedrock adapter")
        blocks = _blocks(message.get("content"), where, names)
        if role in SYSTEM_ROLES:
            if any("text" not in b for b in blocks):
                raise InvalidJob(f"{where}: a Bedrock system prompt can only hold text")
            system += blocks
            continue
        if role not in ("user", "assistant"):
            raise InvalidJob(f"{where}: role {role!r} is not supported by the bedrock adapter")
        if role == "assistant" and any("text" not in b for b in blocks):
            raise InvalidJob(f"{where}: Bedrock accepts images and documents in user messages only")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks  # Converse requires strict alternation
        else:
            turns.append({"role": role, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        raise InvalidJob("bedrock needs a conversation that starts with a non-empty user message")
    for turn in turns:
        has_doc = any("document" in b for b in turn["content"])
        if has_doc and not any("text" in b for b in turn["content"]):
            raise InvalidJob("Bedrock requires a text part in every message that carries a document")
    return system, turns


def chat_body(request: dict[str, Any]) -> dict[str, Any]:
    params = map_params(PARAMS, request)
    system, turns = _conversation(request.get("messages") or [])
    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system
    body.update(params)
    return body


# ====================================================================================== responses
def _usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, Mapping):
        return None
    cached = int(usage.get("cacheReadInputTokens") or 0)
    # inputTokens leaves cache reads/writes out; OpenAI's prompt_tokens is the whole prompt
    prompt = int(usage.get("inputTokens") or 0) + cached + int(usage.get("cacheWriteInputTokens") or 0)
    completion = int(usage.get("outputTokens") or 0)
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": max(int(usage.get("totalTokens") or 0), prompt + completion),
    }
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def chat_response(
    body: Mapping[str, Any], request: Mapping[str, Any], request_id: str | None
) -> dict[str, Any]:
    output = body.get("output")
    message = output.get("message") if isinstance(output, Mapping) else None
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(content, list):
        raise unparseable_body(body)
    texts = [b["text"] for b in content if isinstance(b, Mapping) and isinstance(b.get("text"), str)]
    out: dict[str, Any] = {
        "id": f"chatcmpl-bedrock-{request_id or uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(texts), "refusal": None},
                "finish_reason": FINISH_REASONS.get(str(body.get("stopReason") or ""), "stop"),
                "logprobs": None,
            }
        ],
    }
    usage = _usage(body.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out
