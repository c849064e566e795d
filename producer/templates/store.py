"""The template store: saved versions per tenant in Redis, the templates' own media in blob storage.

An image or PDF written into the template as a data: URL is stored once, as a content-addressed blob,
when the template is saved; the stored template and every job rendered from it carry only the blob
reference. Saving the same content again gives the same version (model.version_of) and makes it the
latest again.

Redis layout (tenant percent-encoded so that no tenant's keys can collide with another's):
    {p}:templates:{tenant}                 HASH  name → latest version
    {p}:templates:{tenant}:{name}          HASH  version → template JSON (small: media is in blobs)
    {p}:template-blobs:{tenant}            SET   blob refs this tenant's templates created
Below `{p}:templates:{tenant}:` there are only user-chosen names, and every internal key lives in a
name space of its own: no template name (not even `blobs`) can land on one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from redis.asyncio import Redis

from mmq.errors import InvalidJob
from mmq.media import IMAGE_TYPES, PDF_TYPES, MediaError, document_type, parse_data_url, sniff
from mmq.request_models import BLOB_SCHEME, URL_BY_KIND, Kind, chat_media_slots
from mmq.storage import Storage, put_blob
from producer.options import LineError, format_validation_error, validate_cache, validate_config
from producer.templates.model import (
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSpec,
    VersionInfo,
    check_spec,
    parse_ref,
    version_of,
)
from producer.templates.rendering import VARIABLE, string_values, variables_of

MAX_TEMPLATE_BYTES = 256 * 1024  # the stored JSON, media excluded: it lives in Redis


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
        if any(BLOB_SCHEME in s and s not in refs for s in string_values(spec.body())):
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
