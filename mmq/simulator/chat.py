"""POST /v1/chat/completions: describes what was actually received (images, PDFs, audio, text)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import time
import wave
from collections import OrderedDict
from dataclasses import dataclass, field

import httpx
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.audio_formats import sniff_audio, wav_duration
from mmq.simulator.errors import ApiError, bad_request, json_response
from mmq.simulator.imaging import describe_image, image_tokens
from mmq.simulator.parsing import (
    decode_data_url,
    estimate_tokens,
    int_param,
    missing,
    read_json,
    wrong_type,
)
from mmq.simulator.speech import decode_speech_wav
from mmq.simulator.state import SimState

_PART_TYPES = ("text", "image_url", "input_audio", "refusal", "file")
_INLINE_DECODE_BYTES = 256 * 1024  # bigger images are decoded in a thread to keep the loop responsive
PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_describe_cache: OrderedDict[bytes, dict[str, object]] = OrderedDict()


@dataclass
class Received:
    sentences: list[str] = field(default_factory=list)
    prompt_tokens: int = 3  # OpenAI primes every reply with a few tokens
    images: int = 0
    files: int = 0
    audios: int = 0
    last_user_text: str = ""


async def describe_cached(data: bytes) -> dict[str, object]:
    # benchmarks resend the same image thousands of times; decoding it once is enough
    key = hashlib.blake2b(data, digest_size=16).digest()
    hit = _describe_cache.get(key)
    if hit is not None:
        _describe_cache.move_to_end(key)
        return hit
    if len(data) > _INLINE_DECODE_BYTES:
        info = await asyncio.to_thread(describe_image, data)
    else:
        info = describe_image(data)
    _describe_cache[key] = info
    if len(_describe_cache) > 128:
        _describe_cache.popitem(last=False)
    return info


def _invalid_image(param: str) -> ApiError:
    return bad_request(
        "You uploaded an unsupported image. Please make sure your image is valid.",
        param,
        "invalid_image_format",
    )


async def image_bytes(url: str, param: str, sim: SimState) -> bytes:
    if url.startswith("data:"):
        try:
            return decode_data_url(url)[1]
        except binascii.Error:
            raise _invalid_image(param) from None
        except ValueError:
            raise bad_request(
                f"Invalid '{param}'. Expected a base64-encoded data URL with an image MIME type "
                "(e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got a value without a "
                "';base64,' section.",
                param,
                "invalid_image_url",
            ) from None
    if url.startswith(("http://", "https://")):
        try:
            resp = await sim.http.get(url)
            resp.raise_for_status()
        except httpx.HTTPError:
            raise ApiError(
                400, f"Error while downloading {url}.", param="url", code="invalid_image_url"
            ) from None
        return resp.content
    raise bad_request(
        f"Invalid image URL: '{param}' must be an http(s) or data URL.", param, "invalid_image_url"
    )


async def _image_part(part: dict[str, object], param: str, got: Received, sim: SimState) -> None:
    spec = part.get("image_url")
    if isinstance(spec, str):  # lenient: some clients send the URL directly
        spec = {"url": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise missing(f"{param}.image_url.url")
    data = await image_bytes(spec["url"], f"{param}.image_url.url", sim)
    try:
        info = await describe_cached(data)
    except Image.DecompressionBombError:
        raise bad_request(
            "Image too large: it exceeds Pillow's decompression-bomb limit.", param, "invalid_image_format"
        ) from None
    except Exception:  # any decoder failure on arbitrary bytes means "not an image we can read"
        raise _invalid_image(param) from None
    got.images += 1
    r, g, b = info["dominant_rgb"]  # type: ignore[misc]
    subject = ""
    if "subject_rgb" in info:
        sr, sg, sb = info["subject_rgb"]  # type: ignore[misc]
        subject = f", with a {info['subject_colour']} subject (#{sr:02x}{sg:02x}{sb:02x})"
    got.sentences.append(
        f"Image {got.images}: {info['width']}x{info['height']} {info['format']}, "
        f"mostly {info['colour']} (#{r:02x}{g:02x}{b:02x}){subject}."
    )
    got.prompt_tokens += image_tokens(info["width"], info["height"], str(spec.get("detail") or "auto"))  # type: ignore[arg-type]


def _file_part(part: dict[str, object], param: str, got: Received) -> None:
    spec = part.get("file")
    if not isinstance(spec, dict) or not isinstance(spec.get("file_data"), str):
        raise bad_request(
            f"Missing '{param}.file.file_data': the mmq simulator only accepts inline files (no file_id).",
            f"{param}.file.file_data",
            "missing_required_parameter",
        )
    try:
        _, data = decode_data_url(spec["file_data"])
    except ValueError:
        data = b""
    if not data.startswith(b"%PDF-"):
        raise bad_request(
            "Invalid file data: expected a base64 data URL of a PDF document.",
            f"{param}.file.file_data",
            "invalid_value",
        )
    pages = max(1, len(PDF_PAGE.findall(data)))
    got.files += 1
    name = spec.get("filename")
    label = f" ({name})" if isinstance(name, str) and name else ""
    got.sentences.append(f"File {got.files}: PDF{label}, about {pages} page{'s' if pages != 1 else ''}.")
    got.prompt_tokens += 250 * pages


def _audio_part(part: dict[str, object], param: str, got: Received) -> None:
    spec = part.get("input_audio")
    if not isinstance(spec, dict) or not isinstance(spec.get("data"), str):
        raise missing(f"{param}.input_audio.data")
    try:
        data = base64.b64decode(spec["data"], validate=True)
    except binascii.Error:
        raise bad_request(
            "Invalid base64 in input_audio.data.", f"{param}.input_audio.data", "invalid_value"
        ) from None
    got.audios += 1
    kind = sniff_audio(data) or "unknown"
    text = decode_speech_wav(data) if kind == "wav" else None
    if text is not None:
        got.sentences.append(f'Audio {got.audios}: simulator speech saying "{text[:200]}".')
    else:
        try:
            seconds = wav_duration(data) if kind == "wav" else 0.0
        except wave.Error:
            seconds = 0.0
        got.sentences.append(
            f"Audio {got.audios}: {seconds:.2f}s of {kind} audio, no simulator speech found."
        )
    got.prompt_tokens += 50


async def _read_messages(messages: list[object], sim: SimState) -> Received:
    got = Received()
    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise wrong_type(param, "an object", msg)
        role = msg.get("role")
        if not isinstance(role, str):
            raise missing(f"{param}.role")
        content = msg.get("content")
        got.prompt_tokens += 3
        if content is None:
            if role == "user":
                raise missing(f"{param}.content")
            continue
        if isinstance(content, str):
            texts = [content]
        elif isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                pparam = f"{param}.content[{j}]"
                if not isinstance(part, dict):
                    raise wrong_type(pparam, "an object", part)
                kind = part.get("type")
                if kind not in _PART_TYPES:
                    raise bad_request(
                        f"Invalid value: '{kind}'. Supported values are: "
                        + ", ".join(f"'{t}'" for t in _PART_TYPES)
                        + ".",
                        f"{pparam}.type",
                        "invalid_value",
                    )
                if kind in ("text", "refusal"):
                    value = part.get(kind)
                    if not isinstance(value, str):
                        raise missing(f"{pparam}.{kind}")
                    texts.append(value)
                elif role != "user":
                    raise bad_request(
                        f"Invalid '{pparam}': {kind} parts are only allowed in user messages.", pparam
                    )
                elif kind == "image_url":
                    await _image_part(part, pparam, got, sim)
                elif kind == "file":
                    _file_part(part, pparam, got)
                else:
                    _audio_part(part, pparam, got)
        else:
            raise wrong_type(f"{param}.content", "a string or an array", content)
        text = " ".join(texts)
        got.prompt_tokens += estimate_tokens(text)
        if role == "user" and text:
            got.last_user_text = text
    return got


def _max_tokens(body: dict[str, object]) -> int | None:
    if body.get("max_completion_tokens") is not None:
        return int_param(body, "max_completion_tokens", None, 1, 1_000_000)
    return int_param(body, "max_tokens", None, 1, 1_000_000)


async def chat_completions(request: Request) -> Response:
    body = await read_json(request)
    model = body.get("model")
    if model is None:
        raise bad_request("you must provide a model parameter")
    if not isinstance(model, str) or not model:
        raise wrong_type("model", "a non-empty string", model)
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array", messages)
    if not messages:
        raise bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    if body.get("stream"):
        raise bad_request("stream=true is not supported by the mmq simulator.", "stream", "unsupported_value")
    n = int_param(body, "n", 1, 1, 128) or 1
    limit = _max_tokens(body)

    got = await _read_messages(messages, request.app.state.sim)
    prompt = got.last_user_text
    if got.sentences:
        content = "[mmq simulator] " + " ".join(got.sentences) + (f" Prompt: {prompt[:80]}" if prompt else "")
    else:
        content = f"[mmq simulator] You said: {prompt[:200]}"
    finish = "stop"
    completion_tokens = estimate_tokens(content)
    if limit is not None and completion_tokens > limit:
        content, finish, completion_tokens = content[: limit * 4], "length", limit

    # deterministic id: the same request always gets the same completion id
    digest = hashlib.sha256(await request.body()).hexdigest()[:24]
    choice_message = {"role": "assistant", "content": content, "refusal": None}
    return json_response(
        {
            "id": f"chatcmpl-sim-{digest}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "mmq-simulator",
            "choices": [
                {"index": i, "message": dict(choice_message), "finish_reason": finish, "logprobs": None}
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": got.prompt_tokens,
                "completion_tokens": completion_tokens * n,
                "total_tokens": got.prompt_tokens + completion_tokens * n,
            },
        }
    )
