"""Anthropic Messages API (vision chat, PDFs and plain-text documents).

Takes the OpenAI chat request the contract stores, speaks `POST /v1/messages`, and gives back an OpenAI
`chat.completion`. The translation is split into small pure functions; `to_native` / `from_native` are
the whole request and response mapping (golden-tested). Sampling, limits and the fields Anthropic cannot
honour are the PARAMS table (worker.providers.params); messages and media are code. The adapter's
`translate` adds URL and headers, `parse` and `error` read the answers; the shared send path sends.
See ../shared/reference/providers.md section 3.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import httpx

from mmq.errors import InvalidJob, ProviderError, is_retryable, parse_retry_after, unparseable
from mmq.media import MediaError, base64_payload, sniff_base64
from mmq.request_models import Kind
from worker.providers.base import AudioInput, MediaRules, ProviderResponse, Target, WireRequest
from worker.providers.chat_shape import SYSTEM_ROLES, content_blocks, stop_sequences
from worker.providers.params import ParamTable, map_params, refuse_if, rename, unsupported, validate
from worker.providers.protocol import WireAdapter

DEFAULT_BASE_URL = "https://api.anthropic.com"
# 2023-06-01 is the documented version; what the SDK 2.x value (2026-10-21) changes is unverified.
ANTHROPIC_VERSION = "2023-06-01"
# max_tokens is required by Anthropic and optional in OpenAI. Longest model-name prefix wins; models are
# data, so a model whose ceiling is lower than the fallback gets a line here, not a code change.
DEFAULT_MAX_TOKENS: dict[str, int] = {"": 4096}
# Newer Anthropic SDKs dropped temperature/top_p and some current models reportedly 400 on non-default
# values (reference warning 3, unverified). Set False to drop them instead of forwarding.
FORWARD_SAMPLING = True
SAMPLING_PARAMS: dict[str, float] = {"temperature": 1.0, "top_p": 1.0}  # name -> Anthropic's maximum
# OpenAI parameters this adapter cannot honour; a silent drop would change what the caller gets.
UNSUPPORTED_PARAMS: dict[str, str] = {
    "tools": "tool calling is not supported by the mmq anthropic adapter",
    "tool_choice": "tool calling is not supported by the mmq anthropic adapter",
    "functions": "function calling is not supported by the mmq anthropic adapter",
    "function_call": "function calling is not supported by the mmq anthropic adapter",
    "audio": "audio output is not supported by Anthropic",
}
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
DOCUMENT_TYPES = frozenset({"application/pdf", "text/plain"})
# Error types worth another try whatever the status (529 overloaded also arrives as overloaded_error).
RETRYABLE_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})
RATE_LIMIT_FAMILIES = ("requests", "tokens", "input-tokens", "output-tokens")


# ------------------------------------------------------------------------------------------ request
def _base64_payload(url: str) -> tuple[str, str]:
    """(declared mime, base64 data) of a data: URL, a base64 payload as given."""
    try:
        mime, payload = base64_payload(url)
    except MediaError:
        raise InvalidJob(f"malformed data: URL {url[:40]!r}", type="invalid_media") from None
    return mime or "", payload


def _sniffed(mime: str, b64: str) -> str:
    # Anthropic 400s when media_type disagrees with the bytes; the bytes are the better witness.
    try:
        return sniff_base64(b64) or mime
    except MediaError:
        return mime


def _image_block(url: str, where: str) -> dict[str, Any]:
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if not url.startswith("data:"):
        raise InvalidJob(
            f"{where}: image must be an http(s) or data: URL for anthropic", type="invalid_media"
        )
    mime, data = _base64_payload(url)
    media_type = _sniffed(mime, data)
    if media_type not in IMAGE_TYPES:
        raise InvalidJob(
            f"{where}: anthropic accepts {', '.join(sorted(IMAGE_TYPES))} images, "
            f"not {media_type or 'unknown'}",
            type="invalid_media",
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document_block(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    data_url = spec.get("file_data")
    if not isinstance(data_url, str):
        raise InvalidJob(f"{where}: anthropic needs inline file_data (OpenAI file_id means nothing there)")
    if data_url.startswith(("http://", "https://")):
        block: dict[str, Any] = {"type": "document", "source": {"type": "url", "url": data_url}}
    else:
        mime, data = _base64_payload(data_url)
        if mime not in DOCUMENT_TYPES:
            mime = _sniffed(mime, data)
        if mime == "application/pdf":
            source = {"type": "base64", "media_type": mime, "data": data}
        elif mime == "text/plain":
            try:
                text = base64.b64decode(data).decode("utf-8", errors="replace")
            except (binascii.Error, ValueError):
                raise InvalidJob(
                    f"{where}: text file_data is not valid base64", type="invalid_media"
                ) from None
            source = {"type": "text", "media_type": mime, "data": text}
        else:
            raise InvalidJob(
                f"{where}: anthropic documents are PDF or plain text, not {mime or 'unknown'}",
                type="invalid_media",
            )
        block = {"type": "document", "source": source}
    if spec.get("filename"):
        block["title"] = spec["filename"]  # the only place the name can go
    return block


def _image_url(spec: Any, where: str) -> dict[str, Any]:
    url = spec.get("url") if isinstance(spec, Mapping) else spec
    return _image_block(str(url or ""), where)  # `detail` has no Anthropic equivalent


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    return content_blocks(
        content,
        where,
        "anthropic",
        text=lambda text: {"type": "text", "text": text},
        image=_image_url,
        file=lambda spec, pwhere: _document_block(spec or {}, pwhere),
    )


def _system_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def _check_message(message: Mapping[str, Any], where: str) -> None:
    if message.get("role") == "tool" or message.get("tool_calls") or message.get("function_call"):
        raise InvalidJob(f"{where}: tool calls are not supported by the mmq anthropic adapter")
    if message.get("role") not in ("user", "assistant"):
        raise InvalidJob(f"{where}: role {message.get('role')!r} is not supported by the anthropic adapter")


def _conversation(messages: list[Mapping[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """(top-level system text, alternating user/assistant turns starting with user)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message.get("role") in SYSTEM_ROLES:
            if text := _system_text(message.get("content")):
                system.append(text)
            continue
        _check_message(message, where)
        blocks = _blocks(message.get("content"), where)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == message["role"]:
            turns[-1]["content"].extend(blocks)  # Anthropic requires strict alternation
        else:
            turns.append({"role": message["role"], "content": blocks})
    if not turns or turns[0]["role"] != "user":
        raise InvalidJob("anthropic needs a conversation that starts with a non-empty user message")
    return ("\n\n".join(system) or None), turns


