"""Vertex AI batch prediction: the batch tier's client for chat jobs on providers "vertex" (Gemini on
Vertex) and "vertex-anthropic" (Claude on Vertex).

Why: Vertex runs a JSONL file of requests asynchronously at half price (target 24 h, queued up to 72 h;
../shared/reference/native_batch.md §5), for Google's and Anthropic's models alike; only the line
shapes differ (vertex_lines.py). Input and output live in Cloud Storage (vertex_gcs.py), under the
operator's MMQ_VERTEX_BATCH_GCS_URI; without it the client is not `enabled` and Vertex jobs run
realtime. The wire, on `{base}/v1/projects/{project}/locations/{location}`:

    create   upload {prefix}/{pack}/input.jsonl, then POST …/batchPredictionJobs {displayName,
             model: "publishers/{google|anthropic}/models/{id}", inputConfig: {instancesFormat: "jsonl",
             gcsSource: {uris}}, outputConfig: {predictionsFormat: "jsonl", gcsDestination:
             {outputUriPrefix: gs://…/{pack}/output}}}: one model per job
    get      GET …/batchPredictionJobs/{id} {name, state: JOB_STATE_*, error, completionStats
             {successfulCount, failedCount, incompleteCount}, outputInfo {gcsOutputDirectory}}
    find     GET …/batchPredictionJobs?filter=display_name="…" (paged), read back from displayName
    cancel   POST …/batchPredictionJobs/{id}:cancel
    results  list the job's gcsOutputDirectory, stream each *.jsonl, then delete input and output

Where and with which credential: the place (base URL, project, location) and the OAuth token are the
realtime adapters' (worker/providers/gemini/auth.py: the x-mmq-vertex-* target headers). The token
also goes to Cloud Storage, but only to the operator's MMQ_GCS_BASE_URL, and only for objects under the
operator's bucket and prefix: an output directory the job names elsewhere is refused.

Crash safety: the input object's name and the job's displayName derive from the pack's metadata
("mmq_pack=pack_…"), so a create re-run after a crash overwrites the same object and `find` adopts the
job already made: nothing is created twice.

States: QUEUED/PENDING → validating; RUNNING, UPDATING, PAUSED → running; CANCELLING → cancelling;
SUCCEEDED, PARTIALLY_SUCCEEDED, CANCELLED, EXPIRED → ended (finished lines are in the output and billed);
FAILED → failed, with the job's error. Counts: done = successfulCount, failed = failedCount.
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from mmq.errors import ProviderError
from mmq.request_models import Kind
from mmq.settings import get_settings
from worker.batch_tier.apis import _http
from worker.batch_tier.apis.gemini import display_name, metadata_of
from worker.batch_tier.apis.vertex_gcs import GcsClient, GcsPlace
from worker.batch_tier.apis.vertex_lines import claude_line, claude_result, gemini_line, gemini_result
from worker.batch_tier.protocol import LineResult, NativeBatchAPI, ProviderBatch, State
from worker.providers.base import Target, WireRequest
from worker.providers.gemini import auth as vertex_auth
from worker.providers.gemini.errors import error_from_response
from worker.providers.vertex_anthropic import model_id as claude_model_id

log = logging.getLogger(__name__)

STATES: dict[str, State] = {
    "QUEUED": "validating",
    "PENDING": "validating",
    "RUNNING": "running",
    "UPDATING": "running",
    "PAUSED": "running",
    "CANCELLING": "cancelling",
    "SUCCEEDED": "ended",
    "PARTIALLY_SUCCEEDED": "ended",
    "CANCELLED": "ended",
    "EXPIRED": "ended",
    "FAILED": "failed",
}
PAGE = 100
_ID = re.compile(r"^[0-9]{1,32}$")
_GEMINI_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def _count(value: Any) -> int | None:
    try:
        return int(value)  # int64 fields come as strings
    except (TypeError, ValueError):
        return None


def folder_of(metadata: Mapping[str, str]) -> str:
    """The pack's folder under the operator's prefix: the same metadata, the same objects."""
    return _SLUG.sub("_", display_name(metadata))[:200] or "batch"


class VertexBatches(NativeBatchAPI):
    """The control plane and Cloud Storage, shared by both publishers (the subclasses below)."""

    provider: str
    publisher: str  # "google" | "anthropic": whose models, in the job's model name
    kinds = frozenset({Kind.chat})
    max_requests = 200_000  # reference §5 (unverified)
    max_bytes = 1024 * 1024 * 1024  # 1 GB of input per job (unverified)
    one_model = True

    def __init__(self, gcs_uri: str | None = None, gcs_base_url: str | None = None) -> None:
        # None: read from the settings on first use (MMQ_VERTEX_BATCH_GCS_URI, MMQ_GCS_BASE_URL), once
        self._gcs_uri = gcs_uri
        self._gcs_base_url = gcs_base_url
        self._setup: tuple[GcsPlace, GcsClient] | None = None
        self._checked = False

    # ------------------------------------------------------------------------------------ the setup
    def _resolve(self) -> tuple[GcsPlace, GcsClient] | None:
        """The bucket and the client, or None when not configured (checked once: `enabled` runs for
        every Vertex job that could go to a batch)."""
        if not self._checked:
            self._checked = True
            uri, base = self._gcs_uri, self._gcs_base_url
            if uri is None or not base:
                settings = get_settings()
                uri = settings.vertex_batch_gcs_uri if uri is None else uri
                base = base or settings.gcs_base_url
            if uri:
                try:
                    self._setup = GcsPlace.parse(uri), GcsClient(base, self.provider)
                except ValueError as e:  # EndpointError too
                    log.warning("Vertex batch prediction is off, its jobs run realtime: %s", e)
        return self._setup

    def gcs(self) -> tuple[GcsPlace, GcsClient]:
        setup = self._resolve()
        if setup is None:
            raise ProviderError(
                "Vertex batch prediction needs MMQ_VERTEX_BATCH_GCS_URI (gs://bucket/prefix)",
                code="target_misconfigured",
                provider=self.provider,
            )
        return setup

    @property
    def enabled(self) -> bool:
        """Whether MMQ_VERTEX_BATCH_GCS_URI is set (and well formed): else Vertex jobs run realtime."""
        return self._resolve() is not None

    def place(self, target: Target) -> tuple[str, dict[str, str]]:
        """(…/projects/{p}/locations/{l}, the headers with the bearer token), as the realtime adapter."""
        base, project, location = vertex_auth.vertex_place(target, self.provider)
        _, headers = vertex_auth.endpoint(target, "-", True, self.provider, publisher=self.publisher)
        root = (
            f"{base}/{vertex_auth.VERTEX_API_VERSION}/projects/{quote(project, safe='')}"
            f"/locations/{quote(location, safe='')}"
        )
        return root, headers

    @abstractmethod
    def model_name(self, model: str) -> str:
        """The job's `model`: publishers/{publisher}/models/{id}."""

    @abstractmethod
    def result(self, item: Mapping[str, Any]) -> LineResult | None:
        """One prediction line as a LineResult (None: not a line mmq wrote)."""

    # ----------------------------------------------------------------------------------- the dialect
    async def _json(
        self, client: httpx.AsyncClient, method: str, url: str, headers: Mapping[str, str], **kwargs: Any
    ) -> dict[str, Any]:
        response = await _http.call(
            client,
            lambda r: error_from_response(r, self.provider),
            self.provider,
            method,
            url,
            headers,
            **kwargs,
        )
        return _http.json_object(response, self.provider, f"{method} {url}")

    def _job_url(self, target: Target, batch_id: str, tail: str = "") -> tuple[str, dict[str, str]]:
        if not isinstance(batch_id, str) or not _ID.match(batch_id):
            raise ProviderError(
                f"not a batch prediction job id: {str(batch_id)[:80]!r}",
                code="invalid_id",
                provider=self.provider,
            )
        root, headers = self.place(target)
        return f"{root}/batchPredictionJobs/{batch_id}{tail}", headers

    def batch(self, job: Mapping[str, Any]) -> ProviderBatch:
        raw = str(job.get("state") or "")
        state: State = STATES.get(raw.removeprefix("JOB_STATE_"), "running")  # unknown: not terminal
        stats = job.get("completionStats")
        stats = stats if isinstance(stats, Mapping) else {}
        done, failed, left = (
            _count(stats.get(k)) for k in ("successfulCount", "failedCount", "incompleteCount")
        )
        failure = None
        if state == "failed":
            error = job.get("error")
            failure = str(error.get("message") or "") if isinstance(error, Mapping) else ""
            failure = failure or "the batch prediction job failed"
        output = job.get("outputInfo")
        source = job.get("inputConfig")
        source = source.get("gcsSource") if isinstance(source, Mapping) else None
        handles: dict[str, Any] = {
            "output_dir": output.get("gcsOutputDirectory") if isinstance(output, Mapping) else None,
            "inputs": source.get("uris") if isinstance(source, Mapping) else None,
        }
        total = None if done is None and failed is None else (done or 0) + (failed or 0) + (left or 0)
        return ProviderBatch(
            id=str(job.get("name") or "").rsplit("/", 1)[-1],
            state=state,
            raw_status=raw,
            total=total,
            done=done,
            failed=failed,
            error=failure,
            metadata=metadata_of(job.get("displayName")),
            handles={k: v for k, v in handles.items() if v},
        )

    # ---------------------------------------------------------------------------------- the protocol
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
        """Uploads the lines as the pack's input object and creates the job. The window is Google's."""
        if kind not in self.kinds:
            raise ValueError(f"{self.provider} batches do not take {kind} jobs")
        model_name = self.model_name(model)
        place, gcs = self.gcs()
        folder = folder_of(metadata)
        await gcs.upload(
            client, target.api_key, place.bucket, place.name(folder, "input.jsonl"), _http.jsonl(lines)
        )
        body = {
            "displayName": display_name(metadata),
            "model": model_name,
            "inputConfig": {
                "instancesFormat": "jsonl",
                "gcsSource": {"uris": [place.uri(folder, "input.jsonl")]},
            },
            "outputConfig": {
                "predictionsFormat": "jsonl",
                "gcsDestination": {"outputUriPrefix": place.uri(folder, "output")},
            },
        }
        root, headers = self.place(target)
        return self.batch(await self._json(client, "POST", f"{root}/batchPredictionJobs", headers, json=body))

    async def get(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        url, headers = self._job_url(target, batch_id)
        return self.batch(await self._json(client, "GET", url, headers))

    async def find(
        self, client: httpx.AsyncClient, target: Target, key: str, value: str
    ) -> ProviderBatch | None:
        """The newest job whose displayName carries `key` = `value` (filtered by Vertex on the name the
        engine's one-key metadata gives, and checked again here)."""
        root, headers = self.place(target)
        wanted = display_name({key: value}).replace("\\", "\\\\").replace('"', '\\"')
        token: str | None = None
        found: list[tuple[str, ProviderBatch]] = []
        while True:
            params = {
                "filter": f'display_name="{wanted}"',
                "pageSize": str(PAGE),
                **({"pageToken": token} if token else {}),
            }
            page = await self._json(client, "GET", f"{root}/batchPredictionJobs", headers, params=params)
            jobs = page.get("batchPredictionJobs")
            for job in jobs if isinstance(jobs, list) else []:
                if isinstance(job, Mapping):
                    batch = self.batch(job)
                    if batch.metadata.get(key) == value and _ID.match(batch.id):
                        found.append((str(job.get("createTime") or ""), batch))
            following = page.get("nextPageToken")
            if not isinstance(following, str) or not following or following == token:
                break
            token = following
        return max(found, key=lambda pair: pair[0])[1] if found else None

    async def cancel(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        url, headers = self._job_url(target, batch_id, ":cancel")
        try:
            await self._json(client, "POST", url, headers)
        except ProviderError as err:
            # an ended job cannot be cancelled (FAILED_PRECONDITION): the engine wants it as it is now
            if err.status is None or not 400 <= err.status < 500 or err.status in (401, 403, 404, 429):
                raise
        return await self.get(client, target, batch_id)

    async def results(
        self, client: httpx.AsyncClient, target: Target, batch: ProviderBatch
    ) -> AsyncIterator[LineResult]:
        """Every prediction line of the job's output directory; then its objects are deleted (a crash
        before that leaves them for the re-harvest)."""
        now = await self.get(client, target, batch.id)  # outputInfo is only known once it ran
        place, gcs = self.gcs()
        token = target.api_key
        out_dir = now.handles.get("output_dir")
        names: list[str] = []
        if out_dir:
            folder = place.owns(out_dir)
            if folder is None:
                raise ProviderError(
                    f"job {batch.id} wrote to {str(out_dir)[:200]!r}, outside {place.uri()}: refused, "
                    "the token is only used on the configured bucket and prefix",
                    code="foreign_output",
                    provider=self.provider,
                )
            names = await gcs.names(client, token, place.bucket, folder + "/")
            for name in names:
                if not name.endswith(".jsonl"):
                    continue
                async for item in gcs.lines(client, token, place.bucket, name):
                    line = self.result(item)
                    if line is not None:
                        yield line
        inputs = now.handles.get("inputs")
        owned = [place.owns(uri) for uri in inputs] if isinstance(inputs, list) else []
        await self._clean_up(client, token, place, gcs, names + [n for n in owned if n])

    async def _clean_up(
        self, client: httpx.AsyncClient, token: str | None, place: GcsPlace, gcs: GcsClient, names: list[str]
    ) -> None:
        for name in names:
            try:
                await gcs.delete(client, token, place.bucket, name)
            except ProviderError as e:  # a bucket lifecycle rule sweeps what is left
                log.warning("%s: could not delete gs://%s/%s (%s)", self.provider, place.bucket, name, e)


class VertexGeminiBatches(VertexBatches):
    provider = "vertex"
    publisher = "google"
    # the job id travels as a request label value: lowercase letters, digits, _ and -, ≤ 63
    custom_id_pattern = r"^[a-z0-9_-]{1,63}$"

    def model_name(self, model: str) -> str:
        for prefix in ("publishers/google/models/", "models/"):
            model = model.removeprefix(prefix)
        if not _GEMINI_MODEL.match(model):
            raise ValueError(f"model {model!r} is not a Gemini model id")
        return f"publishers/google/models/{model}"

    def line(self, custom_id: str, kind: Kind, wire: WireRequest) -> dict[str, Any]:
        if kind not in self.kinds or not isinstance(wire.json, dict):
            raise ValueError(f"vertex batches take chat requests with a JSON body, not {kind}")
        return gemini_line(custom_id, wire.json)

    def result(self, item: Mapping[str, Any]) -> LineResult | None:
        return gemini_result(item)


class VertexClaudeBatches(VertexBatches):
    provider = "vertex-anthropic"
    publisher = "anthropic"

    def model_name(self, model: str) -> str:
        return f"publishers/anthropic/models/{claude_model_id(model)}"

    def line(self, custom_id: str, kind: Kind, wire: WireRequest) -> dict[str, Any]:
        if kind not in self.kinds or not isinstance(wire.json, dict):
            raise ValueError(f"vertex-anthropic batches take chat requests with a JSON body, not {kind}")
        return claude_line(custom_id, wire.json)

    def result(self, item: Mapping[str, Any]) -> LineResult | None:
        return claude_result(item)
