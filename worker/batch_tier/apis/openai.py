"""OpenAI Files + Batches, and the two providers that speak the same wire (Azure OpenAI, Groq).

Why: the batch tier sends eligible chat (and, at OpenAI, image generation) jobs through the provider's
own batch API at half price (../shared/reference/native_batch.md §1, §2, §7). One class speaks that
wire; `AzureBatches` and `GroqBatches` change only what the reference says differs:

    create   POST {api}/files (multipart purpose=batch, the JSONL, expires_after)  →  POST {api}/batches
             {input_file_id, endpoint, completion_window, metadata}; an upload whose create is refused
             is deleted again (Azure caps a resource's input files)
    get      GET {api}/batches/{id}
    find     GET {api}/batches?limit=100&after=<last id>, newest first, until metadata[key] == value
    cancel   POST {api}/batches/{id}/cancel
    results  GET {api}/files/{output_file_id}/content and …/{error_file_id}/content, streamed

Where {api} and the credential come from: the realtime adapter of the same provider (its `_url` and
`_headers` dialect hooks, worker/providers/openai.py), so a batch call goes exactly where, and with
exactly the key, a realtime call of that target would: OpenAI `base_url` (already ending in /v1) with
`Authorization: Bearer`; Groq https://api.groq.com/openai/v1 (a bare host gets /openai/v1); Azure
the resource's /openai/v1 (the v1 Files/Batches API whatever form the realtime target uses) with
`api-key` (or an Entra bearer), the x-mmq-azure-* headers consumed, never forwarded. Taking them from
the target rather than from a job's WireRequest means `get`, `find` and `cancel` work after a crash,
when no job is at hand. Errors are read by that adapter's `error` (Azure's content filter, Groq's 498).

A line is {"custom_id", "method": "POST", "url": <the kind's OpenAI path>, "body": wire.json}: the
realtime translation's own body (Azure: its `model` is the deployment, the same on every line).

Statuses: validating → validating; in_progress, finalizing → running; cancelling → cancelling;
completed, expired, cancelled → ended (results readable); failed → failed, with `errors.data` as the
error. Azure's capitalised "Validating" is normalised; an unknown status is taken as running.

Results: a line with a `response` is that HTTP answer: 2xx → ok with `response.body` (what the realtime
endpoint answers, for the adapter's `parse`); 429, 5xx (and the other statuses mmq.errors calls
retryable) → retryable; other 4xx → the request's fault. A line with only an `error` did not run:
batch_expired / batch_cancelled → retryable; any other code fails the job with its message.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mmq.errors import ProviderError, is_retryable
from mmq.request_models import URL_BY_KIND, Kind
from worker.batch_tier.apis import _http
from worker.batch_tier.protocol import LineResult, NativeBatchAPI, ProviderBatch, State
from worker.providers.azure import AzureOpenAIAdapter
from worker.providers.base import Target, WireRequest
from worker.providers.groq import AUDIO_KINDS, GroqAdapter
from worker.providers.openai import PATHS, OpenAIAdapter

STATES: dict[str, State] = {
    "validating": "validating",
    "in_progress": "running",
    "finalizing": "running",
    "cancelling": "cancelling",
    "completed": "ended",
    "expired": "ended",
    "cancelled": "ended",
    "failed": "failed",
}
# a line the provider never ran (no `response`): these may run again; any other code fails the job
UNRUN_CODES = frozenset({"batch_expired", "batch_cancelled"})
PAGE = 100  # the list endpoint's largest page
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")  # batch and file ids go into paths: nothing else
_AZURE_TAIL = re.compile(r"/openai(?:/v1|/deployments/[^/]+)?$")
_MAX_ERRORS_SHOWN = 5


def _path_id(value: str, what: str, provider: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ProviderError(f"not a {what} id: {str(value)[:80]!r}", code="invalid_id", provider=provider)
    return quote(value, safe="")


def _failure(errors: Any) -> str | None:
    data = errors.get("data") if isinstance(errors, Mapping) else None
    if not isinstance(data, list) or not data:
        return None
    shown = []
    for item in data[:_MAX_ERRORS_SHOWN]:
        if not isinstance(item, Mapping):
            continue
        text = f"{item.get('code') or 'error'}: {item.get('message') or ''}".strip()
        if item.get("line") is not None:
            text += f" (line {item['line']})"
        shown.append(text)
    if len(data) > _MAX_ERRORS_SHOWN:
        shown.append(f"… and {len(data) - _MAX_ERRORS_SHOWN} more")
    return "; ".join(shown) or None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def line_result(item: Mapping[str, Any]) -> LineResult | None:
    """One output/error file line as a LineResult; None for a line without a custom_id."""
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None
    response = item.get("response")
    if isinstance(response, Mapping):
        status = _int(response.get("status_code")) or 0
        body = response.get("body")
        if 200 <= status < 300:
            return LineResult(custom_id, ok=True, status_code=status, body=body)
        message, code = f"HTTP {status}", None
        err = body.get("error") if isinstance(body, Mapping) else None
        if isinstance(err, Mapping):
            message = str(err.get("message") or message)
            code = err.get("code") or err.get("type")
        elif isinstance(err, str):
            message = err
        code = str(code) if code else None
        # status 0 has been seen (reference §1.6): the request got no answer, so it may run again
        retryable = status == 0 or status >= 500 or is_retryable(status, code)
        return LineResult(
            custom_id,
            ok=False,
            status_code=status or None,
            body=body,
            error_code=code or f"http_{status}",
            error_message=message,
            retryable=retryable,
        )
    err = item.get("error")
    err = err if isinstance(err, Mapping) else {}
    code = str(err.get("code") or "batch_error")
    return LineResult(
        custom_id,
        ok=False,
        error_code=code,
        error_message=str(err.get("message") or code),
        retryable=code in UNRUN_CODES,
    )


class OpenAIBatches(NativeBatchAPI):
    """OpenAI's Files + Batches API (reference §1)."""

    provider = "openai"
    kinds = frozenset({Kind.chat, Kind.image})
    max_requests = 50_000
    max_bytes = 200 * 1024 * 1024
    one_model = True
    # the uploaded input file expires on its own (expires_after, anchor created_at): mmq keeps no file
    # ledger, and a batch's window is 24 h, so a week is ample
    file_expiry_s: int | None = 7 * 86_400

    def __init__(self, adapter: OpenAIAdapter | None = None) -> None:
        self.adapter = adapter or OpenAIAdapter()

    # ------------------------------------------------------------------------------------ the dialect
    def api_root(self, target: Target) -> str:
        """Where /files and /batches live: beside the realtime paths of this target."""
        chat = self.adapter._url(target, Kind.chat, {"model": "-"})
        return chat.removesuffix(PATHS[Kind.chat])

    def headers(self, target: Target) -> dict[str, str]:
        return self.adapter._headers(target)

    def completion_window(self, window_s: int) -> str:
        return "24h"  # the only window OpenAI and Azure take

    def _upload_fields(self) -> dict[str, str]:
        fields = {"purpose": "batch"}
        if self.file_expiry_s is not None:
            fields["expires_after[anchor]"] = "created_at"
            fields["expires_after[seconds]"] = str(self.file_expiry_s)
        return fields

    def status(self, raw: Any) -> str:
        return str(raw or "").strip().lower()

    # ---------------------------------------------------------------------------------------- helpers
    async def _call(
        self, client: httpx.AsyncClient, target: Target, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        url = self.api_root(target) + path
        return await _http.call(
            client, self.adapter.error, self.provider, method, url, self.headers(target), **kwargs
        )

    async def _json(
        self, client: httpx.AsyncClient, target: Target, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        response = await self._call(client, target, method, path, **kwargs)
        return _http.json_object(response, self.provider, f"{method} {path}")

    def batch(self, obj: Mapping[str, Any]) -> ProviderBatch:
        """A Batch object as a ProviderBatch."""
        raw = self.status(obj.get("status"))
        state: State = STATES.get(raw, "running")  # unknown: not terminal (reference §10.5)
        counts = obj.get("request_counts")
        counts = counts if isinstance(counts, Mapping) else {}
        metadata = obj.get("metadata")
        return ProviderBatch(
            id=str(obj.get("id")),
            state=state,
            raw_status=raw,
            total=_int(counts.get("total")),
            done=_int(counts.get("completed")),
            failed=_int(counts.get("failed")),
            error=(_failure(obj.get("errors")) or "the batch failed") if state == "failed" else None,
            metadata={str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, Mapping) else {},
            handles={
                name: obj.get(name)
                for name in ("input_file_id", "output_file_id", "error_file_id", "endpoint")
            },
        )

    # ---------------------------------------------------------------------------------- the protocol
    def line(self, custom_id: str, kind: Kind, wire: WireRequest) -> dict[str, Any]:
        if kind not in self.kinds:
            raise ValueError(f"{self.provider} batches do not take {kind} jobs")
        if not isinstance(wire.json, dict):
            raise ValueError(f"{self.provider} batch lines carry a JSON body; this {kind} request has none")
        return {"custom_id": custom_id, "method": "POST", "url": URL_BY_KIND[kind], "body": wire.json}

    async def create(
        self,
        client: httpx.AsyncClient,
        target: Target,
        kind: Kind,
        model: str,
        lines: Sequence[dict[str, Any]],
        metadata: Mapping[str, str],
        window_s: int = 24 * 3600,
    ) -> ProviderBatch:
        if kind not in self.kinds:
            raise ValueError(f"{self.provider} batches do not take {kind} jobs")
        uploaded = await self._json(
            client,
            target,
            "POST",
            "/files",
            data=self._upload_fields(),
            files={"file": ("mmq-batch.jsonl", _http.jsonl(lines), "application/jsonl")},
        )
        file_id = uploaded.get("id")
        if not isinstance(file_id, str):
            raise ProviderError(
                f"the file upload answered without an id: {str(uploaded)[:200]!r}",
                code="unparseable_response",
                retryable=True,
                provider=self.provider,
            )
        body = {
            "input_file_id": file_id,
            "endpoint": URL_BY_KIND[kind],
            "completion_window": self.completion_window(window_s),
            "metadata": dict(metadata),
        }
        try:
            created = await self._json(client, target, "POST", "/batches", json=body)
        except ProviderError as err:
            # refused for sure (a 5xx or a dropped connection may still have created it)
            if err.status is not None and 400 <= err.status < 500:
                await self._forget_file(client, target, file_id)
            raise
        return self.batch(created)

    async def _forget_file(self, client: httpx.AsyncClient, target: Target, file_id: str) -> None:
        try:
            await self._call(client, target, "DELETE", "/files/" + _path_id(file_id, "file", self.provider))
        except ProviderError:
            pass  # best effort: the provider's file expiry removes it in the end

    async def get(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        path = "/batches/" + _path_id(batch_id, "batch", self.provider)
        return self.batch(await self._json(client, target, "GET", path))

    async def find(
        self, client: httpx.AsyncClient, target: Target, key: str, value: str
    ) -> ProviderBatch | None:
        after: str | None = None
        while True:
            params = {"limit": str(PAGE), **({"after": after} if after else {})}
            page = await self._json(client, target, "GET", "/batches", params=params)
            data = page.get("data")
            data = [item for item in data if isinstance(item, Mapping)] if isinstance(data, list) else []
            for item in data:  # newest first
                metadata = item.get("metadata")
                if isinstance(metadata, Mapping) and metadata.get(key) == value:
                    return self.batch(item)
            last = data[-1].get("id") if data else None
            if not page.get("has_more") or not isinstance(last, str) or last == after:
                return None
            after = last

    async def cancel(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        path = f"/batches/{_path_id(batch_id, 'batch', self.provider)}/cancel"
        try:
            return self.batch(await self._json(client, target, "POST", path))
        except ProviderError as err:
            # cancelling a batch that has just ended is refused (400): what the engine wants is the
            # batch as it is now, so read it instead of failing
            if err.status is not None and 400 <= err.status < 500 and err.status not in (401, 403, 404, 429):
                return await self.get(client, target, batch_id)
            raise

    async def results(
        self, client: httpx.AsyncClient, target: Target, batch: ProviderBatch
    ) -> AsyncIterator[LineResult]:
        handles = batch.handles
        if "output_file_id" not in handles and "error_file_id" not in handles:
            handles = (await self.get(client, target, batch.id)).handles
        for name in ("output_file_id", "error_file_id"):
            file_id = handles.get(name)
            if not file_id:
                continue
            url = f"{self.api_root(target)}/files/{_path_id(file_id, 'file', self.provider)}/content"
            async for item in _http.streamed_lines(
                client, self.adapter.error, self.provider, url, self.headers(target)
            ):
                result = line_result(item)
                if result is not None:
                    yield result


class AzureBatches(OpenAIBatches):
    """Azure OpenAI Global/Data Zone Batch (reference §2): the v1 API at the resource
    (https://{res}.openai.azure.com/openai/v1/files, /batches), `api-key` auth, every line's
    `body.model` the same Global-Batch deployment. Batches never expire (they run until cancelled),
    output and error files always exist (maybe empty)."""

    provider = "azure-openai"
    kinds = frozenset({Kind.chat})
    max_requests = 100_000
    max_bytes = 200 * 1024 * 1024
    one_model = True
    # files with an expiry count against a cap of 10,000 per resource instead of 500; 14 days is the
    # shortest Azure takes
    file_expiry_s = 14 * 86_400

    def __init__(self, adapter: AzureOpenAIAdapter | None = None) -> None:
        super().__init__(adapter or AzureOpenAIAdapter())

    def api_root(self, target: Target) -> str:
        base = (target.base_url or "").rstrip("/")
        if not urlsplit(base).netloc:
            raise ProviderError(
                f"Azure OpenAI target {target.name!r} needs the resource URL as its base_url",
                code="target_misconfigured",
                provider=self.provider,
            )
        return _AZURE_TAIL.sub("", base) + "/openai/v1"


class GroqBatches(OpenAIBatches):
    """Groq Batch (reference §7): the OpenAI wire under https://api.groq.com/openai/v1, bearer auth,
    models may differ per line, a completion window of 24 h to 7 d. Chat, and Whisper transcriptions
    and translations: a batch line cannot carry an upload, so the realtime translation's multipart form
    becomes a JSON body whose `url` is the audio as a base64 data URL (the form's other fields as
    they are, `temperature` a number again, `name[]` lists as lists)."""

    provider = "groq"
    kinds = frozenset({Kind.chat, *AUDIO_KINDS})
    max_requests = 50_000
    max_bytes = 100 * 1024 * 1024
    one_model = False
    file_expiry_s = None  # Groq's Files API takes no expires_after (reference §7)

    def __init__(self, adapter: GroqAdapter | None = None) -> None:
        super().__init__(adapter or GroqAdapter())

    def completion_window(self, window_s: int) -> str:
        hours = min(max(math.ceil(window_s / 3600), 24), 7 * 24)
        return f"{hours}h"

    def line(self, custom_id: str, kind: Kind, wire: WireRequest) -> dict[str, Any]:
        if kind not in AUDIO_KINDS:
            return super().line(custom_id, kind, wire)
        return {"custom_id": custom_id, "method": "POST", "url": URL_BY_KIND[kind], "body": audio_body(wire)}


def audio_body(wire: WireRequest) -> dict[str, Any]:
    """A realtime audio upload (form fields + the `file` part) as a Groq batch line's JSON body."""
    part = (wire.files or {}).get("file") if isinstance(wire.files, Mapping) else None
    if not isinstance(part, tuple) or len(part) < 3 or not isinstance(part[1], bytes):
        raise ValueError("a batched transcription needs its audio as the request's `file` part")
    _, data, content_type = part[:3]
    body: dict[str, Any] = {}
    for name, value in (wire.form or {}).items():
        if name.endswith("[]"):
            body[name[:-2]] = list(value) if isinstance(value, list | tuple) else [value]
        elif name == "temperature":
            body[name] = float(value)
        else:
            body[name] = value
    mime = content_type or "application/octet-stream"
    body["url"] = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return body
