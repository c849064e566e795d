"""The simulator's Google dialect: Gemini generateContent (vision chat) and Imagen predict, on AI Studio
and Vertex AI paths.

Routes (built by `gemini_routes()`, each wrapped in guard.guarded like the OpenAI routes):
    POST /v1beta/models/{model}:generateContent | :predict                                   AI Studio
    POST /v1[beta1]/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent | :predict
                                                                                               Vertex AI
Auth: AI Studio takes `x-goog-api-key`, `?key=` or an OAuth bearer; Vertex takes `Authorization: Bearer`.
Any value works. The key becomes the guard's rate-limit identity.

Errors come in Google's shape {"error": {"code", "message", "status", "details"?}}. The guard's own
answers (auth, rate limit, injected faults) are translated to it too, and a 429 carries a
google.rpc.RetryInfo detail instead of Retry-After headers, as Google does.

Validation follows Google's documented behaviour: snake_case and camelCase field names are both read
(proto JSON), unknown fields are rejected, `contents` is required, an inline blob must be base64 of an
accepted type whose bytes match its mime_type, and a request body over 20 MB is refused.
Answers describe what was received like the OpenAI chat route (size, format, dominant colour); Imagen
returns real PNGs (or JPEGs). A prompt containing "mmq-sim:block" is blocked
(promptFeedback.blockReason=SAFETY; Imagen: a raiFilteredReason and no image).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import math
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# the OpenAI routes' helpers, so both dialects describe media identically (and share the decode cache)
from mmq.simulator.audio_formats import sniff_audio, wav_duration
from mmq.simulator.chat import PDF_PAGE, describe_cached
from mmq.simulator.errors import NativeError, json_response
from mmq.simulator.guard import Handler, bearer_key, guarded
from mmq.simulator.images import _render
from mmq.simulator.parsing import estimate_tokens
from mmq.simulator.speech import decode_speech_wav

INLINE_REQUEST_LIMIT = 20 * 1024 * 1024  # the documented floor (100 MB since 2026-01-12)
BLOCK_TRIGGER = "mmq-sim:block"
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
DOCUMENT_TYPES = frozenset({"application/pdf", "text/plain"})
# declared audio type -> sniff_audio() name
AUDIO_TYPES: dict[str, str] = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/mp3": "mp3",
    "audio/mpeg": "mp3",
    "audio/flac": "flac",
    "audio/ogg": "ogg",
}
# Imagen output sizes at 1K per aspect ratio; sampleImageSize 2K doubles them
IMAGEN_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
IMAGEN_MAX_SAMPLES = 4
IMAGEN_DEFAULT_SAMPLES = 4  # Google's documented default for numberOfImages
IMAGEN_OUTPUT_TYPES = frozenset({"image/png", "image/jpeg"})
# Imagen parameters the Developer API refuses (Vertex accepts them); reference §4.4
VERTEX_ONLY_IMAGEN_PARAMS = frozenset(
    {"seed", "negativePrompt", "addWatermark", "enhancePrompt", "storageUri"}
)

_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"

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
_BLOB_FIELDS = frozenset({"mimeType", "data", "displayName"})
_FILE_FIELDS = frozenset({"mimeType", "fileUri", "displayName"})
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
_PREDICT_FIELDS = frozenset({"instances", "parameters"})
_INSTANCE_FIELDS = frozenset({"prompt"})
_IMAGEN_FIELDS = frozenset(
    {
        "sampleCount",
        "aspectRatio",
        "guidanceScale",
        "safetySetting",
        "personGeneration",
        "includeSafetyAttributes",
        "includeRaiReason",
        "language",
        "outputOptions",
        "sampleImageSize",
        *VERTEX_ONLY_IMAGEN_PARAMS,
    }
)
_OUTPUT_OPTION_FIELDS = frozenset({"mimeType", "compressionQuality"})


class GoogleError(NativeError):
    """Raised in a handler; rendered as Google's error body."""

    def __init__(
        self,
        code: int,
        message: str,
        details: list[dict[str, object]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {
            "code": self.code,
            "message": self.message,
            "status": _STATUS_NAMES.get(self.code, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def response(self) -> Response:
        return json_response(self.body(), self.code, self.headers)


def _invalid(message: str) -> GoogleError:
    return GoogleError(400, message)


# ------------------------------------------------------------------------------------------ parsing
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _fields(obj: object, where: str, known: frozenset[str]) -> dict[str, object]:
    """A proto-JSON object with its keys read as camelCase; unknown names are refused."""
    if not isinstance(obj, dict):
        raise _invalid(f"Invalid JSON payload received. Invalid value at '{where}': expected an object.")
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = _camel(str(key))
        if name not in known:
            at = f" at '{where}'" if where else ""
            raise _invalid(f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')
        out[name] = value
    return out


async def _read_body(request: Request) -> dict[str, object]:
    raw = await request.body()
    if len(raw) > INLINE_REQUEST_LIMIT:
        raise _invalid(f"Request payload size exceeds the limit: {INLINE_REQUEST_LIMIT} bytes.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. Expected an object at the top level.")
    return body


def _int(value: object, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"Invalid value at '{where}' (TYPE_INT32), {json.dumps(value)}")
    if not lo <= value <= hi:
        raise _invalid(f"{where} must be between {lo} and {hi}, got {value}.")
    return value


def _number(value: object, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"Invalid value at '{where}' (TYPE_FLOAT), {json.dumps(value)}")
    if not lo <= value <= hi:
        raise _invalid(f"{where} must be between {lo:g} and {hi:g}, got {value}.")
    return float(value)


def sniff_mime(data: bytes) -> str | None:
    """What the bytes are, in the MIME names Gemini uses (None: not recognised)."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"BM"):
        return "image/bmp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heif"):
        return "image/heif"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    audio = sniff_audio(data)
    if audio is not None:
        return f"audio/{audio}"
    if b"\x00" not in data[:4096]:
        try:
            data[:4096].decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < 4090:  # a multi-byte character cut at the window's end is still text
                return None
        return "text/plain"
    return None


def _matches(declared: str, actual: str | None) -> bool:
    if declared in ("image/heic", "image/heif"):
        return actual == "image/heif"  # one container family; the brand does not settle the name
    if declared in AUDIO_TYPES:
        return actual == f"audio/{AUDIO_TYPES[declared]}"
    return declared == actual


# --------------------------------------------------------------------------------- generateContent
@dataclass
class _Seen:
    sentences: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    images: int = 0
    files: int = 0
    audios: int = 0
    last_user_text: str = ""
    blocked: bool = False


def image_tokens(width: int, height: int) -> int:
    """Gemini's count: 258 for an image within 384x384, else 258 per 768x768 tile."""
    if max(width, height) <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


def _unprocessable(what: str, why: str) -> GoogleError:
    return _invalid(
        f"Unable to process input {what}. Please retry or report in "
        f"https://developers.generativeai.google/guide/troubleshooting ({why}; mmq simulator)"
    )


async def _image(mime: str, data: bytes, seen: _Seen) -> None:
    seen.images += 1
    if mime in ("image/heic", "image/heif"):  # Pillow cannot decode HEIF without a plugin
        seen.sentences.append(f"Image {seen.images}: a HEIF image (not decoded by the simulator).")
        seen.prompt_tokens += 258
        return
    try:
        info = await describe_cached(data)
    except Image.DecompressionBombError:
        raise _unprocessable("image", "it exceeds the decompression-bomb limit") from None
    except Exception:  # any decoder failure on arbitrary bytes
        raise _unprocessable("image", "the bytes do not decode") from None
    r, g, b = info["dominant_rgb"]  # type: ignore[misc]
    subject = ""
    if "subject_rgb" in info:
        sr, sg, sb = info["subject_rgb"]  # type: ignore[misc]
        subject = f", with a {info['subject_colour']} subject (#{sr:02x}{sg:02x}{sb:02x})"
    seen.sentences.append(
        f"Image {seen.images}: {info['width']}x{info['height']} {info['format']}, "
        f"mostly {info['colour']} (#{r:02x}{g:02x}{b:02x}){subject}."
    )
    seen.prompt_tokens += image_tokens(info["width"], info["height"])  # type: ignore[arg-type]


def _document(mime: str, data: bytes, seen: _Seen) -> None:
    seen.files += 1
    if mime == "application/pdf":
        pages = max(1, len(PDF_PAGE.findall(data)))
        seen.sentences.append(f"File {seen.files}: PDF, about {pages} page{'s' if pages != 1 else ''}.")
        seen.prompt_tokens += 258 * pages
        return
    text = data.decode("utf-8", errors="replace")
    seen.sentences.append(f"File {seen.files}: plain text, {len(text)} characters.")
    seen.prompt_tokens += estimate_tokens(text)


def _audio(data: bytes, seen: _Seen) -> None:
    seen.audios += 1
    kind = sniff_audio(data) or "unknown"
    text = decode_speech_wav(data) if kind == "wav" else None
    try:
        seconds = wav_duration(data) if kind == "wav" else 0.0
    except wave.Error:
        seconds = 0.0
    if text is not None:
        seen.sentences.append(f'Audio {seen.audios}: simulator speech saying "{text[:200]}".')
    else:
        seen.sentences.append(
            f"Audio {seen.audios}: {seconds:.2f}s of {kind} audio, no simulator speech found."
        )
    seen.prompt_tokens += max(1, math.ceil(32 * seconds))  # 32 tokens per second of audio


async def _inline(blob: object, where: str, seen: _Seen) -> None:
    spec = _fields(blob, where, _BLOB_FIELDS)
    mime, b64 = spec.get("mimeType"), spec.get("data")
    if not isinstance(mime, str) or not mime:
        raise _invalid(f"* GenerateContentRequest.{where}.mime_type: mime_type is not specified\n")
    if not isinstance(b64, str) or not b64:
        raise _invalid(f"* GenerateContentRequest.{where}.data: data is not specified\n")
    mime = mime.lower()
    if mime not in IMAGE_TYPES and mime not in DOCUMENT_TYPES and mime not in AUDIO_TYPES:
        raise _invalid(f"Unsupported MIME type: {mime}")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(
            f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed for \"{b64[:20]}...\""
        ) from None
    actual = sniff_mime(data)
    if not _matches(mime, actual):
        what = "image" if mime.startswith("image/") else "file"
        raise _unprocessable(what, f"mime_type is {mime} but the bytes are {actual or 'unrecognised'}")
    if mime in IMAGE_TYPES:
        await _image(mime, data, seen)
    elif mime in DOCUMENT_TYPES:
        _document(mime, data, seen)
    else:
        _audio(data, seen)


def _file_data(spec_obj: object, where: str, seen: _Seen) -> None:
    spec = _fields(spec_obj, where, _FILE_FIELDS)
    uri = spec.get("fileUri")
    if not isinstance(uri, str) or not uri:
        raise _invalid(f"* GenerateContentRequest.{where}.file_uri: file_uri is not specified\n")
    if not uri.startswith(("gs://", "https://", "http://")):
        raise _invalid(f"Invalid or unsupported file uri: {uri}")
    mime = spec.get("mimeType")
    seen.files += 1
    label = f" ({mime})" if isinstance(mime, str) and mime else ""
    seen.sentences.append(f"File {seen.files}: {uri}{label}, not fetched by the simulator.")
    seen.prompt_tokens += 258


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


def _not_found(model: str, method: str, request: Request) -> GoogleError:
    version = request.url.path.split("/")[1]
    return GoogleError(
        404,
        f"models/{model} is not found for API version {version}, or is not supported for {method}. "
        "Call ListModels to see the list of available models and their supported methods.",
    )


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


# ------------------------------------------------------------------------------------------ Imagen
def _to_jpeg(png: bytes, quality: int) -> bytes:
    with Image.open(io.BytesIO(png)) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


async def predict(request: Request) -> Response:
    model = request.path_params["model"]
    if not model.startswith("imagen"):
        raise _not_found(model, "predict", request)
    vertex = "project" in request.path_params
    body = _fields(await _read_body(request), "", _PREDICT_FIELDS)
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise _invalid("* PredictRequest.instances: instances is not specified\n")
    params = _fields(body.get("parameters", {}), "parameters", _IMAGEN_FIELDS)
    refused = sorted(VERTEX_ONLY_IMAGEN_PARAMS & params.keys()) if not vertex else []
    if refused:
        raise _invalid(f"{refused[0]} parameter is not supported in Gemini API.")
    count = _int(
        params.get("sampleCount", IMAGEN_DEFAULT_SAMPLES), "parameters.sampleCount", 1, IMAGEN_MAX_SAMPLES
    )
    ratio = params.get("aspectRatio", "1:1")
    if ratio not in IMAGEN_SIZES:
        raise _invalid(f"Unsupported aspect ratio: {ratio}. Supported: " + ", ".join(IMAGEN_SIZES) + ".")
    width, height = IMAGEN_SIZES[str(ratio)]
    size = params.get("sampleImageSize", "1K")
    if size not in ("1K", "2K"):
        raise _invalid(f"Unsupported sample image size: {size}. Supported: 1K, 2K.")
    if size == "2K":
        width, height = width * 2, height * 2
    options = _fields(params.get("outputOptions", {}), "parameters.outputOptions", _OUTPUT_OPTION_FIELDS)
    out_mime = options.get("mimeType", "image/png")
    if out_mime not in IMAGEN_OUTPUT_TYPES:
        raise _invalid(f"Unsupported output mime type: {out_mime}. Supported: image/png, image/jpeg.")
    quality = _int(
        options.get("compressionQuality", 75), "parameters.outputOptions.compressionQuality", 0, 100
    )

    predictions: list[dict[str, str]] = []
    for i, instance_obj in enumerate(instances):
        instance = _fields(instance_obj, f"instances[{i}]", _INSTANCE_FIELDS)
        prompt = instance.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _invalid(f"instances[{i}].prompt: a non-empty prompt is required.")
        if BLOCK_TRIGGER in prompt:
            if params.get("includeRaiReason"):
                predictions += [
                    {"raiFilteredReason": "The prompt was blocked by the mmq simulator's safety filter."}
                ] * count
            continue
        images = await asyncio.gather(*(_render(prompt, k, width, height) for k in range(count)))
        for png in images:
            data = png if out_mime == "image/png" else await asyncio.to_thread(_to_jpeg, png, quality)
            predictions.append(
                {"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": out_mime}
            )
    # Imagen leaves out filtered images; with nothing left the body is {}
    return json_response({"predictions": predictions} if predictions else {})


# ---------------------------------------------------------------------------------- dialect + routes
def _retry_delay(seconds: float) -> str:
    # Google's Duration JSON: "12s", "3.700s"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _wait_s(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            return float(headers[name]) / scale
        except (KeyError, ValueError):
            continue
    return None


def _to_google(response: Response, vertex: bool) -> Response:
    """Re-render an OpenAI-shaped error from the guard in Google's shape."""
    try:
        error = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):
        return response
    if not isinstance(error, dict) or isinstance(error.get("status"), str):
        return response  # already Google's
    status = response.status_code
    drop = ("content-length", "content-type", "retry-after", "retry-after-ms")
    headers = {k: v for k, v in response.headers.items() if k not in drop}
    message = str(error.get("message") or "")
    details: list[dict[str, object]] | None = None
    if status == 401 and vertex:
        message = (
            "Request is missing required authentication credential. Expected OAuth 2 access token, login "
            "cookie or other valid authentication credential. (mmq simulator: any bearer token works)"
        )
    elif status == 401:
        status, message = (
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use "
            "API Key or other form of API consumer identity to call this API. (mmq simulator: any key works)",
        )
    elif status == 429:
        details = [
            {
                "@type": QUOTA_FAILURE,
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                    }
                ],
            }
        ]
        message = f"You exceeded your current quota, please check your plan and billing details. ({message})"
    elif status == 503:
        message = f"The model is overloaded. Please try again later. ({message})"
    wait = _wait_s(response.headers)
    if wait is not None:  # Google says when to come back in RetryInfo, not in a header
        details = [*(details or []), {"@type": RETRY_INFO, "retryDelay": _retry_delay(wait)}]
    return GoogleError(status, message, details, headers).response()


def studio_key(request: Request) -> str:
    """AI Studio's key reader: x-goog-api-key or ?key= (either wins over a bearer token), else OAuth."""
    key = (request.headers.get("x-goog-api-key") or request.query_params.get("key") or "").strip()
    return key or bearer_key(request)


def _dialect(endpoint: Handler, vertex: bool) -> Handler:
    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        return _to_google(response, vertex) if response.status_code >= 400 else response

    return wrapper


_ACTIONS: dict[str, Handler] = {"generateContent": generate_content, "predict": predict}
_VERTEX_MODELS = "/projects/{project}/locations/{location}/publishers/google/models/{model}"
# route prefix -> is it Vertex AI
_PREFIXES: dict[str, bool] = {
    "/v1beta/models/{model}": False,
    "/v1" + _VERTEX_MODELS: True,
    "/v1beta1" + _VERTEX_MODELS: True,
}


def gemini_routes() -> list[Route]:
    """The Google-dialect routes, guarded like the OpenAI ones (stats count each path template)."""
    return [
        Route(
            f"{prefix}:{action}",
            _dialect(
                guarded(handler, f"{prefix}:{action}", key=bearer_key if vertex else studio_key), vertex
            ),
            methods=["POST"],
        )
        for prefix, vertex in _PREFIXES.items()
        for action, handler in _ACTIONS.items()
    ]
