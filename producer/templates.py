"""Prompt templates: a saved request with `{{variables}}`, run once per row of a CSV or JSONL file.

    store = TemplateStore(redis, storage)
    template, created = await store.save("acme", {"name": "caption", "messages": [...], "model": "…"})
    batch = await run_template(redis, storage, settings, template, read_rows(lines, "csv"), tenant="acme")

A template holds the request body of one kind (`url`, default /v1/chat/completions): `model`, the kind's
main field (`messages` for chat, `prompt` for image generation, `input` for speech) and `parameters`
(temperature, max_tokens, size, voice, …), plus an optional routing config and cache options that apply
to every job of a run.

Rendering replaces `{{name}}` (spaces inside the braces allowed) in string values only, in one pass: a
value that itself contains `{{x}}` stays as written, nothing is evaluated, and values are put into
already-parsed JSON strings, so quotes or newlines in a value cannot change the request's structure.

Versions are content hashes: the version id is the first 12 hex digits of the SHA-256 of the template's
canonical JSON (sorted keys, no name), so saving the same content again gives the same version. An image
or PDF written into the template as a data: URL is stored once, as a content-addressed blob, when the
template is saved; the stored template and every job rendered from it carry only the blob reference.

Redis layout (tenant percent-encoded so that no tenant's keys can collide with another's):
    {p}:templates:{tenant}                 HASH  name → latest version
    {p}:templates:{tenant}:{name}          HASH  version → template JSON (small: media is in blobs)
    {p}:template-blobs:{tenant}            SET   blob refs this tenant's templates created
Below `{p}:templates:{tenant}:` there are only user-chosen names, and every internal key lives in a
name space of its own: no template name (not even `blobs`) can land on one.
"""

from __future__ import annotations

import codecs
import copy
import csv
import hashlib
import io
import json
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from redis.asyncio import Redis

from mmq.contract import (
    BLOB_SCHEME,
    URL_BY_KIND,
    BatchRecord,
    JobStatus,
    Kind,
    MediaPrep,
    chat_media_slots,
    kind_for_url,
    parse_request,
)
from mmq.errors import InvalidJob
from mmq.media import IMAGE_TYPES, PDF_TYPES, MediaError, document_type, parse_data_url, sniff
from mmq.records import Records
from mmq.settings import Settings
from mmq.storage import Storage, put_blob
from producer.export import export_batch
from producer.submit import (
    BatchLine,
    LineError,
    Producer,
    format_validation_error,
    validate_cache,
    validate_config,
)
from producer.workflows import caption_text, iter_jobs, job_error, result_body

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
VERSION_LEN = 12
MAX_TEMPLATE_BYTES = 256 * 1024  # the stored JSON, media excluded: it lives in Redis
MAX_RECORD_BYTES = 64 * 1024 * 1024  # one row (a data: URL in a cell can be a few MB)
# `{{ name }}`: letters, digits, `_` and `-`; anything else between braces stays as written
VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")
# the field of the body that carries the content, per kind (the others take theirs in `parameters`)
MAIN_FIELD: dict[Kind, str] = {Kind.chat: "messages", Kind.image: "prompt", Kind.speech: "input"}
_PROBE = "https://mmq.invalid/template-variable"  # stands in for every variable when a template is checked
RowFormat = Literal["csv", "jsonl"]
READ_ONLY = frozenset({"object", "version", "created_at", "kind", "variables", "blobs", "latest", "created"})


class TemplateError(ValueError):
    """A template that cannot be saved, or rows that cannot be read at all; the message says why."""


class TemplateNotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such template"


