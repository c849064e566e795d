"""The simulator's AWS Bedrock dialect: Converse (vision chat with documents) and InvokeModel (images).

Routes (built by `bedrock_routes()`, each wrapped in guard.guarded like the OpenAI routes):
    POST /model/{modelId}/converse
    POST /model/{modelId}/invoke      Titan / Nova Canvas, Stability SD3 / Stable Image, Stability SDXL
The model id may arrive percent-encoded (`%3A`, `%2F` for ARNs) or not: both are read.

Auth, checked by the guard as its key reader (reference §5.1):
- SigV4 (`Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/region/bedrock/aws4_request,
  SignedHeaders=..., Signature=...` + `X-Amz-Date`). The signature is really verified with botocore
  against the fixed test credentials SIM_CREDENTIALS (AKIDSIM / simsecret): an unknown key id gives 403
  UnrecognizedClientException, a wrong signature 403 InvalidSignatureException, a payload whose
  `x-amz-content-sha256` disagrees with the body 400 XAmzContentSHA256Mismatch, a request more than
  5 minutes off 403 InvalidSignatureException (expired), a scope other than `bedrock` 403.
  The canonical URI is the decoded path encoded twice, as the SigV4 spec says, so a transport that sends
  `:` where botocore signed `%3A` still verifies.
- Or a Bedrock API key as `Authorization: Bearer <key>`, any value.
The key id (or API key) becomes the guard's rate-limit identity.

Converse is validated as Bedrock documents it: conversations start with a user message and alternate;
images/documents only in user messages; image `format` one of png/jpeg/gif/webp and matching the bytes,
≤3.75 MB and ≤8000 px, ≤20 per message; document `format` from Bedrock's list, `name` of 1-200
alphanumerics, single spaces, hyphens, parentheses and square brackets, ≤4.5 MB, ≤5 per message, and a
message with a document needs a text block; inferenceConfig in range; unknown fields refused. Answers
describe what was received like the OpenAI chat route (size, format, dominant colour).
InvokeModel validates each family's body and returns real PNGs (or JPEGs). A prompt containing
"mmq-sim:block" is filtered: Converse stopReason content_filtered, Titan a 400 ValidationException,
Stability finish_reasons / finishReason set.

Every error is Bedrock's: body {"message": ...}, header `x-amzn-ErrorType: <Exception>`, plus
`x-amzn-RequestId`. The guard's own answers (rate limit, injected faults) are re-rendered that way; a
scripted fault whose `code` is a Bedrock exception name keeps that name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.chat import PDF_PAGE, describe_cached
from mmq.simulator.errors import NativeError, json_response
from mmq.simulator.guard import Handler, guarded
from mmq.simulator.imaging import image_tokens
from mmq.simulator.parsing import estimate_tokens
from mmq.simulator.stability import ASPECT_SIZES, SDXL_SIZES, random_seed, render

SIM_CREDENTIALS: dict[str, str] = {"AKIDSIM": "simsecret"}  # access key id -> secret
SIGNING_NAME = "bedrock"
MAX_SKEW_S = 300
BLOCK_TRIGGER = "mmq-sim:block"
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})$"
)

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

# model-id prefix (after any inference-profile geography) -> InvokeModel image family
IMAGE_FAMILIES: dict[str, str] = {
    "amazon.titan-image-generator": "titan",
    "amazon.nova-canvas": "nova",
    "stability.sd3": "stability3",
    "stability.stable-image": "stability3",
    "stability.stable-diffusion-xl": "sdxl",
}
_PROFILE = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.")
TITAN_FIELDS = frozenset({"taskType", "textToImageParams", "imageGenerationConfig"})
TITAN_TEXT_FIELDS = frozenset({"text", "negativeText", "style"})
TITAN_CONFIG_FIELDS = frozenset({"numberOfImages", "width", "height", "cfgScale", "seed", "quality"})
TITAN_MAX_TEXT: dict[str, int] = {"titan": 512, "nova": 1024}
STABILITY3_FIELDS = frozenset({"prompt", "mode", "aspect_ratio", "output_format", "seed", "negative_prompt"})
SDXL_FIELDS = frozenset(
    {"text_prompts", "width", "height", "cfg_scale", "steps", "seed", "samples", "style_preset", "sampler"}
)

EXCEPTION_BY_STATUS: dict[int, str] = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
KNOWN_EXCEPTIONS = frozenset(
    {
        *EXCEPTION_BY_STATUS.values(),
        "ServiceQuotaExceededException",
        "ModelNotReadyException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
    }
)
DEFAULT_MESSAGES: dict[str, str] = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ServiceUnavailableException": "The service is temporarily unable to handle the request.",
    "InternalServerException": "The server encountered an internal error.",
}


class BedrockError(NativeError):
    """Raised in a handler; rendered as Bedrock's error: {"message"} + x-amzn-ErrorType."""

    def __init__(
        self, status: int, name: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        headers = {
            **self.headers,
            "x-amzn-errortype": f"{self.name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-requestid": str(uuid.uuid4()),
        }
        return json_response({"message": self.message}, self.status, headers)


def _invalid(message: str) -> BedrockError:
    return BedrockError(400, "ValidationException", message)


def _constraint(where: str, constraint: str) -> BedrockError:
    return _invalid(
        f"1 validation error detected: Value at '{where}' failed to satisfy constraint: {constraint}"
    )


def _malformed(message: str) -> BedrockError:
    # InvokeModel bodies are the model's; Bedrock words their errors this way
    return _invalid(f"Malformed input request: {message}, please reformat your input and try again.")


# ============================================================================================== auth
def _forbidden(name: str, message: str) -> BedrockError:
    return BedrockError(403, name, message)


def canonical_path(raw_path: str) -> str:
    """The path as once URI-encoded per segment, whatever encoding the client's transport used."""
    return "/".join(quote(unquote(segment), safe="~") for segment in raw_path.split("/"))


def verify_sigv4(request: Request, body: bytes, now: float | None = None) -> str:
    """Checks a SigV4 Authorization header against SIM_CREDENTIALS; returns the access key id."""
    match = _AUTH.match(request.headers.get("authorization", "").strip())
    if not match:
        raise _forbidden(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters "
            "(AWS4-HMAC-SHA256). (mmq simulator)",
        )
    scope = match["credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise _forbidden("IncompleteSignatureException", f"Credential {match['credential']!r} is malformed.")
    key_id, day, region, service, _ = scope
    if service != SIGNING_NAME:
        raise _forbidden(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SIGNING_NAME}'.",
        )
    amz_date = request.headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _forbidden(
            "IncompleteSignatureException", "Authorization requires a valid X-Amz-Date header."
        ) from None
    if day != amz_date[:8]:
        raise _forbidden("InvalidSignatureException", "Credential date does not match X-Amz-Date.")
    current = time.time() if now is None else now
    if abs(current - signed_at.timestamp()) > MAX_SKEW_S:
        raise _forbidden(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier or later than the allowed 5 minute window.",
        )
    declared_hash = request.headers.get("x-amz-content-sha256")
    if declared_hash is not None and declared_hash != hashlib.sha256(body).hexdigest():
        raise BedrockError(
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    secret = SIM_CREDENTIALS.get(key_id)
    if secret is None:
        raise _forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid. (mmq simulator: sign with "
            + ", ".join(f"{k}:{v}" for k, v in SIM_CREDENTIALS.items())
            + ")",
        )
    names = match["signed"].split(";")
    if "host" not in names or "x-amz-date" not in names:
        raise _forbidden("InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed headers.")
    headers: dict[str, str] = {}
    for name in names:
        if name not in request.headers:
            raise _forbidden(
                "InvalidSignatureException", f"Signed header {name!r} is missing from the request."
            )
        headers[name] = request.headers[name]
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    url = f"http://{headers['host']}{canonical_path(raw_path.decode('latin-1'))}"
    if request.url.query:
        url += "?" + request.url.query
    aws = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    aws.context["timestamp"] = amz_date
    token = request.headers.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(key_id, secret, token), service, region)
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    if not hmac.compare_digest(expected, match["signature"]):
        raise _forbidden(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.",
        )
    return key_id


async def authenticate(request: Request) -> str:
    """The guard's key reader: a SigV4 access key id (verified) or a Bedrock API key (any). Starlette
    caches the body, so the handler reads the same bytes again."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if not auth:
        raise _forbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
    return verify_sigv4(request, await request.body())


# ========================================================================================== parsing
def _read_json(body: bytes) -> dict[str, object]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BedrockError(
            400, "SerializationException", "Unable to parse the request body as JSON."
        ) from None
    if not isinstance(parsed, dict):
        raise BedrockError(400, "SerializationException", "Expected a JSON object as the request body.")
    return parsed


def _unknown(obj: Mapping[str, object], known: frozenset[str], where: str) -> None:
    extra = sorted(set(obj) - known)
    if extra:
        raise _invalid(f"Unknown field '{extra[0]}' at '{where}'. (the mmq simulator is strict)")


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


def _family(model: str) -> str | None:
    bare = _PROFILE.sub("", model.rsplit("/", 1)[-1])
    matches = [p for p in IMAGE_FAMILIES if bare.startswith(p)]
    return IMAGE_FAMILIES[max(matches, key=len)] if matches else None


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


def _ok(body: object) -> Response:
    return json_response(body, headers={"x-amzn-requestid": str(uuid.uuid4())})


# ============================================================================================ invoke
def _int(obj: Mapping[str, object], name: str, default: int, lo: int, hi: int) -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed(f"#/{name}: expected type: Integer, found: {type(value).__name__}")
    if not lo <= value <= hi:
        raise _malformed(f"#/{name}: {value} is not in the range {lo}..{hi}")
    return value


def _obj(value: object, where: str, known: frozenset[str]) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _malformed(f"#/{where}: expected type: JSONObject")
    extra = sorted(set(value) - known)
    if extra:
        raise _malformed(f"#: extraneous key [{extra[0]}] is not permitted")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def _titan(body: dict[str, object], family: str, request: Request) -> dict[str, object]:
    _obj(body, "", TITAN_FIELDS)
    if body.get("taskType") != "TEXT_IMAGE":
        raise _malformed("#/taskType: the mmq simulator supports TEXT_IMAGE only")
    params = _obj(body.get("textToImageParams"), "textToImageParams", TITAN_TEXT_FIELDS)
    text = params.get("text")
    limit = TITAN_MAX_TEXT[family]
    if not isinstance(text, str) or not 1 <= len(text) <= limit:
        raise _malformed(f"#/textToImageParams/text: expected a string of 1 to {limit} characters")
    negative = params.get("negativeText")
    if negative is not None and (not isinstance(negative, str) or not 1 <= len(negative) <= limit):
        raise _malformed(f"#/textToImageParams/negativeText: expected a string of 1 to {limit} characters")
    config = _obj(body.get("imageGenerationConfig", {}), "imageGenerationConfig", TITAN_CONFIG_FIELDS)
    count = _int(config, "numberOfImages", 1, 1, 5)
    width = _int(config, "width", 1024, 320, 4096)
    height = _int(config, "height", 1024, 320, 4096)
    if width % 16 or height % 16:
        raise _malformed("#/imageGenerationConfig: width and height must be divisible by 16")
    seed = _int(config, "seed", 0, 0, 2147483646)
    scale = config.get("cfgScale", 8.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 1.1 <= scale <= 10:
        raise _malformed("#/imageGenerationConfig/cfgScale: must be between 1.1 and 10.0")
    if config.get("quality", "standard") not in ("standard", "premium"):
        raise _malformed("#/imageGenerationConfig/quality: must be standard or premium")
    if BLOCK_TRIGGER in text:
        raise _invalid(
            "This request has been blocked by our content filters. Please adjust your text prompt to "
            "submit a new request."
        )
    seed = seed or random_seed(request, 2147483646 - count)
    images = [await render(text, seed + i, width, height) for i in range(count)]
    return {"images": [_b64(png) for png in images], "error": None}


async def _stability3(body: dict[str, object], request: Request) -> dict[str, object]:
    _obj(body, "", STABILITY3_FIELDS)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= 10000:
        raise _malformed("#/prompt: expected a string of 1 to 10000 characters")
    if body.get("mode", "text-to-image") != "text-to-image":
        raise _malformed("#/mode: the mmq simulator supports text-to-image only")
    ratio = body.get("aspect_ratio", "1:1")
    if ratio not in ASPECT_SIZES:
        raise _malformed(f"#/aspect_ratio: {ratio} is not a valid enum value")
    fmt = body.get("output_format", "png")
    if not isinstance(fmt, str) or fmt.lower() not in ("png", "jpeg"):
        raise _malformed(f"#/output_format: {fmt} is not a valid enum value")
    seed = _int(body, "seed", 0, 0, 4294967294) or random_seed(request)
    width, height = ASPECT_SIZES[str(ratio)]
    data = await render(prompt, seed, width, height, f"image/{fmt.lower()}")
    reason = "Filter reason: prompt" if BLOCK_TRIGGER in prompt else None
    return {"seeds": [seed], "finish_reasons": [reason], "images": [_b64(data)]}


async def _sdxl(body: dict[str, object], request: Request) -> dict[str, object]:
    _obj(body, "", SDXL_FIELDS)
    prompts = body.get("text_prompts")
    if not isinstance(prompts, list) or not prompts:
        raise _malformed("#/text_prompts: expected a non-empty array")
    texts = []
    for item in prompts:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"]:
            raise _malformed("#/text_prompts: each prompt needs a text")
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise _malformed("#/text_prompts: weight must be a number")
        if weight > 0:
            texts.append(item["text"])
    prompt = " ".join(texts)
    width, height = _int(body, "width", 1024, 128, 4096), _int(body, "height", 1024, 128, 4096)
    if (width, height) not in SDXL_SIZES:
        raise _malformed(f"#: {width}x{height} is not an SDXL size")
    _int(body, "samples", 1, 1, 1)
    _int(body, "steps", 30, 10, 50)
    seed = _int(body, "seed", 0, 0, 4294967295) or random_seed(request)
    png = await render(prompt, seed, width, height)
    finish = "CONTENT_FILTERED" if BLOCK_TRIGGER in prompt else "SUCCESS"
    return {"result": "success", "artifacts": [{"seed": seed, "base64": _b64(png), "finishReason": finish}]}


async def invoke(request: Request) -> Response:
    model = request.path_params["model_id"]
    family = _family(model)
    if family is None:
        raise _invalid(
            f"The mmq simulator's InvokeModel speaks the image families only ({', '.join(IMAGE_FAMILIES)}); "
            f"use Converse for {model}."
        )
    body = _read_json(await request.body())
    if family in ("titan", "nova"):
        return _ok(await _titan(body, family, request))
    if family == "stability3":
        return _ok(await _stability3(body, request))
    return _ok(await _sdxl(body, request))


# =================================================================================== dialect + routes
def _to_bedrock(response: Response) -> Response:
    """Re-render an OpenAI-shaped error from the guard in Bedrock's shape."""
    if "x-amzn-errortype" in response.headers:
        return response
    try:
        error = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):
        error = {}
    status = response.status_code
    code = error.get("code") if isinstance(error, dict) else None
    name = (
        code
        if code in KNOWN_EXCEPTIONS
        else EXCEPTION_BY_STATUS.get(
            status, "InternalServerException" if status >= 500 else "ValidationException"
        )
    )
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    message = DEFAULT_MESSAGES.get(name, "") + (f" ({message})" if message else "")
    # Bedrock documents no Retry-After: back-off is the client's business
    drop = ("content-length", "content-type", "retry-after", "retry-after-ms")
    headers = {k: v for k, v in response.headers.items() if k not in drop}
    return BedrockError(status, name, message.strip(), headers).response()


def _dialect(endpoint: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        return _to_bedrock(response) if response.status_code >= 400 else response

    return wrapper


_ACTIONS: dict[str, Handler] = {"converse": converse, "invoke": invoke}


def bedrock_routes() -> list[Route]:
    """The Bedrock-dialect routes, guarded like the OpenAI ones (stats count each path template)."""
    return [
        Route(
            f"/model/{{model_id:path}}/{action}",
            _dialect(guarded(handler, f"/model/{{modelId}}/{action}", key=authenticate)),
            methods=["POST"],
        )
        for action, handler in _ACTIONS.items()
    ]
