"""What a template is: the spec users write, the version that is saved, and the checks between them.

A template holds the request body of one kind (`url`, default /v1/chat/completions): `model`, the kind's
main field (`messages` for chat, `prompt` for image generation, `input` for speech) and `parameters`
(temperature, max_tokens, size, voice, …), plus an optional routing config and cache options that apply
to every job of a run.

Versions are content hashes: the version id is the first 12 hex digits of the SHA-256 of the template's
canonical JSON (sorted keys, no name), so saving the same content again gives the same version.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mmq.request_models import URL_BY_KIND, Kind, kind_for_url, parse_request
from producer.options import format_validation_error
from producer.templates.rendering import VARIABLE, as_text, render, variables_of

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
VERSION_LEN = 12
# the field of the body that carries the content, per kind (the others take theirs in `parameters`)
MAIN_FIELD: dict[Kind, str] = {Kind.chat: "messages", Kind.image: "prompt", Kind.speech: "input"}
_PROBE = "https://mmq.invalid/template-variable"  # stands in for every variable when a template is checked
READ_ONLY = frozenset({"object", "version", "created_at", "kind", "variables", "blobs", "latest", "created"})


class TemplateError(ValueError):
    """A template that cannot be saved, or rows that cannot be read at all; the message says why."""


class TemplateNotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such template"


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
    except ValueError as e:  # NaN, Infinity, nesting past MAX_JSON_DEPTH
        raise TemplateError(str(e)) from None
    return kind


def _keys(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)