def _default_max_tokens(request: Mapping[str, Any]) -> int:
    model = str(request.get("model") or "")
    prefix = max((p for p in DEFAULT_MAX_TOKENS if model.startswith(p)), key=len)
    return DEFAULT_MAX_TOKENS[prefix]


def _sampling(name: str) -> Callable[[Any], float | None]:
    def convert(value: Any) -> float | None:
        # OpenAI allows temperature up to 2, Anthropic up to 1: clamp rather than fail the job
        return min(float(value), SAMPLING_PARAMS[name]) if FORWARD_SAMPLING else None

    return convert


def _text_format_only(fmt: Any) -> None:
    if isinstance(fmt, Mapping) and fmt.get("type") not in (None, "text"):
        raise InvalidJob(f"response_format {fmt.get('type')!r} is not supported by the anthropic adapter")


# OpenAI chat fields -> Messages fields (worker.providers.params). Fields not listed (seed, penalties,
# logprobs, ...) are not read; messages are translated by _conversation.
PARAMS: ParamTable = {
    **{name: unsupported(why) for name, why in UNSUPPORTED_PARAMS.items()},
    "n": refuse_if(lambda n: (n or 1) > 1, "anthropic returns one choice per request; send n=1"),
    "response_format": validate(_text_format_only),
    "model": rename("model", default=None),
    "max_completion_tokens": rename("max_tokens", int),
    "max_tokens": rename("max_tokens", int, default=_default_max_tokens),  # required by Anthropic
    "stop": rename("stop_sequences", lambda stop: stop_sequences(stop) if stop else None),
    **{name: rename(name, _sampling(name)) for name in SAMPLING_PARAMS},
    "user": rename("metadata.user_id", lambda user: str(user) if user else None),
}


