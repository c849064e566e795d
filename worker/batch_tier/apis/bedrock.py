"""AWS Bedrock batch inference (CreateModelInvocationJob): the batch tier's client for chat jobs on
provider "bedrock".

Why: Bedrock runs a job of model invocations asynchronously at the batch price (50%, U) within its
timeout (24 to 168 h) (../shared/reference/native_batch.md §6). Its records go through S3 (bedrock_s3.py:
the operator's MMQ_BEDROCK_BATCH_S3_URI and MMQ_BEDROCK_BATCH_ROLE_ARN; without both, `enabled` is
False and Bedrock jobs run realtime). The wire, rest-json on the control plane:

    create   PUT {name}/input/records.jsonl to S3, then POST {control}/model-invocation-job
             {jobName, roleArn, modelId, clientRequestToken, timeoutDurationInHours,
             modelInvocationType: "Converse", inputDataConfig.s3InputDataConfig {s3Uri, s3InputFormat},
             outputDataConfig.s3OutputDataConfig {s3Uri}, tags} -> {jobArn}
    get      GET {control}/model-invocation-job/{job id}
    find     GET {control}/model-invocation-jobs?nameContains={name}&sortOrder=Descending
    cancel   POST {control}/model-invocation-job/{job id}/stop
    results  S3 {name}/output/{job id}/records.jsonl.out (streamed), once the job has ended

Lines: {"recordId": the job id, "modelInput": the realtime adapter's own Converse body}, sent with
modelInvocationType "Converse", so each `modelOutput` is the answer POST /converse gives and the
adapter's `parse` reads it as a realtime answer. One model per job (the group's).

Where and with which key: the control plane is AWS's `bedrock[-fips].{region}.amazonaws.com` beside the
target's bedrock-runtime host, or the target's own base URL when it names another host (a simulator, a
proxy); calls are signed exactly as the realtime adapter signs (SigV4, signing name `bedrock`, or the
bearer API key: worker/providers/bedrock/auth.py). Nothing else is called with the target's credential.

No job twice: the job name and the client request token are made from the engine's pack id
("mmq-pack-…"), the S3 keys from the job name; `find` lists by name after a crash, and a create that
reaches Bedrock twice anyway is ignored by it (the same token) and answered with the first job.

The minimum: Bedrock refuses a job with fewer records than the account's quota (commonly 100):
`min_requests` is MMQ_BEDROCK_BATCH_MIN_RECORDS, and the engine sends a smaller group realtime.

States: Submitted, Validating, Scheduled → validating; InProgress → running; Stopping → cancelling;
Completed, PartiallyCompleted (the timeout came first), Stopped, Expired (never started) → ended;
Failed → failed with its `message`. Results: `modelOutput` → ok; `error {errorCode, errorMessage}` →
retryable for a 429/5xx (or a throttling-like name), else the request's fault. A record with no line
in the output did not run (stopped, timed out): the engine sends it realtime.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mmq.errors import RETRYABLE_STATUSES, ProviderError
from mmq.request_models import Kind
from mmq.storage import BlobNotFound
from worker.batch_tier.apis import _http
from worker.batch_tier.apis.bedrock_s3 import INPUT_FILE, BatchBucket
from worker.batch_tier.protocol import LineResult, NativeBatchAPI, ProviderBatch, State
from worker.providers.base import Target, WireRequest
from worker.providers.bedrock import BedrockAdapter, auth
from worker.providers.bedrock.errors import ERRORS

STATES: dict[str, State] = {
    "Submitted": "validating",
    "Validating": "validating",
    "Scheduled": "validating",
    "InProgress": "running",
    "Stopping": "cancelling",
    "Completed": "ended",
    "PartiallyCompleted": "ended",
    "Stopped": "ended",
    "Expired": "ended",
    "Failed": "failed",
}
_RUNTIME_HOST = re.compile(r"^bedrock-runtime(?P<fips>-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")
_JOB_ID = re.compile(
    r"^(?:arn:aws[\w-]*:bedrock:[a-z0-9-]{1,20}:\d{12}:model-invocation-job/)?([a-z0-9]{12})$"
)
_NAME_CHARS = re.compile(r"[^A-Za-z0-9]+")
PAGES = 10  # of `find`'s listing, filtered by name: more than one page is already unusual


@dataclass(frozen=True)
class BatchConfig:
    """The operator's Bedrock batch settings (mmq.settings: MMQ_BEDROCK_BATCH_*)."""

    s3_uri: str | None = None
    role_arn: str | None = None
    min_records: int = 100

    @classmethod
    def from_settings(cls) -> BatchConfig:
        from mmq.settings import get_settings

        s = get_settings()
        return cls(s.bedrock_batch_s3_uri, s.bedrock_batch_role_arn, s.bedrock_batch_min_records)


