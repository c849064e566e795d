"""The Google dialect's generateContent: Gemini vision chat, on AI Studio and Vertex AI paths.

`contents` is required and roles are user / model; text, inline_data and file_data parts are read
(media.py), a system_instruction takes text only; generationConfig is checked for range. Answers
describe what was received like the OpenAI chat route (size, format, dominant colour), with the same
responseId for the same request. A prompt containing "mmq-sim:block" is blocked
(promptFeedback.blockReason=SAFETY).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.errors import json_response
from mmq.simulator.gemini.errors import _invalid
from mmq.simulator.gemini.media import _file_data, _inline, _Seen
from mmq.simulator.gemini.wire import BLOCK_TRIGGER, _fields, _int, _not_found, _number, _read_body
from mmq.simulator.parsing import estimate_tokens

# Known proto fields (camelCase); anything else is "Unknown name ... Cannot find field", like Google.
_REQUEST_FIELDS = frozenset(
    {
        "contents",
        "systemInstruction",
        "generationConfig",
        "safetySettings",
        "tools",
        "toolConfig",
        "cachedContent",
        "labels",
        "model",
    }
)
_CONTENT_FIELDS = frozenset({"role", "parts"})
_PART_FIELDS = frozenset(
    {
        "text",
        "inlineData",
        "fileData",
        "thought",
        "thoughtSignature",
        "functionCall",
        "functionResponse",
        "executableCode",
        "codeExecutionResult",
        "videoMetadata",
    }
)
_GENERATION_FIELDS = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "candidateCount",
        "maxOutputTokens",
        "stopSequences",
        "presencePenalty",
        "frequencyPenalty",
        "seed",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
        "mediaResolution",
        "speechConfig",
        "imageConfig",
    }
)
_RESPONSE_MIME_TYPES = frozenset({"text/plain", "application/json", "text/x.enum"})


async def _parts(parts: object, where: str, seen: _Seen, media: bool) -> list[str]:
    if not isinstance(parts, list) or not parts:
        raise _invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n")
    texts: list[str] = []
    for j, part_obj in enumerate(parts):
        pwhere = f"{where}.parts[{j}]"
        part = _fields(part_obj, pwhere, _PART_FIELDS)
        data_fields = [name for name in ("text", "inlineData", "fileData") if name in part]
        if not data_fields:
            names = ", ".join(sorted(part)) or "nothing"
            raise _invalid(
                f"{pwhere}: the mmq simulator reads text, inline_data and file_data parts (got {names})."
            )
        if len(data_fields) > 1:
            raise _invalid(f"Invalid value at '{pwhere}': oneof field 'data' is already set.")
        if "text" in part:
            if not isinstance(part["text"], str):
                raise _invalid(f"Invalid value at '{pwhere}.text' (TYPE_STRING), {json.dumps(part['text'])}")
            texts.append(part["text"])
        elif not media:
            raise _invalid("system_instruction can only contain text parts.")
        elif "inlineData" in part:
            await _inline(part["inlineData"], f"{pwhere}.inline_data", seen)
        else:
            _file_data(part["fileData"], f"{pwhere}.file_data", seen)
    return texts


async def _read_contents(body: dict[str, object], seen: _Seen) -> None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _invalid("* GenerateContentRequest.contents: contents is not specified\n")
    for i, content_obj in enumerate(contents):
        where = f"contents[{i}]"
        content = _fields(content_obj, where, _CONTENT_FIELDS)
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise _invalid("Please use a valid role: user, model.")
        texts = await _parts(content.get("parts"), where, seen, media=True)
        text = " ".join(texts)
        seen.prompt_tokens += estimate_tokens(text)
        seen.blocked = seen.blocked or BLOCK_TRIGGER in text
        if role == "user" and text:
            seen.last_user_text = text
    if "systemInstruction" in body:
        system = _fields(body["systemInstruction"], "system_instruction", _CONTENT_FIELDS)
        texts = await _parts(system.get("parts"), "system_instruction", seen, media=False)
        seen.prompt_tokens += estimate_tokens(" ".join(texts))
        seen.blocked = seen.blocked or any(BLOCK_TRIGGER in t for t in texts)


@dataclass
class _Generation:
    candidates: int = 1
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    mime: str = "text/plain"


def _generation(body: dict[str, object]) -> _Generation:
    spec = _fields(body.get("generationConfig", {}), "generation_config", _GENERATION_FIELDS)
    gen = _Generation()
    if "candidateCount" in spec:
        gen.candidates = _int(spec["candidateCount"], "generation_config.candidate_count", 1, 8)
    if "maxOutputTokens" in spec:
        gen.max_tokens = _int(spec["maxOutputTokens"], "generation_config.max_output_tokens", 1, 65536)
    if "temperature" in spec:
        _number(spec["temperature"], "generation_config.temperature", 0, 2)
    if "topP" in spec:
        _number(spec["topP"], "generation_config.top_p", 0, 1)
    stops = spec.get("stopSequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _invalid("Invalid value at 'generation_config.stop_sequences': expected a list of strings.")
    if len(stops) > 5:
        raise _invalid("generation_config.stop_sequences can hold at most 5 sequences.")
    gen.stop = [s for s in stops if s]
    mime = spec.get("responseMimeType", "text/plain")
    if mime not in _RESPONSE_MIME_TYPES:
        raise _invalid(
            f'Unsupported mime type: "{mime}". Allowed mimetypes are '
            + ", ".join(sorted(_RESPONSE_MIME_TYPES))
            + "."
        )
    gen.mime = str(mime)
    return gen


async def generate_content(request: Request) -> Response:
    model = request.path_params["model"]
    if model.startswith("imagen"):
        raise _not_found(model, "generateContent", request)
    body = _fields(await _read_body(request), "", _REQUEST_FIELDS)
    for name in ("tools", "toolConfig", "cachedContent"):
        if body.get(name):
            raise _invalid(f"{name} is not supported by the mmq simulator.")
    gen = _generation(body)
    seen = _Seen()
    await _read_contents(body, seen)
    response_id = hashlib.sha256(await request.body()).hexdigest()[:24]  # same request, same id
    if seen.blocked:
        return json_response(
            {
                "promptFeedback": {
                    "blockReason": "SAFETY",
                    "safetyRatings": [
                        {
                            "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                            "probability": "HIGH",
                            "blocked": True,
                        }
                    ],
                },
                "usageMetadata": {
                    "promptTokenCount": seen.prompt_tokens,
                    "totalTokenCount": seen.prompt_tokens,
                },
                "modelVersion": model,
                "responseId": response_id,
            }
        )
    prompt = seen.last_user_text
    if seen.sentences:
        text = "[mmq simulator] " + " ".join(seen.sentences) + (f" Prompt: {prompt[:80]}" if prompt else "")
    else:
        text = f"[mmq simulator] You said: {prompt[:200]}"
    if gen.mime == "application/json":
        text = json.dumps({"simulator": "mmq", "description": text})
    finish = "STOP"
    for stop in gen.stop:
        if stop in text:
            text = text[: text.index(stop)]
    tokens = estimate_tokens(text)
    if gen.max_tokens is not None and tokens > gen.max_tokens:
        text, finish, tokens = text[: gen.max_tokens * 4], "MAX_TOKENS", gen.max_tokens
    n = gen.candidates
    return json_response(
        {
            "candidates": [
                {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": finish, "index": i}
                for i in range(n)
            ],
            "usageMetadata": {
                "promptTokenCount": seen.prompt_tokens,
                "candidatesTokenCount": tokens * n,
                "totalTokenCount": seen.prompt_tokens + tokens * n,
            },
            "modelVersion": model,
            "responseId": response_id,
        }
    )