def to_native(request: dict[str, Any]) -> dict[str, Any]:
    """OpenAI chat request -> Anthropic Messages request body."""
    params = map_params(PARAMS, request)
    system, turns = _conversation(request.get("messages") or [])
    body: dict[str, Any] = {"model": params.pop("model"), "max_tokens": params.pop("max_tokens")}
    if system:
        body["system"] = system
    body["messages"] = turns
    body.update(params)
    return body


# ----------------------------------------------------------------------------------------- response
def _usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    cached = usage.get("cache_read_input_tokens") or 0
    # input_tokens excludes cache reads/writes; OpenAI's prompt_tokens is the whole prompt
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + cached
    completion = usage.get("output_tokens") or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def from_native(body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Anthropic Message -> OpenAI chat.completion."""
    text = "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")
    return {
        "id": body.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or request.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": FINISH_REASONS.get(body.get("stop_reason") or "", "stop"),
                "logprobs": None,
            }
        ],
        "usage": _usage(body.get("usage") or {}),
    }


# ------------------------------------------------------------------------------------------- errors
def _ratelimit_reset_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until the latest reset among exhausted anthropic-ratelimit-* families (RFC 3339 times)."""
    now = time.time() if now is None else now
    waits: list[float] = []
    for family in RATE_LIMIT_FAMILIES:
        if headers.get(f"anthropic-ratelimit-{family}-remaining") != "0":
            continue
        reset = headers.get(f"anthropic-ratelimit-{family}-reset")
        try:
            when = datetime.fromisoformat(reset.replace("Z", "+00:00")) if reset else None
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            waits.append(max(0.0, when.timestamp() - now))
    return max(waits) if waits else None


def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    message, code = resp.reason_phrase or "error", None
    try:
        err = resp.json().get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = err.get("type")
    except (ValueError, AttributeError):  # e.g. a 413 from the edge proxy, not the API
        message = resp.text[:300].strip() or message
    retryable = is_retryable(resp.status_code, code) or code in RETRYABLE_TYPES
    should_retry = resp.headers.get("x-should-retry")
    if should_retry in ("true", "false"):
        retryable = should_retry == "true"
    retry_after = parse_retry_after(resp.headers)
    if retry_after is None:
        retry_after = _ratelimit_reset_s(resp.headers)
    return ProviderError(
        message,
        status=resp.status_code,
        code=str(code) if code else None,
        retryable=retryable,
        retry_after_s=retry_after,
        provider=provider,
    )


# ------------------------------------------------------------------------------------------ adapter
def messages_url(base_url: str) -> str:
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


class AnthropicAdapter(WireAdapter):
    name = "anthropic"
    kinds = frozenset({Kind.chat})
    default_base_url = DEFAULT_BASE_URL
    media = MediaRules(
        image_types=IMAGE_TYPES,
        # the 5 MB cap applies to the base64 string, so raw bytes must stay under 3/4 of it
        max_image_bytes=5 * 1024 * 1024 * 3 // 4,
        # 8000 px normally, 2000 px once a request has >20 images; Anthropic downsizes past 1568 px
        # anyway, so the stricter cap costs no quality and never trips either rule
        max_image_side=2000,
        max_images=100,  # 600 on newer models, 100 on 200k-context ones
        document_types=DOCUMENT_TYPES,
        remote_urls=True,  # url sources for images and PDFs
    )

    def translate(
        self, target: Target, kind: Kind, request: dict[str, Any], audio: AudioInput | None = None
    ) -> WireRequest:
        if kind is not Kind.chat:
            raise InvalidJob(f"the anthropic adapter does chat only, not {kind}", type="routing_error")
        headers = {"anthropic-version": ANTHROPIC_VERSION, **target.headers}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        return WireRequest(messages_url(target.base_url), headers, json=to_native(request))

    def error(self, response: httpx.Response) -> ProviderError:
        return error_from_response(response, self.name)

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise unparseable(self.name, response.text, response.status_code)
        result = from_native(body, request)
        request_id = response.headers.get("request-id") or response.headers.get("x-request-id")
        return ProviderResponse(
            response.status_code, body=result, request_id=request_id, usage=result["usage"]
        )