def job_name(metadata: Mapping[str, str]) -> str:
    """The job name (and client request token) a pack's metadata makes: "mmq-" + its values, in
    Bedrock's alphabet ([a-zA-Z0-9] runs joined by "-"), at most 63 characters."""
    words = "-".join(_NAME_CHARS.sub("-", value).strip("-") for _, value in sorted(metadata.items()))
    return ("mmq-" + words)[:63].rstrip("-")


def job_id(batch_id: str) -> str:
    """The 12-character job id of a job ARN (or of a bare id); ProviderError for anything else."""
    match = _JOB_ID.match(batch_id) if isinstance(batch_id, str) else None
    if not match:
        raise ProviderError(
            f"not a Bedrock batch job: {str(batch_id)[:120]!r}", code="invalid_id", provider="bedrock"
        )
    return match[1]


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def line_result(item: Mapping[str, Any]) -> LineResult | None:
    """One output record as a LineResult; None for a record without a recordId."""
    record_id = item.get("recordId")
    if not isinstance(record_id, str) or not record_id:
        return None
    if isinstance(item.get("modelOutput"), Mapping):
        return LineResult(record_id, ok=True, status_code=200, body=item["modelOutput"])
    error = item.get("error")
    if not isinstance(error, Mapping):
        return LineResult(
            record_id, ok=False, error_code="no_output", error_message="no answer: not run", retryable=True
        )
    code = error.get("errorCode")
    status = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
    name = str(code) if code is not None else "error"
    retryable = status in RETRYABLE_STATUSES if status is not None else ERRORS.get(name, False)
    return LineResult(
        record_id,
        ok=False,
        status_code=status,
        body=dict(error),
        error_code=name,
        error_message=str(error.get("errorMessage") or name),
        retryable=retryable,
    )


