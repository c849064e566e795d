"""The Gemini API's batch mode (AI Studio): the batch tier's client for chat jobs on provider "gemini".

Why: Google runs batches of generateContent requests asynchronously at half price (target 24 h;
../shared/reference/native_batch.md §4). The wire, on the Developer API (v1beta):

    create   POST {api}/models/{model}:batchGenerateContent {"batch": {"displayName", "inputConfig":
             {"requests": {"requests": [{"request": <GenerateContentRequest>, "metadata": {"key"}}]}}}}
             inline requests (the whole call ≤ 20 MB); the model is the batch's, one per batch
    get      GET {api}/batches/{id}: an Operation {name, metadata: {state, batchStats, displayName,
             output: {inlinedResponses: {inlinedResponses: [...]}}}, done, error?}
    find     GET {api}/batches?pageSize&pageToken, newest first, matched on displayName
    cancel   POST {api}/batches/{id}:cancel

Where and with which key: the realtime adapter's own `endpoint` (worker/providers/gemini/auth.py) for
"{model}:batchGenerateContent" gives the host, the API version and `x-goog-api-key`; the batches live
beside its /models. Vertex AI batch prediction (GCS input) is another API: vertex.py.

Mapping lines back: every request carries `metadata.key` = its custom_id, which the answer echoes
(InlinedResponse.metadata); inline answers also come in request order (reference §0.1.3), so `create`
keeps the custom_ids in `handles["keys"]` and an answer without the echo is mapped by position when the
engine hands that batch back. `line` gives the file-mode item {"key", "request"}; `create` sends the
lines inline while the call stays within 20 MB, and past that uploads them as a JSONL file (the Files
API's resumable upload: a start, then one "upload, finalize" to the session URL it answers, which must
be on the target's host) and names it in `inputConfig.fileName`; such a batch answers in a generated
responses file (`output.responsesFile`), streamed from {api}/files/{id}:download?alt=media, each line
{"key", "response"} or {"key", "error"}. mmq caps a file at 200 MB (the API takes 2 GB).

The pack's metadata goes in `displayName` as a query string ("mmq_pack=p-1"): the Developer API has no
labels and its list has no filter, so `find` pages through the list and reads it back.

States (REST BATCH_STATE_*, the SDK's JOB_STATE_*): PENDING/QUEUED → validating; RUNNING → running;
CANCELLING (Vertex's) → cancelling; SUCCEEDED, CANCELLED and EXPIRED → ended (EXPIRED is terminal,
whatever the cookbook's loop says); FAILED → failed with the Operation's error. The Developer API has
no cancelling state, so `cancel` reports a batch it has just asked to stop, still RUNNING, as
cancelling; later reads show RUNNING (running) until it ends.

Results: a `response` → ok (a GenerateContentResponse with usageMetadata, for the adapter's `parse`);
an `error` (google.rpc.Status) → retryable when it did not run or failed transiently (CANCELLED,
DEADLINE_EXCEEDED (expired), RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE, UNKNOWN), otherwise the
request's fault (INVALID_ARGUMENT…).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx

from mmq.errors import ProviderError
from mmq.request_models import Kind
from worker.batch_tier.apis import _http
from worker.batch_tier.protocol import LineResult, NativeBatchAPI, ProviderBatch, State
from worker.providers.base import Target, WireRequest
from worker.providers.gemini import GeminiAdapter

STATES: dict[str, State] = {
    "PENDING": "validating",
    "QUEUED": "validating",
    "RUNNING": "running",
    "CANCELLING": "cancelling",
    "SUCCEEDED": "ended",
    "CANCELLED": "ended",
    "EXPIRED": "ended",
    "PARTIALLY_SUCCEEDED": "ended",  # Vertex's JobState
    "FAILED": "failed",
}
# google.rpc.Code: name and the HTTP status Google maps it to
GRPC: dict[int, tuple[str, int]] = {
    1: ("CANCELLED", 499),
    2: ("UNKNOWN", 500),
    3: ("INVALID_ARGUMENT", 400),
    4: ("DEADLINE_EXCEEDED", 504),
    5: ("NOT_FOUND", 404),
    6: ("ALREADY_EXISTS", 409),
    7: ("PERMISSION_DENIED", 403),
    8: ("RESOURCE_EXHAUSTED", 429),
    9: ("FAILED_PRECONDITION", 400),
    10: ("ABORTED", 409),
    11: ("OUT_OF_RANGE", 400),
    12: ("UNIMPLEMENTED", 501),
    13: ("INTERNAL", 500),
    14: ("UNAVAILABLE", 503),
    15: ("DATA_LOSS", 500),
    16: ("UNAUTHENTICATED", 401),
}
RETRYABLE_CODES = frozenset(
    {"CANCELLED", "UNKNOWN", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "UNAVAILABLE"}
)
PAGE = 100
MAX_INLINE_BYTES = 20 * 1024 * 1024  # the whole create call (reference §4)
# an uploaded input file (the API takes up to 2 GB; mmq builds a pack's file in the worker's memory, so
# it stops where OpenAI's batches stop)
MAX_FILE_BYTES = 200 * 1024 * 1024
_FILE = re.compile(r"^files/[A-Za-z0-9_-]{1,200}$")
_NAME = re.compile(r"^batches/[A-Za-z0-9_-]{1,200}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_STATE_PREFIXES = ("BATCH_STATE_", "JOB_STATE_")


def display_name(metadata: Mapping[str, str]) -> str:
    return urlencode(sorted(metadata.items()))


def metadata_of(name: Any) -> dict[str, str]:
    """The metadata a displayName carries ({} for a name mmq did not write)."""
    if not isinstance(name, str) or "=" not in name:
        return {}
    try:
        return dict(parse_qsl(name, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        return {}


def _count(value: Any) -> int | None:
    try:
        return int(value)  # int64 fields come as strings
    except (TypeError, ValueError):
        return None


def line_result(custom_id: str, entry: Mapping[str, Any]) -> LineResult:
    """One inline answer ({"response"} or {"error"}) or file line as a LineResult."""
    if isinstance(entry.get("response"), Mapping):
        return LineResult(custom_id, ok=True, status_code=200, body=entry["response"])
    error = entry.get("error") or entry.get("status")
    error = error if isinstance(error, Mapping) else {}
    code = _count(error.get("code"))
    name, status = GRPC.get(code or 2, ("UNKNOWN", 500))
    if isinstance(error.get("status"), str):  # a REST-style status name, when given
        name = error["status"]
    return LineResult(
        custom_id,
        ok=False,
        status_code=status,
        body=dict(error) or None,
        error_code=name,
        error_message=str(error.get("message") or name),
        retryable=name in RETRYABLE_CODES,
    )


class GeminiBatches(NativeBatchAPI):
    provider = "gemini"
    kinds = frozenset({Kind.chat})  # Imagen (:predict, the realtime image path) has no batch
    max_requests = 100_000  # not documented; the byte limit binds first for anything with images
    max_bytes = MAX_FILE_BYTES  # inline up to MAX_INLINE_BYTES, an uploaded JSONL file past it
    one_model = True

    def __init__(self, adapter: GeminiAdapter | None = None) -> None:
        self.adapter = adapter or GeminiAdapter()

    # ------------------------------------------------------------------------------------ the dialect
    def place(self, target: Target, model: str = "-") -> tuple[str, str, dict[str, str]]:
        """(the API root, the create URL for `model`, the headers), from the realtime adapter."""
        suffix = f"{model}:batchGenerateContent"
        url, headers = self.adapter.endpoint(target, suffix)
        return url.removesuffix(f"/models/{suffix}"), url, headers

    async def _json(
        self, client: httpx.AsyncClient, method: str, url: str, headers: Mapping[str, str], **kwargs: Any
    ) -> dict[str, Any]:
        response = await _http.call(client, self.adapter.error, self.provider, method, url, headers, **kwargs)
        return _http.json_object(response, self.provider, f"{method} {url}")

    async def _batch_call(
        self, client: httpx.AsyncClient, target: Target, method: str, name: str, tail: str = ""
    ) -> dict[str, Any]:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProviderError(
                f"not a batch name: {str(name)[:80]!r}", code="invalid_id", provider=self.provider
            )
        root, _, headers = self.place(target)
        return await self._json(client, method, f"{root}/{quote(name, safe='/')}{tail}", headers)

    def batch(self, op: Mapping[str, Any], keys: Sequence[str] | None = None) -> ProviderBatch:
        meta = op.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        raw = str(meta.get("state") or "")
        bare = raw
        for prefix in _STATE_PREFIXES:
            bare = bare.removeprefix(prefix)
        state: State = STATES.get(bare, "running")  # unknown or unspecified: not terminal
        stats = meta.get("batchStats")
        stats = stats if isinstance(stats, Mapping) else {}
        error = op.get("error")
        failure = None
        if state == "failed":
            failure = "the batch failed"
            if isinstance(error, Mapping):
                failure = str(error.get("message") or failure)
        output = meta.get("output")
        handles: dict[str, Any] = {"model": meta.get("model")}
        if isinstance(output, Mapping) and output.get("responsesFile"):
            handles["responses_file"] = output["responsesFile"]
        if keys is not None:
            handles["keys"] = list(keys)
        return ProviderBatch(
            id=str(op.get("name") or meta.get("name")),
            state=state,
            raw_status=raw,
            total=_count(stats.get("requestCount")),
            done=_count(stats.get("successfulRequestCount")),
            failed=_count(stats.get("failedRequestCount")),
            error=failure,
            metadata=metadata_of(meta.get("displayName")),
            handles=handles,
        )

    # ---------------------------------------------------------------------------------- the protocol
    def line(self, custom_id: str, kind: Kind, wire: WireRequest) -> dict[str, Any]:
        if kind not in self.kinds or not isinstance(wire.json, dict):
            raise ValueError(f"gemini batches take chat requests with a JSON body, not {kind}")
        return {"key": custom_id, "request": wire.json}

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
        """Inline requests, each with metadata.key = its custom_id, while the call stays within 20 MB;
        past that, the lines as an uploaded JSONL file (each {"key", "request"}). The window is Google's."""
        if kind not in self.kinds:
            raise ValueError(f"gemini batches do not take {kind} jobs")
        model = model.removeprefix("models/")
        if not _MODEL.match(model):
            raise ValueError(f"model {model!r} is not a Gemini model id")
        keys = [str(line["key"]) for line in lines]
        requests = [{"request": line["request"], "metadata": {"key": str(line["key"])}} for line in lines]
        source: dict[str, Any] = {"requests": {"requests": requests}}
        if len(_http.encoded(source)) > MAX_INLINE_BYTES - 64 * 1024:  # (room for the rest of the call)
            source = {"fileName": await self._upload(client, target, _http.jsonl(lines), metadata)}
            keys = []  # a responses file names each answer by its key
        body = {"batch": {"displayName": display_name(metadata), "inputConfig": source}}
        _, url, headers = self.place(target, model)
        return self.batch(await self._json(client, "POST", url, headers, json=body), keys)

    async def _upload(
        self, client: httpx.AsyncClient, target: Target, data: bytes, metadata: Mapping[str, str]
    ) -> str:
        """The Files API's resumable upload (start, then one "upload, finalize"); the file's name. The
        upload URL the start answers must be on the target's own host: the key goes nowhere else."""
        root, _, headers = self.place(target)
        parts = urlsplit(root)
        start_url = f"{parts.scheme}://{parts.netloc}/upload{parts.path}/files"
        start = {
            **headers,
            "x-goog-upload-protocol": "resumable",
            "x-goog-upload-command": "start",
            "x-goog-upload-header-content-length": str(len(data)),
            "x-goog-upload-header-content-type": "application/jsonl",
        }
        spec = {"file": {"displayName": display_name(metadata), "mimeType": "application/jsonl"}}
        answer = await _http.call(
            client, self.adapter.error, self.provider, "POST", start_url, start, json=spec
        )
        session = answer.headers.get("x-goog-upload-url", "")
        if not _http.same_origin(session, f"{parts.scheme}://{parts.netloc}/upload"):
            raise ProviderError(
                f"the upload answered a session URL off the target's host: {session[:120]!r}",
                code="foreign_upload_url",
                provider=self.provider,
            )
        chunk = {**headers, "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"}
        done = await _http.call(
            client, self.adapter.error, self.provider, "POST", session, chunk, content=data
        )
        file = _http.json_object(done, self.provider, "the upload's last chunk").get("file")
        name = file.get("name") if isinstance(file, Mapping) else None
        if not isinstance(name, str) or not _FILE.match(name):
            raise ProviderError(
                f"the upload answered no file name: {str(file)[:200]!r}",
                code="unparseable_response",
                retryable=True,
                provider=self.provider,
            )
        return name

    async def get(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        return self.batch(await self._batch_call(client, target, "GET", batch_id))

    async def find(
        self, client: httpx.AsyncClient, target: Target, key: str, value: str
    ) -> ProviderBatch | None:
        root, _, headers = self.place(target)
        token: str | None = None
        while True:
            params = {"pageSize": str(PAGE), **({"pageToken": token} if token else {})}
            page = await self._json(client, "GET", f"{root}/batches", headers, params=params)
            ops = page.get("operations", page.get("batches"))
            for op in ops if isinstance(ops, list) else []:
                if isinstance(op, Mapping):
                    found = self.batch(op)
                    if found.metadata.get(key) == value:
                        return found
            following = page.get("nextPageToken")
            if not isinstance(following, str) or not following or following == token:
                return None
            token = following

    async def cancel(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        try:
            await self._batch_call(client, target, "POST", batch_id, ":cancel")
        except ProviderError as err:
            # an ended batch cannot be cancelled: what the engine wants is the batch as it is now
            if err.status is None or not 400 <= err.status < 500 or err.status in (401, 403, 404, 429):
                raise
        now = await self.get(client, target, batch_id)
        if now.state in ("validating", "running"):  # no cancelling state on the Developer API
            return replace(now, state="cancelling")
        return now

    async def _file_results(
        self, client: httpx.AsyncClient, target: Target, name: str
    ) -> AsyncIterator[LineResult]:
        """A responses file's lines ({"key", "response"} or {"key", "error"|"status"}), streamed."""
        if not _FILE.match(name):
            raise ProviderError(f"not a file name: {name[:80]!r}", code="invalid_id", provider=self.provider)
        root, _, headers = self.place(target)
        url = f"{root}/{quote(name, safe='/')}:download?alt=media"
        async for item in _http.streamed_lines(client, self.adapter.error, self.provider, url, headers):
            key = item.get("key")
            if isinstance(key, str) and key:
                yield line_result(key, item)

    async def results(
        self, client: httpx.AsyncClient, target: Target, batch: ProviderBatch
    ) -> AsyncIterator[LineResult]:
        op = await self._batch_call(client, target, "GET", batch.id)  # a list never shows the answers
        meta = op.get("metadata")
        output = meta.get("output") if isinstance(meta, Mapping) else None
        output = output or op.get("response")
        if not isinstance(output, Mapping):
            return
        if output.get("responsesFile"):
            async for result in self._file_results(client, target, str(output["responsesFile"])):
                yield result
            return
        wrapper = output.get("inlinedResponses")
        entries = wrapper.get("inlinedResponses") if isinstance(wrapper, Mapping) else wrapper
        keys = batch.handles.get("keys")
        keys = keys if isinstance(keys, list) else []
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, Mapping):
                continue
            echoed = entry.get("metadata")
            custom_id = echoed.get("key") if isinstance(echoed, Mapping) else None
            if custom_id is None and index < len(keys):
                custom_id = keys[index]  # inline answers come in request order
            if custom_id is None:
                continue  # no way to tell whose answer this is: the engine sees no outcome for it
            yield line_result(str(custom_id), entry)
