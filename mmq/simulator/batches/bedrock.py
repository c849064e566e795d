"""AWS Bedrock batch inference (CreateModelInvocationJob), simulated: create, get, list and stop on the
control plane, records read from and answers written to S3.

Why: the batch tier's Bedrock client (worker/batch_tier/apis/bedrock.py) must meet what Bedrock does
(reference native_batch.md §6): a job names an S3 input (a .jsonl file or a prefix of them) and an S3
output prefix; its records `{"recordId", "modelInput"}` are read when the job is created (a job whose
input cannot be read, has too few records (`batch_min_records`) or too many, or a malformed record,
fails its validation); each record runs through the realtime Converse or InvokeModel handler (per
`modelInvocationType`), so its usage and billing are what the realtime endpoint reports; once the job
ends, `{output}/{job id}/<input>.jsonl.out` (records in the order they finished, `modelOutput` or
`error {errorCode, errorMessage}`; records that never ran are absent) and `manifest.json.out` are
written (bedrock_s3.py, the server MMQ_SIM_S3_ENDPOINT names) before any answer shows the job ended.
The lifecycle is the shared engine's (engine.py, timeline.py) under the same batch_* knobs as the other
batch APIs: validation, lines finishing one by one, injected failures, expiry, slow stop.

    POST /model-invocation-job                      -> {jobArn}; a repeated clientRequestToken answers
                                                       the first job's ARN, a taken jobName is a Conflict
    GET  /model-invocation-job/{job id or ARN}
    GET  /model-invocation-jobs?nameContains&statusEquals&sortOrder&maxResults&nextToken
    POST /model-invocation-job/{job id or ARN}/stop -> {} (Stopping, then Stopped)

Auth and errors are the realtime Bedrock dialect's (SigV4 with signing name `bedrock`, or a bearer API
key; {"message"} with x-amzn-ErrorType).
"""

from __future__ import annotations

import asyncio
import re
import string
import time
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.batches import bedrock_wire as wire
from mmq.simulator.batches.bedrock_s3 import S3, S3Unavailable
from mmq.simulator.batches.calls import Origin, answer, json_body
from mmq.simulator.batches.engine import BatchEngine, new_id
from mmq.simulator.batches.routing import by_method
from mmq.simulator.batches.timeline import Batch, Line, Runner
from mmq.simulator.bedrock.auth import authenticate
from mmq.simulator.bedrock.chat import converse
from mmq.simulator.bedrock.errors import BedrockError, _constraint, _dialect, _invalid
from mmq.simulator.bedrock.images import invoke
from mmq.simulator.bedrock.wire import _ok, _read_json
from mmq.simulator.errors import json_response
from mmq.simulator.guard import Handler, guarded

PROVIDER = "bedrock"
_JOB = re.compile(r"^(?:arn:aws[\w-]*:bedrock:[a-z0-9-]{1,20}:\d{12}:model-invocation-job/)?([a-z0-9]{12})$")
_REGION = re.compile(r"Credential=[^/\s]+/\d{8}/([a-z0-9-]+)/")
_ID_CHARS = string.ascii_lowercase + string.digits
INJECTED = {"message": "Internal server error (mmq simulator: batch_fail_rate)"}


def _engine(request: Request) -> BatchEngine:
    return request.app.state.sim.batches


def _s3(request: Request) -> S3:
    sim = request.app.state.sim
    endpoint = sim.config.s3_endpoint
    current = getattr(sim, "bedrock_s3", None)
    if current is None or current.endpoint != (endpoint.rstrip("/") if endpoint else None):
        current = sim.bedrock_s3 = S3(endpoint)
    return current


def _runner(origin: Origin, model: str, invocation: str) -> Runner:
    action, handler = ("converse", converse) if invocation == "Converse" else ("invoke", invoke)

    async def run(line: Line, inject: bool) -> tuple[int, object]:
        if inject:
            return 500, INJECTED
        path = f"/model/{model}/{action}"
        request = origin.request(path, json_body(line.body), path_params={"model_id": model})
        return await answer(handler, request)

    return run


def _job(request: Request) -> Batch:
    raw = unquote(request.path_params["job_id"])
    match = _JOB.match(raw)
    if not match:
        raise _constraint(
            "jobIdentifier", f"Member must satisfy regular expression pattern: {_JOB.pattern[1:-1]}"
        )
    batch = _engine(request).get(PROVIDER, match[1])
    if batch is None:
        raise wire.not_found(raw)
    return batch


async def _current(request: Request, batch: Batch) -> dict[str, object]:
    """The job as it stands; an ended job's output is in S3 before any answer says it ended."""
    now = time.time()
    await _engine(request).advance(batch, now)
    status = wire.status_word(batch, now)
    if batch.terminal is not None and batch.terminal != "failed" and not batch.info.get("written"):
        lock = batch.info.setdefault("write_lock", asyncio.Lock())
        async with lock:  # type: ignore[attr-defined]
            if not batch.info.get("written"):
                out = str(batch.info["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"])  # type: ignore[index]
                folder = f"{out.rstrip('/')}/{batch.id}/"
                try:
                    for name, data in wire.output_files(batch).items():
                        await _s3(request).write(folder + name, data)
                except S3Unavailable as exc:
                    raise BedrockError(500, "InternalServerException", f"(mmq simulator) {exc}") from None
                batch.info["written"] = True
    return wire.job_object(batch, now, status)