class BedrockBatches(NativeBatchAPI):
    provider = "bedrock"
    kinds = frozenset({Kind.chat})  # image models in batch: not seen documented (reference §6)
    max_requests = 50_000  # records per job (quota, U)
    max_bytes = 1024 * 1024 * 1024  # one input file (quota, U)
    one_model = True

    def __init__(self, config: BatchConfig | None = None, adapter: BedrockAdapter | None = None) -> None:
        self._config = config
        self._bucket: BatchBucket | None = None
        self.adapter = adapter or BedrockAdapter()

    # ------------------------------------------------------------------------------ the operator's
    @property
    def config(self) -> BatchConfig:
        if self._config is None:  # read when first needed: importing the registry reads no settings
            self._config = BatchConfig.from_settings()
        return self._config

    @property
    def enabled(self) -> bool:
        return bool(self.config.s3_uri and self.config.role_arn)

    @property
    def min_requests(self) -> int:  # type: ignore[override]
        return max(1, self.config.min_records)

    def bucket(self) -> BatchBucket:
        if self._bucket is None:
            if not self.enabled:
                raise ProviderError(
                    "Bedrock batch inference needs MMQ_BEDROCK_BATCH_S3_URI and MMQ_BEDROCK_BATCH_ROLE_ARN",
                    code="target_misconfigured",
                    provider=self.provider,
                )
            self._bucket = BatchBucket(str(self.config.s3_uri))
        return self._bucket

    # ------------------------------------------------------------------------------------ the dialect
    def control_url(self, target: Target) -> str:
        """The control plane: AWS's beside the target's runtime host, else the target's own base URL."""
        base = auth.base_url_for(target)
        parts = urlsplit(base)
        match = _RUNTIME_HOST.match(parts.hostname or "")
        if match and parts.port is None:
            return f"{parts.scheme}://bedrock{match['fips'] or ''}.{match['region']}.amazonaws.com"
        return base

    async def _call(
        self, client: httpx.AsyncClient, target: Target, method: str, path: str, body: Any = None
    ) -> dict[str, Any]:
        url = self.control_url(target) + path
        content = b"" if body is None else _http.encoded(body)
        headers = auth.request_headers(target, url, content, self.provider, method)
        response = await _http.call(
            client, self.adapter.error, self.provider, method, url, headers, content=content or None
        )
        return _http.json_object(response, self.provider, f"{method} {path}")

    def batch(self, job: Mapping[str, Any]) -> ProviderBatch:
        raw = str(job.get("status") or "")
        state: State = STATES.get(raw, "running")  # unknown: not terminal
        s3_in = job.get("inputDataConfig", {}).get("s3InputDataConfig", {})
        s3_out = job.get("outputDataConfig", {}).get("s3OutputDataConfig", {})
        return ProviderBatch(
            id=str(job.get("jobArn")),
            state=state,
            raw_status=raw,
            total=_count(job.get("totalRecordCount")),
            done=_count(job.get("successRecordCount")),
            failed=_count(job.get("errorRecordCount")),
            error=str(job.get("message") or raw) if state == "failed" else None,
            handles={
                "name": job.get("jobName"),
                "input": s3_in.get("s3Uri") if isinstance(s3_in, Mapping) else None,
                "output": s3_out.get("s3Uri") if isinstance(s3_out, Mapping) else None,
            },
        )

    # ---------------------------------------------------------------------------------- the protocol
    def line(self, custom_id: str, kind: Kind, wire: WireRequest) -> dict[str, Any]:
        if kind not in self.kinds or wire.content is None or not wire.url.endswith("/converse"):
            raise ValueError(f"bedrock batches take Converse chat requests, not {kind} to {wire.url}")
        return {"recordId": custom_id, "modelInput": json.loads(wire.content)}

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
        """Uploads the records (the same key for the same pack: a retry overwrites, nothing is left
        behind) and creates the job, whose name and token come from `metadata`."""
        if kind not in self.kinds or not model.strip():
            raise ValueError(f"bedrock batches take chat jobs of one model, not {kind} / {model!r}")
        bucket, name = self.bucket(), job_name(metadata)
        await bucket.put(f"{name}/input/{INPUT_FILE}", _http.jsonl(lines))
        body = {
            "jobName": name,
            "clientRequestToken": name,
            "roleArn": self.config.role_arn,
            "modelId": model.strip(),
            "modelInvocationType": "Converse",
            "timeoutDurationInHours": min(168, max(24, math.ceil(window_s / 3600))),
            "inputDataConfig": {
                "s3InputDataConfig": {
                    "s3Uri": bucket.uri(f"{name}/input/{INPUT_FILE}"),
                    "s3InputFormat": "JSONL",
                }
            },
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": bucket.uri(f"{name}/output/")}},
            "tags": [{"key": k, "value": v} for k, v in sorted(metadata.items())],
        }
        try:
            answer = await self._call(client, target, "POST", "/model-invocation-job", body)
        except ProviderError as e:
            found = await self.find_name(client, target, name) if e.code == "ConflictException" else None
            if found is None:
                raise
            return found  # its name is taken by the job an earlier attempt made
        return self.batch({**body, "jobArn": answer.get("jobArn"), "status": "Submitted"})

    async def get(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        return self.batch(
            await self._call(client, target, "GET", f"/model-invocation-job/{job_id(batch_id)}")
        )

    async def find(
        self, client: httpx.AsyncClient, target: Target, key: str, value: str
    ) -> ProviderBatch | None:
        return await self.find_name(client, target, job_name({key: value}))

    async def find_name(self, client: httpx.AsyncClient, target: Target, name: str) -> ProviderBatch | None:
        """The newest job named exactly `name`, or None."""
        token: str | None = None
        for _ in range(PAGES):
            query = {"nameContains": name, "sortOrder": "Descending", "maxResults": "100"}
            if token:
                query["nextToken"] = token
            page = await self._call(
                client,
                target,
                "GET",
                "/model-invocation-jobs?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()),
            )
            jobs = page.get("invocationJobSummaries")
            for job in jobs if isinstance(jobs, list) else []:
                if isinstance(job, Mapping) and job.get("jobName") == name:
                    return self.batch(job)
            token = page.get("nextToken") if isinstance(page.get("nextToken"), str) else None
            if not token:
                return None
        return None

    async def cancel(self, client: httpx.AsyncClient, target: Target, batch_id: str) -> ProviderBatch:
        await self._call(client, target, "POST", f"/model-invocation-job/{job_id(batch_id)}/stop")
        return await self.get(client, target, batch_id)

    async def results(
        self, client: httpx.AsyncClient, target: Target, batch: ProviderBatch
    ) -> AsyncIterator[LineResult]:
        """The output file's records, streamed from S3; the input file is deleted once they are read."""
        if batch.state != "ended":
            batch = await self.get(client, target, batch.id)
            if batch.state != "ended":
                return
        bucket = self.bucket()
        output, given = bucket.key_of(batch.handles.get("output")), bucket.key_of(batch.handles.get("input"))
        if output is None or given is None:
            raise ProviderError(
                f"job {batch.id}: its S3 locations are not under MMQ_BEDROCK_BATCH_S3_URI: not read",
                code="foreign_output",
                provider=self.provider,
            )
        name = given.rsplit("/", 1)[-1] if given.endswith(".jsonl") else INPUT_FILE
        key = f"{output}/{job_id(batch.id)}/{name}.out"
        try:
            async for raw in bucket.lines(key):
                try:
                    item = json.loads(raw)
                except ValueError:
                    item = None
                result = line_result(item) if isinstance(item, dict) else None
                if result is not None:
                    yield result
        except BlobNotFound:
            if batch.done or batch.failed:  # records ran, their answers must be there: read again later
                raise ProviderError(
                    f"job {batch.id}: no {key} in S3 yet",
                    code="output_missing",
                    retryable=True,
                    provider=self.provider,
                ) from None
            return  # nothing ran (stopped or expired before it started): every record goes realtime
        if given.endswith(".jsonl"):
            await bucket.delete(given)
