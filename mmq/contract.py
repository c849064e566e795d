"""The job contract: request bodies in the OpenAI shapes, job and batch records, statuses.

Producers validate against these models before anything reaches Redis; workers read the same models back.
Unknown top-level request parameters are kept and forwarded (providers add parameters faster than we
can list them); the parts we act on (messages, content parts, media references) are validated strictly.
"""

from __future__ import annotations

import json
import time
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


# ------------------------------------------------------------------------------------------- records
class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    budget = "budget"  # waiting for a budget: resumes when it is raised or spending in flight settles
    provider_batch = "provider_batch"  # sent (or about to be) through its provider's own batch API
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class Priority(StrEnum):
    """Queue order: every due high job runs before any normal one, every normal before any low."""

    high = "high"
    normal = "normal"
    low = "low"


class Tier(StrEnum):
    """How a batch's jobs are called: `realtime` (each its own call), `batch` (the eligible ones through
    their provider's own batch API, at its batch price), `auto` (batch when the deadline leaves room)."""

    realtime = "realtime"
    batch = "batch"
    auto = "auto"


class OnBudget(StrEnum):
    """What a job does when its call would take a budget past its limit."""

    wait = "wait"  # `budget` state: resumes when the budget is raised or in-flight spending settles
    fail = "fail"  # fails with `budget_exceeded`


class BatchStatus(StrEnum):
    in_progress = "in_progress"
    completed = "completed"  # every job ended (some may have failed)
    expired = "expired"  # the deadline passed: jobs that had not run failed with batch_expired
    cancelling = "cancelling"  # cancel asked: queued jobs are cancelled, running ones finish
    cancelled = "cancelled"


class JobError(BaseModel):
    type: str  # invalid_request | invalid_media | provider_error | timeout | internal
    message: str
    provider_status: int | None = None
    code: str | None = None


class Attempt(BaseModel):
    target: str
    status: int | None = None  # HTTP status, None when no answer arrived
    latency_ms: float
    error: str | None = None
    at: float = Field(default_factory=time.time)  # the last of `repeats`
    skipped: bool = False  # not called: the target's circuit was open
    tier: str | None = None  # "batch": answered through the provider's batch API (None: realtime)
    provider_batch: str | None = None  # … in this provider batch
    # the same outcome several times in a row (a target down for hours, a job deferred again and again)
    # is one entry: the record stays bounded however long the job waits
    repeats: int = Field(default=1, ge=1)

    def same_as(self, other: Attempt) -> bool:
        return (self.target, self.status, self.error, self.skipped) == (
            other.target,
            other.status,
            other.error,
            other.skipped,
        )


class JobCost(BaseModel):
    """What a job's provider call cost (mmq/pricing priced its reported usage; the job record and its API
    view carry it). `missing`: why it is not priced ("no price for openai/x"): the job still ran."""

    usd: str  # an exact decimal, as text
    micro_usd: int  # rounded up: what the batch's and the tenant's counters add
    tier: str = "realtime"
    priced_as: str | None = None
    missing: str | None = None
    estimated: bool = False  # some quantity came from a rule, not from the provider's usage
    saved_micro_usd: int = 0  # the batch tier: what the same usage costs realtime, less what it cost


class ResultFile(BaseModel):
    key: str  # storage key
    content_type: str
    bytes: int


class JobResult(BaseModel):
    """Where a job's output lives. `body_key` holds the OpenAI-shaped response JSON."""

    body_key: str
    files: list[ResultFile] = Field(default_factory=list)


class MediaPrep(BaseModel):
    """Proactive downscaling for a job or batch: smaller images cost less and answer sooner."""

    model_config = ConfigDict(extra="forbid")
    max_side: int | None = Field(default=None, gt=0)  # pixels, longest side
    max_bytes: int | None = Field(default=None, gt=0)


class CacheLevel(StrEnum):
    exact = "exact"  # the bytes of every input
    pixels = "pixels"  # decoded pixels: the same image re-encoded losslessly or with other metadata
    perceptual = "perceptual"  # opt-in: a 64-bit perceptual hash within a Hamming distance