# ------------------------------------------------------------------------------------------ handlers
async def create(request: Request) -> Response:
    engine = _engine(request)
    fields = wire.check_create(_read_json(await request.body()))
    token = fields.get("clientRequestToken")
    for other in engine.newest_first(PROVIDER):
        if token and other.info.get("clientRequestToken") == token:
            return _ok({"jobArn": other.info["arn"]})  # a repeated request: ignored, as Bedrock does
        if other.info["jobName"] == fields["jobName"]:
            raise wire.conflict(f"A batch inference job named {fields['jobName']!r} already exists.")
    s3_in = fields["inputDataConfig"]["s3InputDataConfig"]  # type: ignore[index]
    config = engine.config
    invalid: list[dict[str, object]] | None = None
    try:
        files = await _s3(request).read_jsonl(str(s3_in["s3Uri"]))
        lines, names, problem = wire.records(
            files, str(fields["modelId"]), config.batch_min_records, config.batch_max_requests
        )
    except S3Unavailable as exc:
        lines, names, problem = [], [], str(exc)
    if problem is not None:
        invalid = [{"message": problem}]
    region = _REGION.search(request.headers.get("authorization", ""))
    job_id = new_id("", 12, _ID_CHARS)
    arn = (
        f"arn:aws:bedrock:{region[1] if region else 'us-east-1'}:{wire.ACCOUNT}:model-invocation-job/{job_id}"
    )
    engine.create(
        job_id,
        PROVIDER,
        lines,
        _runner(Origin.of(request), str(fields["modelId"]), str(fields["modelInvocationType"])),
        window_s=int(fields["timeoutDurationInHours"]) * 3600,  # type: ignore[call-overload]
        invalid=invalid,
        info={**fields, "arn": arn, "files": names},
    )
    return _ok({"jobArn": arn})


async def retrieve(request: Request) -> Response:
    return _ok(await _current(request, _job(request)))


def _max_results(raw: str | None) -> int:
    if raw is None:
        return 1000
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise _constraint("maxResults", "Member must have value between 1 and 1000")
    return int(raw)


async def listing(request: Request) -> Response:
    query = request.query_params
    name, status = query.get("nameContains"), query.get("statusEquals")
    order = query.get("sortOrder", "Descending")
    if order not in ("Ascending", "Descending"):
        raise _constraint("sortOrder", "Member must satisfy enum value set: [Ascending, Descending]")
    if query.get("sortBy", "CreationTime") != "CreationTime":
        raise _constraint("sortBy", "Member must satisfy enum value set: [CreationTime]")
    most = _max_results(query.get("maxResults"))
    token = query.get("nextToken")
    start = int(token) if token and token.isdigit() else 0
    if token and not token.isdigit():
        raise _invalid("The pagination token is invalid.")
    jobs = _engine(request).newest_first(PROVIDER)
    if order == "Ascending":
        jobs.reverse()
    summaries = []
    for batch in jobs:
        if name and name not in str(batch.info["jobName"]):
            continue
        job = await _current(request, batch)
        if status and job["status"] != status:
            continue
        summaries.append(job)
    page: dict[str, object] = {"invocationJobSummaries": summaries[start : start + most]}
    if start + most < len(summaries):
        page["nextToken"] = str(start + most)
    return _ok(page)


async def stop(request: Request) -> Response:
    batch = _job(request)
    engine = _engine(request)
    await engine.advance(batch)
    if batch.terminal is not None:
        status = wire.status_word(batch, time.time())
        raise _invalid(f"The batch inference job is in a terminal state ({status}) and cannot be stopped.")
    if batch.cancel_at is None:
        engine.cancel(batch)
    return json_response({}, headers={"x-amzn-requestid": new_id("", 32, _ID_CHARS)})


def bedrock_batch_routes() -> list[Route]:
    table: tuple[tuple[str, str, dict[str, Handler]], ...] = (
        ("/model-invocation-job", "/model-invocation-job", {"POST": create}),
        ("/model-invocation-jobs", "/model-invocation-jobs", {"GET": listing}),
        (
            "/model-invocation-job/{job_id:path}/stop",
            "/model-invocation-job/{jobIdentifier}/stop",
            {"POST": stop},
        ),
        ("/model-invocation-job/{job_id:path}", "/model-invocation-job/{jobIdentifier}", {"GET": retrieve}),
    )
    return [
        Route(path, _dialect(guarded(by_method(handlers), stat, key=authenticate)), methods=list(handlers))
        for path, stat, handlers in table
    ]
