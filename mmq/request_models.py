"""The request shapes mmq accepts, one per kind, in the OpenAI shapes: what every door validates.

Why apart from the records (mmq/contract.py): the producer's intake, the quotes, the simulator-facing
tests and the worker's media steps read requests without touching a job record. Unknown top-level
request parameters are kept and forwarded (providers add parameters faster than we can list them); the
parts we act on (messages, content parts, media references) are validated strictly, as are the JSON
values (no NaN or Infinity, a bounded depth).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BLOB_SCHEME = "mmq-blob://"


class Kind(StrEnum):
    chat = "chat"
    image = "image"
    speech = "speech"
    transcription = "transcription"
    translation = "translation"


# The OpenAI Batch `url` of each kind (the same paths an OpenAI-compatible server serves).
KIND_BY_URL: dict[str, Kind] = {
    "/v1/chat/completions": Kind.chat,
    "/v1/images/generations": Kind.image,
    "/v1/audio/speech": Kind.speech,
    "/v1/audio/transcriptions": Kind.transcription,
    "/v1/audio/translations": Kind.translation,
}
URL_BY_KIND: dict[Kind, str] = {kind: url for url, kind in KIND_BY_URL.items()}


def kind_for_url(url: str) -> Kind:
    path = url.split("?", 1)[0].rstrip("/")
    if not path.startswith("/v1/"):
        path = "/v1" + (path if path.startswith("/") else "/" + path)
    try:
        return KIND_BY_URL[path]
    except KeyError:
        raise ValueError(f"unsupported url {url!r}; expected one of {sorted(KIND_BY_URL)}") from None


def is_media_ref(url: str) -> bool:
    return url.startswith(BLOB_SCHEME)


GCS_SCHEME = "gs://"


def is_gcs_uri(url: str) -> bool:
    """A Cloud Storage object (gs://bucket/object): only Vertex AI reads it, by itself. mmq accepts it in
    chat media at submit, never fetches it, and a worker fails the job (per job, naming the part) when the
    route's target is not a Vertex one (worker/media_ready.py)."""
    return url.startswith(GCS_SCHEME)


def _check_media_url(url: str, what: str) -> str:
    shown = url if len(url) < 60 else url[:57] + "..."
    if is_gcs_uri(url):
        bucket, _, name = url[len(GCS_SCHEME) :].partition("/")
        if not bucket or not name or name.endswith("/"):
            raise ValueError(
                f"{what}: a gs:// URI names a bucket and an object (gs://bucket/file.png), got {shown!r}"
            )
        return url
    if url.startswith(("http://", "https://", "data:", BLOB_SCHEME)):
        return url
    raise ValueError(
        f"{what} must be an http(s) URL, a data: URL or a gs:// URI (Vertex AI targets only), got {shown!r}"
    )


# ---------------------------------------------------------------------------------------------- chat
class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Part):
    type: Literal["text"]
    text: str


class ImageURL(_Part):
    url: str
    detail: Literal["auto", "low", "high", "original"] = "auto"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_media_url(v, "image_url.url")


class ImagePart(_Part):
    type: Literal["image_url"]
    image_url: ImageURL


class FileData(_Part):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FileData:
        if not self.file_data and not self.file_id:
            raise ValueError("file part needs file_data (a data: URL) or file_id")
        if self.file_data:
            _check_media_url(self.file_data, "file.file_data")
        return self


class FilePart(_Part):
    type: Literal["file"]
    file: FileData


class InputAudio(_Part):
    data: str
    format: Literal["wav", "mp3"]


class InputAudioPart(_Part):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[TextPart | ImagePart | FilePart | InputAudioPart, Field(discriminator="type")]


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    n: int | None = Field(default=None, ge=1, le=128)
    stream: Literal[False] | None = None  # batch jobs never stream


