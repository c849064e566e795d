"""The Bedrock dialect's Converse: vision chat with images and documents (POST /model/{modelId}/converse).

Converse is validated as Bedrock documents it: conversations start with a user message and alternate;
images/documents only in user messages; image `format` one of png/jpeg/gif/webp and matching the bytes,
≤3.75 MB and ≤8000 px, ≤20 per message; document `format` from Bedrock's list, `name` of 1-200
alphanumerics, single spaces, hyphens, parentheses and square brackets, ≤4.5 MB, ≤5 per message, and a
message with a document needs a text block; inferenceConfig in range; unknown fields refused. Answers
describe what was received like the OpenAI chat route (size, format, dominant colour). A prompt
containing "mmq-sim:block" is filtered: stopReason content_filtered. An image model (images.py's
families) is refused here, as Bedrock does.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from dataclasses import dataclass, field

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.bedrock.errors import BedrockError, _constraint, _invalid
from mmq.simulator.bedrock.images import _family
from mmq.simulator.bedrock.wire import BLOCK_TRIGGER, _ok, _read_json, _unknown
from mmq.simulator.chat import PDF_PAGE, describe_cached
from mmq.simulator.imaging import image_tokens
from mmq.simulator.parsing import estimate_tokens

IMAGE_FORMATS: dict[str, str] = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}  # -> Pillow name
DOCUMENT_FORMATS = frozenset({"pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md"})
TEXT_DOCUMENTS = frozenset({"csv", "html", "txt", "md"})
MAX_IMAGE_BYTES = 3_932_160  # 3.75 MB
MAX_IMAGE_SIDE = 8000
MAX_IMAGES = 20  # per message
MAX_DOCUMENT_BYTES = 4_718_592  # 4.5 MB
MAX_DOCUMENTS = 5  # per message
DOCUMENT_NAME = re.compile(r"^(?!.*\s\s)[A-Za-z0-9\s\-()\[\]]{1,200}$")
CONVERSE_FIELDS = frozenset(
    {
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
    }
)
INFERENCE_FIELDS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})


def _bytes(source: object, where: str) -> bytes:
    if not isinstance(source, dict) or set(source) != {"bytes"}:
        raise _invalid(f"{where}: the mmq simulator reads inline bytes sources only (no s3Location).")
    raw = source["bytes"]
    if not isinstance(raw, str) or not raw:
        raise _constraint(f"{where}.bytes", "Member must have length greater than or equal to 1")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BedrockError(400, "SerializationException", f"{where}.bytes is not valid base64.") from None


def _actual_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    return None


# ========================================================================================== converse
@dataclass
class _Seen:
    sentences: list[str] = field(default_factory=list)
    input_tokens: int = 0
    images: int = 0
    documents: int = 0
    last_user_text: str = ""
    blocked: bool = False


async def _image(block: object, where: str, seen: _Seen) -> None:
    if not isinstance(block, dict):
        raise _invalid(f"{where}: expected an object.")
    _unknown(block, frozenset({"format", "source"}), where)
    fmt = block.get("format")
    if fmt not in IMAGE_FORMATS:
        raise _constraint(
            f"{where}.format", f"Member must satisfy enum value set: [{', '.join(IMAGE_FORMATS)}]"
        )
    data = _bytes(block.get("source"), f"{where}.source")
    if len(data) > MAX_IMAGE_BYTES:
        raise _invalid(f"{where}: image exceeds max size of 3.75 MB ({len(data)} bytes).")
    actual = _actual_format(data)
    if actual != fmt:
        raise _invalid(
            f"{where}: the image format is {fmt} but the bytes are {actual or 'not a supported image'}. "
            "Provide the format that matches the image bytes."
        )
    try:
        info = await describe_cached(data)
    except Image.DecompressionBombError:
        raise _invalid(f"{where}: image dimensions exceed {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}.") from None
    except Exception:  # any decoder failure on arbitrary bytes
        raise _invalid(f"{where}: Could not process image.") from None
    width, height = int(info["width"]), int(info["height"])  # type: ignore[call-overload]
    if max(width, height) > MAX_IMAGE_SIDE:
        raise _invalid(f"{where}: image dimensions exceed {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}.")
    seen.images += 1
    r, g, b = info["dominant_rgb"]  # type: ignore[misc]
    subject = ""
    if "subject_rgb" in info:
        sr, sg, sb = info["subject_rgb"]  # type: ignore[misc]
        subject = f", with a {info['subject_colour']} subject (#{sr:02x}{sg:02x}{sb:02x})"
    seen.sentences.append(
        f"Image {seen.images}: {width}x{height} {info['format']}, "
        f"mostly {info['colour']} (#{r:02x}{g:02x}{b:02x}){subject}."
    )
    seen.input_tokens += image_tokens(width, height)


def _document(block: object, where: str, seen: _Seen) -> None:
    if not isinstance(block, dict):
        raise _invalid(f"{where}: expected an object.")
    _unknown(block, frozenset({"format", "name", "source", "context", "citations"}), where)
    fmt = block.get("format", "txt")
    if fmt not in DOCUMENT_FORMATS:
        raise _constraint(
            f"{where}.format", f"Member must satisfy enum value set: [{', '.join(sorted(DOCUMENT_FORMATS))}]"
        )
    name = block.get("name")
    if not isinstance(name, str) or not DOCUMENT_NAME.match(name):
        raise _invalid(
            f"{where}.name: the document name can only contain alphanumeric characters, whitespace "
            "characters (no more than one in a row), hyphens, parentheses and square brackets, "
            f"1 to 200 characters. Got {name!r}."
        )
    data = _bytes(block.get("source"), f"{where}.source")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _invalid(f"{where}: document exceeds max size of 4.5 MB ({len(data)} bytes).")
    seen.documents += 1
    if fmt == "pdf":
        if not data.startswith(b"%PDF-"):
            raise _invalid(f"{where}: the document format is pdf but the bytes are not a PDF.")
        pages = max(1, len(PDF_PAGE.findall(data)))
        seen.sentences.append(
            f"Document {seen.documents} ({name}): PDF, about {pages} page{'s' * (pages != 1)}."
        )
        seen.input_tokens += 250 * pages
    elif fmt in TEXT_DOCUMENTS:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(
                f"{where}: the document format is {fmt} but the bytes are not UTF-8 text."
            ) from None
        seen.sentences.append(f"Document {seen.documents} ({name}): {fmt}, {len(text)} characters.")
        seen.input_tokens += estimate_tokens(text)
    else:
        seen.sentences.append(f"Document {seen.documents} ({name}): {fmt}, {len(data)} bytes (not read).")
        seen.input_tokens += len(data) // 4


async def _message(message: object, i: int, seen: _Seen) -> str:
    where = f"messages.{i + 1}.member"
    if not isinstance(message, dict):
        raise _invalid(f"{where}: expected an object.")
    _unknown(message, frozenset({"role", "content"}), where)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise _constraint(f"{where}.role", "Member must satisfy enum value set: [user, assistant]")
    content = message.get("content")
    if not isinstance(content, list) or not content:
        raise _constraint(f"{where}.content", "Member must have length greater than or equal to 1")
    texts: list[str] = []
    images = documents = 0
    for j, block in enumerate(content):
        bwhere = f"{where}.content.{j + 1}.member"
        if not isinstance(block, dict) or len(block) != 1:
            raise _invalid(f"{bwhere}: a ContentBlock must set exactly one member.")
        ((kind, value),) = block.items()
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise _invalid(
                    f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. "
                    "Add text to the text field, and try again."
                )
            texts.append(value)
        elif kind in ("image", "document") and role != "user":
            raise _invalid(f"{bwhere}: images and documents are only allowed in user messages.")
        elif kind == "image":
            images += 1
            if images > MAX_IMAGES:
                raise _invalid(f"{where}: too many images: a message can include up to {MAX_IMAGES} images.")
            await _image(value, f"{bwhere}.image", seen)
        elif kind == "document":
            documents += 1
            if documents > MAX_DOCUMENTS:
                raise _invalid(f"{where}: too many documents: a message can include up to {MAX_DOCUMENTS}.")
            _document(value, f"{bwhere}.document", seen)
        else:
            raise _invalid(f"{bwhere}: the mmq simulator reads text, image and document blocks, not {kind}.")
    if documents and not texts:
        raise _invalid(
            "A message with a document must also include a text block. Add a text block and try again."
        )
    text = " ".join(texts)
    seen.input_tokens += estimate_tokens(text)
    seen.blocked = seen.blocked or BLOCK_TRIGGER in text
    if role == "user" and text:
        seen.last_user_text = text
    return str(role)


def _system(system: object, seen: _Seen) -> None:
    if not isinstance(system, list):
        raise _invalid("system: expected a list of system content blocks.")
    for k, block in enumerate(system):
        if not isinstance(block, dict) or set(block) != {"text"} or not isinstance(block["text"], str):
            raise _invalid(f"system.{k + 1}.member: the mmq simulator reads text system blocks only.")
        if not block["text"].strip():
            raise _invalid(f"The text field in the system block at system.{k} is blank.")
        seen.input_tokens += estimate_tokens(block["text"])
        seen.blocked = seen.blocked or BLOCK_TRIGGER in block["text"]


@dataclass
class _Inference:
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)


def _inference(config: object) -> _Inference:
    if not isinstance(config, dict):
        raise _invalid("inferenceConfig: expected an object.")
    _unknown(config, INFERENCE_FIELDS, "inferenceConfig")
    out = _Inference()
    if "maxTokens" in config:
        value = config["maxTokens"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _constraint(
                "inferenceConfig.maxTokens", "Member must have value greater than or equal to 1"
            )
        out.max_tokens = value
    for name in ("temperature", "topP"):
        value = config.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
        ):
            raise _constraint(f"inferenceConfig.{name}", "Member must have value between 0 and 1")
    stops = config.get("stopSequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 2500:
        raise _constraint("inferenceConfig.stopSequences", "Member must be a list of non-empty strings")
    out.stop = stops
    return out


async def converse(request: Request) -> Response:
    model = request.path_params["model_id"]
    if _family(model) is not None:
        raise _invalid(
            "This action doesn't support the model that you provided. Try again with a supported text or "
            "chat model."
        )
    body = _read_json(await request.body())
    _unknown(body, CONVERSE_FIELDS, "ConverseRequest")
    for name in ("toolConfig", "guardrailConfig", "promptVariables"):
        if body.get(name):
            raise _invalid(f"{name} is not supported by the mmq simulator.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _constraint(
            "messages", "Member must not be null and must have length greater than or equal to 1"
        )
    seen = _Seen()
    roles = [await _message(m, i, seen) for i, m in enumerate(messages)]
    if roles[0] != "user":
        raise _invalid(
            "A conversation must start with a user message. Try again with a conversation that starts with a "
            "user message."
        )
    if any(a == b for a, b in itertools.pairwise(roles)):
        raise _invalid(
            "A conversation must alternate between user and assistant roles. Make sure the conversation "
            "alternates between user and assistant roles and try again."
        )
    if "system" in body:
        _system(body["system"], seen)
    config = _inference(body.get("inferenceConfig", {}))
    stop_reason = "end_turn"
    prompt = seen.last_user_text
    if seen.blocked:
        text, stop_reason = "", "content_filtered"
    elif seen.sentences:
        text = "[mmq simulator] " + " ".join(seen.sentences) + (f" Prompt: {prompt[:80]}" if prompt else "")
    else:
        text = f"[mmq simulator] You said: {prompt[:200]}"
    for stop in config.stop:
        if stop in text:
            text, stop_reason = text[: text.index(stop)], "stop_sequence"
    output_tokens = estimate_tokens(text)
    if config.max_tokens is not None and output_tokens > config.max_tokens:
        text, stop_reason, output_tokens = text[: config.max_tokens * 4], "max_tokens", config.max_tokens
    content = [{"text": text}] if text else []
    return _ok(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": {
                "inputTokens": seen.input_tokens,
                "outputTokens": output_tokens,
                "totalTokens": seen.input_tokens + output_tokens,
            },
            "metrics": {"latencyMs": 1},
        }
    )