# ============================================================================================ model
class TemplateSpec(BaseModel):
    """A template as users write it (a JSON file, the API's body)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="letters, digits, . _ - (no @)")
    description: str | None = None
    url: str = Field(default="/v1/chat/completions", description="the kind, as an OpenAI path")
    model: str | None = None
    messages: list[dict[str, Any]] | None = Field(default=None, description="chat; {{vars}} in any string")
    prompt: str | None = Field(default=None, description="image generation")
    input: str | None = Field(default=None, description="speech")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="the rest of the body: temperature, max_tokens, size, voice, …"
    )
    config: dict[str, Any] | None = Field(default=None, description="routing config (Portkey schema)")
    cache: dict[str, Any] | bool | None = Field(
        default=None, description='false, or {"level": "exact"|"pixels"|"perceptual", "ttl_s", "refresh"}'
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        # what `show` / GET add (version, variables, …): a shown template can be edited and saved again
        if isinstance(data, dict) and cls is TemplateSpec:
            return {k: v for k, v in data.items() if k not in READ_ONLY}
        return data

    def content(self) -> dict[str, Any]:
        """What the version hashes: everything but the name."""
        return self.model_dump(mode="json", exclude={"name"}, exclude_none=True)

    def body(self) -> dict[str, Any]:
        """The request body with its `{{variables}}` still in it."""
        body = copy.deepcopy(self.parameters)
        for key in ("model", "messages", "prompt", "input"):
            value = getattr(self, key)
            if value is not None:
                body[key] = copy.deepcopy(value)
        return body


class Template(TemplateSpec):
    """A saved version. `blobs`: the blob refs of its own media, which its rendered jobs may carry."""

    version: str
    created_at: float
    kind: Kind
    variables: list[str]
    blobs: list[str] = Field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def missing(self, values: Mapping[str, Any]) -> list[str]:
        return [name for name in self.variables if as_text(values.get(name)) is None]

    def render(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The request body for one row. Raises TemplateError naming every missing variable."""
        missing = self.missing(values)
        if missing:
            raise TemplateError(f"missing variable {', '.join('{{' + m + '}}' for m in missing)}")
        return render(self.body(), values)

    def view(self, latest: str | None = None) -> dict[str, Any]:
        out = {"object": "mmq.template", **self.model_dump(mode="json", exclude_none=True)}
        if latest is not None:
            out["latest"] = latest == self.version
        return out


class VersionInfo(BaseModel):
    version: str
    created_at: float
    latest: bool


def version_of(spec: TemplateSpec) -> str:
    canonical = json.dumps(spec.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:VERSION_LEN]


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`name` or `name@version`."""
    name, sep, version = ref.partition("@")
    if not re.fullmatch(NAME_PATTERN, name) or (sep and not re.fullmatch(r"[0-9a-f]{1,64}", version)):
        raise TemplateNotFound(f"{ref!r} is not a template name or name@version")
    return name, (version or None)


# ============================================================================================ rendering
def _strings(value: Any) -> Iterator[str]:
    """Every string value (not keys) in a JSON-like structure, in document order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def variables_of(value: Any) -> list[str]:
    """The variable names used anywhere in `value`, in order of first use."""
    seen: dict[str, None] = {}
    for text in _strings(value):
        for match in VARIABLE.finditer(text):
            seen.setdefault(match[1], None)
    return list(seen)


def as_text(value: Any) -> str | None:
    """A row's value as the text to insert; None when it counts as missing (absent, null, empty: an empty
    cell is almost always a mistake, and rendering "Describe ." would still be paid for)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)  # objects and arrays of a JSONL row, as JSON text


def render(value: Any, values: Mapping[str, Any]) -> Any:
    """A copy of `value` with `{{name}}` replaced in every string value. One pass per string: inserted
    text is never scanned again. Unknown names stay as written (callers check `missing` first)."""

    def sub(match: re.Match[str]) -> str:
        text = as_text(values.get(match[1]))
        return match[0] if text is None else text

    if isinstance(value, str):
        return VARIABLE.sub(sub, value)
    if isinstance(value, dict):
        return {k: render(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, values) for v in value]
    return value


# ============================================================================================ checking
def check_spec(spec: TemplateSpec) -> Kind:
    """The template's kind; raises TemplateError when its body could never be a valid request."""
    try:
        kind = kind_for_url(spec.url)
    except ValueError as e:
        raise TemplateError(f"url: {e}") from None
    main = MAIN_FIELD.get(kind)
    for key in ("messages", "prompt", "input"):
        if getattr(spec, key) is not None and key != main:
            raise TemplateError(f"{key}: not used by {URL_BY_KIND[kind]} templates")
        if key in spec.parameters:
            raise TemplateError(f"parameters.{key}: give it as the template's own `{key}`")
    if "model" in spec.parameters:
        raise TemplateError("parameters.model: give it as the template's own `model`")
    if main and getattr(spec, main) is None:
        raise TemplateError(f"{main}: required for {URL_BY_KIND[kind]} templates")
    if any(not isinstance(k, str) or VARIABLE.search(k) for k in _keys(spec.body())):
        raise TemplateError("variables go in string values, not in keys")
    probe = render(spec.body(), {name: _PROBE for name in variables_of(spec.body())})
    try:
        parse_request(kind, probe)
    except ValidationError as e:
        raise TemplateError(format_validation_error(e)) from None
    return kind