# --------------------------------------------------------------------------------------------- image
class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=32000)
    model: str | None = None
    n: int = Field(default=1, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    style: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None

    @field_validator("size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is None or v == "auto":
            return v
        w, sep, h = v.partition("x")
        if not (sep and w.isdigit() and h.isdigit()):
            raise ValueError(f"size must look like 1024x1024 or 'auto', got {v!r}")
        return v


# -------------------------------------------------------------------------------------------- speech
class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str = Field(min_length=1, max_length=4096)
    voice: str | dict[str, str]
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float | None = Field(default=None, ge=0.25, le=4.0)
    instructions: str | None = None


# ------------------------------------------------------------------------------- transcription/translation
class TranscriptionRequest(BaseModel):
    """`file` is a media reference: a path (local producers only), a data: URL, or an mmq blob ref."""

    model_config = ConfigDict(extra="allow")

    file: str
    model: str
    language: str | None = None
    prompt: str | None = None
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt"] = "json"
    temperature: float | None = Field(default=None, ge=0, le=1)
    timestamp_granularities: list[Literal["word", "segment"]] | None = None
    filename: str | None = None  # the name sent to the provider (some sniff the format from it)


class TranslationRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    file: str
    model: str
    prompt: str | None = None
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt"] = "json"
    temperature: float | None = Field(default=None, ge=0, le=1)
    filename: str | None = None


REQUEST_MODELS: dict[Kind, type[BaseModel]] = {
    Kind.chat: ChatRequest,
    Kind.image: ImageRequest,
    Kind.speech: SpeechRequest,
    Kind.transcription: TranscriptionRequest,
    Kind.translation: TranslationRequest,
}


# How deep a request may nest. Real requests nest about six levels (messages → content → part → image_url
# → url); a body 200 levels deep was accepted and then unreadable by the worker and the API, and one past
# ~1,000 crashed the parser. 64 is far past any real shape.
MAX_JSON_DEPTH = 64


def check_json_values(body: Any, where: str = "body") -> None:
    """Refuse what JSON cannot carry or mmq cannot read back, naming where: NaN and ±Infinity (Python's
    json reads them; they turned into null, and two requests that differed only there shared a cache
    entry) and nesting deeper than MAX_JSON_DEPTH. Raises ValueError."""
    stack: list[tuple[Any, str, int]] = [(body, where, 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(
                    f"{path}: {value} is not a JSON number (the OpenAI API refuses NaN and Infinity)"
                )
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(item, float | dict | list):
                    step = f"{path}.{key}" if isinstance(value, dict) else f"{path}[{key}]"
                    stack.append((item, step, depth + 1))


def parse_request(kind: Kind, body: Any) -> BaseModel:
    """Validate a request body for `kind`; raises pydantic.ValidationError with the offending field, or
    ValueError for a value JSON cannot carry (see check_json_values)."""
    check_json_values(body)
    return REQUEST_MODELS[kind].model_validate(body)


def dump_request(request: BaseModel) -> dict[str, Any]:
    # exclude_none keeps provider defaults in charge and bodies small in Redis
    return request.model_dump(mode="json", exclude_none=True)


@dataclass
class MediaSlot:
    """One place in a chat request that holds media: `holder[field]` is its URL or data."""

    where: str  # e.g. "messages[0].content[1]", for error messages
    holder: dict[str, Any]
    field: str
    media: Literal["image", "pdf"]

    @property
    def value(self) -> str:
        return self.holder[self.field]

    def set(self, value: str) -> None:
        self.holder[self.field] = value


def chat_media_slots(body: dict[str, Any]) -> Iterator[MediaSlot]:
    """Every image and document reference in a (validated, dumped) chat request body, in order."""
    for m, message in enumerate(body.get("messages", [])):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for p, part in enumerate(content):
            where = f"messages[{m}].content[{p}]"
            if part.get("type") == "image_url":
                yield MediaSlot(where, part["image_url"], "url", "image")
            elif part.get("type") == "file" and part["file"].get("file_data"):
                yield MediaSlot(where, part["file"], "file_data", "pdf")