class CacheOptions(BaseModel):
    """How a job or batch uses the result cache. `cache: false` in a request is `enabled=False`."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    level: CacheLevel = CacheLevel.exact
    ttl_s: int | None = Field(default=None, gt=0)  # None: the worker's MMQ_CACHE_TTL_S
    refresh: bool = False  # call the provider even on a hit, and replace the entry
    threshold: int | None = Field(default=None, ge=0, le=16)  # perceptual: max differing bits

    @classmethod
    def parse(cls, value: CacheOptions | dict[str, Any] | bool | str | None) -> CacheOptions | None:
        """None (the defaults), a bool, a dict, or JSON text of either."""
        if value is None or isinstance(value, CacheOptions):
            return value
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, bool):
            return cls(enabled=value)
        return cls.model_validate(value)


class JobRecord(BaseModel):
    id: str
    batch_id: str | None = None
    custom_id: str | None = None
    tenant: str
    kind: Kind
    request: dict[str, Any] | None = None  # small requests are kept inline
    request_key: str | None = None  # large ones go to storage
    config: dict[str, Any] | None = None  # routing config (Portkey schema), validated at submit
    metadata: dict[str, Any] = Field(default_factory=dict)  # for conditional routing
    media: MediaPrep | None = None
    cache: CacheOptions | None = None  # None: the defaults (exact level)
    priority: Priority = Priority.normal
    tier: Tier = Tier.realtime  # its batch's tier: `batch`/`auto` may send it through a provider batch
    deadline: float | None = None  # epoch s: a job that has not run by then fails with batch_expired
    cache_key: str | None = None  # set at submit when every input is at hand, else by the worker
    status: JobStatus = JobStatus.queued
    cached: bool = False  # answered from the cache: no provider call
    cached_from: str | None = None  # the job whose result this one shares
    attempts: list[Attempt] = Field(default_factory=list)
    resume: dict[str, Any] | None = None  # {"target", "tries"}: where a deferred job picks up again
    result: JobResult | None = None
    usage: dict[str, Any] | None = None
    cost: JobCost | None = None  # set once a provider answered (a cache hit costs nothing)
    error: JobError | None = None
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None


class BatchCounts(BaseModel):
    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    budget: int = 0  # waiting for a budget (resumable)
    provider_batch: int = 0  # in the providers' own batches (the batch tier)
    cached: int = 0
    provider_calls: int = 0  # calls made by this batch's finished jobs (retries and fallbacks included)
    # lines a provider batch finished during its cancellation after their jobs had run realtime (the
    # batch tier's fallback): the only jobs it pays twice
    paid_twice: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled


class BatchRecord(BaseModel):
    id: str
    tenant: str
    status: BatchStatus = BatchStatus.in_progress
    sealed: bool = False  # every line has been submitted; until then a batch cannot complete
    # why its submission ended before its input did: `submission_interrupted` (its process stopped or
    # died; sealed with the lines it had sent, mmq/submissions.py), at `interrupted_at`
    interrupted: str | None = None
    interrupted_at: float | None = None
    counts: BatchCounts = Field(default_factory=BatchCounts)
    invalid_lines: int = 0
    metadata: dict[str, str] = Field(default_factory=dict)
    priority: Priority = Priority.normal
    not_before: float | None = None  # epoch s: no job starts before (a scheduled window)
    deadline: float | None = None  # epoch s: what has not run by then expires
    webhook_url: str | None = None  # POSTed the batch when it ends
    config: dict[str, Any] | None = None  # the routing config of every job, stored once on the batch
    max_cost_micro_usd: int | None = None  # the batch's budget (millionths of a dollar); None: none
    on_budget: OnBudget = OnBudget.wait  # what a job does when the budget would be exceeded
    tier: Tier = Tier.realtime  # resolved at submit (`auto` with no deadline an hour away: realtime)
    spent_micro_usd: int = 0  # what its jobs' provider calls cost (added as each job ends)
    reserved_micro_usd: int = 0  # estimates held by calls in flight against its budget
    saved_micro_usd: int = 0  # what the batch tier saved against the same usage realtime
    created_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