def _keys(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


# ============================================================================================ store
def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class TemplateStore:
    def __init__(
        self, redis: Redis, storage: Storage, prefix: str = "mmq", custom_hosts: Sequence[str] = ()
    ) -> None:
        """`custom_hosts`: the base URLs a saved config's custom_host may name (submit.allowed_hosts)."""
        self.redis = redis
        self.storage = storage
        self.prefix = prefix
        self.custom_hosts = custom_hosts

    # ------------------------------------------------------------------ keys
    def _tenant(self, tenant: str) -> str:
        return f"{self.prefix}:templates:{quote(tenant, safe='')}"

    def names_key(self, tenant: str) -> str:
        return self._tenant(tenant)

    def versions_key(self, tenant: str, name: str) -> str:
        return f"{self._tenant(tenant)}:{name}"

    def blobs_key(self, tenant: str) -> str:
        # not under _tenant(): that name space is the users', and a template may be called `blobs`
        return f"{self.prefix}:template-blobs:{quote(tenant, safe='')}"

    # ------------------------------------------------------------------ save
    async def _externalize(self, tenant: str, body: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Moves the template's own data: media (chat images, PDFs) to blob storage, in place.
        Returns (every blob ref of the body, the refs stored now)."""
        refs: list[str] = []
        stored: list[str] = []
        for slot in chat_media_slots(body):
            value = slot.value
            if value.startswith(BLOB_SCHEME):
                refs.append(value)
                continue
            if not value.startswith("data:"):
                continue
            if VARIABLE.search(value):
                raise TemplateError(f"{slot.where}: a data: URL cannot contain variables")
            try:
                _, data = parse_data_url(value)
                mime = sniff(data) if slot.media == "image" else document_type(data, value, slot.where)
            except (MediaError, InvalidJob) as e:
                raise TemplateError(f"{slot.where}: {e}") from None
            if slot.media == "image" and mime not in IMAGE_TYPES:
                raise TemplateError(f"{slot.where}: bytes look like {mime or 'unknown data'}, not an image")
            if mime not in IMAGE_TYPES | PDF_TYPES:
                continue  # CSV / plain text documents stay inline, as in any request
            ref = BLOB_SCHEME + await put_blob(self.storage, data, mime or "application/octet-stream")
            slot.set(ref)
            refs.append(ref)
            stored.append(ref)
        # a ref written by the user must be one this tenant's templates stored earlier (a template shown
        # by `GET` and saved again); any other would let a tenant name another's blobs by their hash
        known = await self.redis.smismember(self.blobs_key(tenant), refs) if refs else []
        for ref, ok in zip(refs, known, strict=True):
            if not ok and ref not in stored:
                raise TemplateError(f"{ref}: mmq-blob:// references are internal; put the media itself")
        return refs, stored

    async def save(self, tenant: str, spec: TemplateSpec | Mapping[str, Any]) -> tuple[Template, bool]:
        """Stores a version; returns it and whether it is new. Saving the same content again returns
        the existing version (and makes it the latest again). Raises TemplateError."""
        try:
            spec = spec if isinstance(spec, TemplateSpec) else TemplateSpec.model_validate(spec)
        except ValidationError as e:
            raise TemplateError(format_validation_error(e)) from None
        kind = check_spec(spec)
        updates: dict[str, Any] = {"url": URL_BY_KIND[kind]}
        try:
            if spec.config is not None:
                updates["config"] = validate_config(spec.config, self.custom_hosts)
            options = validate_cache(spec.cache)
        except LineError as e:
            raise TemplateError(str(e)) from None
        updates["cache"] = (
            (options.model_dump(mode="json", exclude_defaults=True) or None) if options else None
        )
        # stored canonically, so the same content always hashes to the same version
        spec = spec.model_copy(update=updates)
        refs: list[str] = []
        stored: list[str] = []
        if kind is Kind.chat and spec.messages is not None:
            messages = copy.deepcopy(spec.messages)
            refs, stored = await self._externalize(tenant, {"messages": messages})
            spec = spec.model_copy(update={"messages": messages})
        # a ref anywhere but a media slot (a text, a parameter) would make every rendered job fail
        if any(BLOB_SCHEME in s and s not in refs for s in _strings(spec.body())):
            raise TemplateError("mmq-blob:// references are internal; put the media itself (a data: URL)")
        template = Template(
            **spec.model_dump(),
            version=version_of(spec),
            created_at=time.time(),
            kind=kind,
            variables=variables_of(spec.body()),
            blobs=sorted(set(refs)),
        )
        encoded = template.model_dump_json(exclude_none=True)
        if len(encoded) > MAX_TEMPLATE_BYTES:
            raise TemplateError(
                f"template is {len(encoded)} bytes, over {MAX_TEMPLATE_BYTES}; media in data: URLs is "
                "stored apart, text this long belongs in a variable"
            )
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(self.versions_key(tenant, spec.name), template.version, encoded)
        pipe.hset(self.names_key(tenant), spec.name, template.version)
        if stored:
            pipe.sadd(self.blobs_key(tenant), *stored)
        created = bool((await pipe.execute())[0])
        if not created:  # the first save's record (its created_at) stays
            template = await self.get(tenant, spec.name, template.version)
        return template, created

    # ------------------------------------------------------------------ read
    async def latest(self, tenant: str, name: str) -> str | None:
        raw = await self.redis.hget(self.names_key(tenant), name)
        return _s(raw) if raw is not None else None

    async def get(self, tenant: str, ref: str, version: str | None = None) -> Template:
        """`ref` is `name` or `name@version`; `version` may also be given apart. Raises TemplateNotFound."""
        name, pinned = parse_ref(ref)
        if pinned and version and pinned != version:
            raise TemplateNotFound(f"{ref!r} and version {version!r} disagree")
        version = pinned or version or await self.latest(tenant, name)
        raw = await self.redis.hget(self.versions_key(tenant, name), version) if version else None
        if raw is None:
            raise TemplateNotFound(f"no template {name}" + (f"@{version}" if pinned or version else ""))
        return Template.model_validate_json(raw)

    async def list(self, tenant: str) -> list[tuple[Template, int]]:
        """The latest version of each template, by name, with its number of versions."""
        names = {_s(k): _s(v) for k, v in (await self.redis.hgetall(self.names_key(tenant))).items()}
        ordered = sorted(names)
        pipe = self.redis.pipeline(transaction=False)
        for name in ordered:
            pipe.hget(self.versions_key(tenant, name), names[name])
            pipe.hlen(self.versions_key(tenant, name))
        found = await pipe.execute()
        out = []
        for i in range(len(ordered)):
            raw, count = found[2 * i], found[2 * i + 1]
            if raw is not None:
                out.append((Template.model_validate_json(raw), int(count)))
        return out

    async def versions(self, tenant: str, name: str) -> list[VersionInfo]:
        """Every version of `name`, oldest first. Raises TemplateNotFound."""
        name, _ = parse_ref(name)
        raw = await self.redis.hgetall(self.versions_key(tenant, name))
        if not raw:
            raise TemplateNotFound(f"no template {name}")
        latest = await self.latest(tenant, name)
        found = sorted((Template.model_validate_json(v) for v in raw.values()), key=lambda t: t.created_at)
        return [
            VersionInfo(version=t.version, created_at=t.created_at, latest=t.version == latest) for t in found
        ]


# ============================================================================================ rows
@dataclass
class Row:
    """One row of variables. `number` counts data rows from 1; `line_no` is where it starts in the file."""

    number: int
    line_no: int
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def custom_id(self) -> str:
        for key in ("custom_id", "id"):
            value = as_text(self.values.get(key))
            if value is not None:
                return value
        return str(self.number)


async def aiter_text_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, bool]]:
    """(line without its end, decoded fine) from a byte stream, one line at a time. A line that is not
    UTF-8 comes through replaced and flagged, so only its row fails."""
    pending: list[bytes] = []
    first = True

    def decode(raw: bytes) -> tuple[str, bool]:
        nonlocal first
        if first:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # Excel writes one
            first = False
        raw = raw.removesuffix(b"\r")
        try:
            return raw.decode(), True
        except UnicodeDecodeError:
            return raw.decode(errors="replace"), False

    async for chunk in chunks:
        if b"\n" not in chunk:  # a long line (a data: URL in a cell) is joined once, not re-split per chunk
            pending.append(chunk)
            continue
        *lines, rest = chunk.split(b"\n")
        lines[0] = b"".join([*pending, lines[0]])
        pending = [rest] if rest else []
        for raw in lines:
            yield decode(raw)
    if pending:
        yield decode(b"".join(pending))


async def aiter_file_lines(path: Path, size: int = 1 << 16) -> AsyncIterator[tuple[str, bool]]:
    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(size):
                yield chunk

    async for line in aiter_text_lines(chunks()):
        yield line


def row_format(name: str) -> RowFormat:
    """csv or jsonl, from a file name or a content type."""
    lowered = name.lower().split(";")[0].strip()
    if lowered.endswith(("csv", "text/csv")):
        return "csv"
    if lowered.endswith(("jsonl", "ndjson", "json-lines", "jsonlines")):
        return "jsonl"
    raise TemplateError(f"{name}: rows must be CSV (with a header) or JSONL (one object per line)")


class RowReader:
    """Rows from lines of CSV (the first record is the header) or JSONL. `await open()` reads the header,
    so a file that cannot be read at all is refused before any batch exists; afterwards nothing raises: a
    bad row becomes a Row with `error`, and a stream that goes bad ends with one error row."""

    def __init__(self, lines: AsyncIterable[tuple[str, bool]], fmt: RowFormat) -> None:
        self._lines = aiter(lines)
        self.fmt = fmt
        self.header: list[str] | None = None
        self._line_no = 0

    async def _next_record(self) -> tuple[int, str, bool] | None:
        """(first line number, text, decoded fine) of the next non-blank CSV record, whose quoted fields
        may span lines: a record is complete when its quotes balance."""
        parts: list[str] = []
        ok = True
        start = 0
        size = 0
        async for text, good in self._lines:
            self._line_no += 1
            if not parts and not text.strip():
                continue
            if not parts:
                start = self._line_no
            parts.append(text)
            ok = ok and good
            size += len(text)
            if size > MAX_RECORD_BYTES:
                raise TemplateError(f"line {start}: a row over {MAX_RECORD_BYTES} bytes (an unclosed quote?)")
            joined = "\n".join(parts)
            if joined.count('"') % 2 == 0:
                return start, joined, ok
        if parts:
            raise TemplateError(f"line {start}: unclosed quote: the row never ends")
        return None

    @staticmethod
    def _fields(text: str) -> list[str]:
        rows = list(csv.reader(io.StringIO(text), strict=True))
        return rows[0] if rows else []

    async def open(self) -> None:
        if self.fmt != "csv":
            return
        first = await self._next_record()
        if first is None:
            raise TemplateError("empty CSV: the first line must be a header naming the variables")
        line_no, text, ok = first
        try:
            names = [n.strip() for n in self._fields(text)] if ok else []
        except csv.Error as e:
            raise TemplateError(f"CSV header (line {line_no}): {e}") from None
        if not ok:
            raise TemplateError(f"CSV header (line {line_no}) is not UTF-8 text")
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise TemplateError(
                f"CSV header (line {line_no}) must name each column once, got {','.join(names)!r}"
            )
        self.header = names

    async def __aiter__(self) -> AsyncIterator[Row]:
        number = 0
        try:
            if self.fmt == "csv":
                assert self.header is not None, "call open() first"
                while (record := await self._next_record()) is not None:
                    number += 1
                    yield self._csv_row(number, *record)
            else:
                async for text, ok in self._lines:
                    self._line_no += 1
                    if text.strip():
                        number += 1
                        yield self._jsonl_row(number, self._line_no, text, ok)
        except TemplateError as e:  # the stream went bad: say so in one failed row, keep what was read
            yield Row(number + 1, self._line_no, error=f"{e}; rows after this one were not read")

    def _csv_row(self, number: int, line_no: int, text: str, ok: bool) -> Row:
        assert self.header is not None
        if not ok:
            return Row(number, line_no, error="not UTF-8 text")
        try:
            fields = self._fields(text)
        except csv.Error as e:
            return Row(number, line_no, error=f"unreadable CSV ({e})")
        values = dict(zip(self.header, fields, strict=False))  # a short row lacks the last columns
        row = Row(number, line_no, values)
        if any(f.strip() for f in fields[len(self.header) :]):
            row.error = (
                f"{len(fields)} fields but the header has {len(self.header)} (quote values containing commas)"
            )
        return row

    @staticmethod
    def _jsonl_row(number: int, line_no: int, text: str, ok: bool) -> Row:
        if not ok:
            return Row(number, line_no, error="not UTF-8 text")
        try:
            obj = json.loads(text)
        except ValueError as e:
            return Row(number, line_no, error=f"not valid JSON ({e})")
        if not isinstance(obj, dict):
            return Row(number, line_no, error="a row must be a JSON object of variables")
        return Row(number, line_no, obj)


async def read_rows(lines: AsyncIterable[tuple[str, bool]], fmt: RowFormat) -> RowReader:
    """An opened RowReader (the CSV header read and checked). Raises TemplateError."""
    reader = RowReader(lines, fmt)
    await reader.open()
    return reader


# ============================================================================================ running
def line_for(template: Template, row: Row) -> BatchLine:
    """The batch line of one row: a rendered request, or a line that fails with the row's problem."""
    where = f" in row {row.number}"
    error = row.error
    body = None
    if error is None:
        try:
            body = template.render(row.values)
        except TemplateError as e:
            error = str(e)
    return BatchLine(
        body=body,
        url=template.url,
        custom_id=row.custom_id,
        line_no=row.line_no,
        error=f"{error}{where}" if error else None,
    )


async def _lines(template: Template, rows: AsyncIterable[Row]) -> AsyncIterator[BatchLine]:
    async for row in rows:
        yield line_for(template, row)


async def run_template(
    redis: Redis,
    storage: Storage,
    settings: Settings,
    template: Template,
    rows: AsyncIterable[Row],
    *,
    tenant: str,
    metadata: dict[str, str] | None = None,
    config: dict[str, Any] | str | None = None,
    cache: dict[str, Any] | bool | str | None = None,
    media: MediaPrep | dict[str, Any] | str | None = None,
    allow_local_paths: bool = False,
    base_dir: Path | None = None,
    **schedule: Any,
) -> BatchRecord:
    """One batch: a job per row. `config` / `cache` replace the template's own when given; `schedule`
    (priority, not_before, deadline, webhook_url) goes to Producer.submit_batch as is. Raises LineError
    for a bad option (before any job exists)."""
    producer = Producer(
        redis,
        storage,
        settings,
        allow_local_paths=allow_local_paths,
        base_dir=base_dir,
        trusted_blob_refs=frozenset(template.blobs),  # the template's own media, and nothing else
    )
    return await producer.submit_batch(
        _lines(template, rows),
        tenant=tenant,
        metadata={**(metadata or {}), "template": template.ref},
        config=config if config is not None else template.config,
        cache=cache if cache is not None else template.cache,
        media=media,
        **schedule,
    )


# ============================================================================================ outputs
async def write_results(records: Records, storage: Storage, batch_id: str, out: Path) -> tuple[int, int, int]:
    """`out/output.jsonl` (the OpenAI Batch output), every result file under `out/files/`, and
    `out/results.csv` (custom_id, status, text, error): the answer text of chat and transcription jobs.
    Returns (succeeded, not succeeded, files)."""
    files = await export_batch(records, storage, batch_id, out / "output.jsonl", out / "files")
    ok = failed = 0
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["custom_id", "status", "text", "error"])
        async for job in iter_jobs(records, batch_id):
            body = await result_body(job, storage)
            text = caption_text(body) if job.kind is Kind.chat else ""
            if job.kind in (Kind.transcription, Kind.translation) and isinstance(body, dict):
                text = str(body.get("text") or "")
            writer.writerow([job.custom_id or job.id, job.status.value, text, job_error(job) or ""])
            ok += job.status is JobStatus.succeeded
            failed += job.status is not JobStatus.succeeded
    return ok, failed, files
