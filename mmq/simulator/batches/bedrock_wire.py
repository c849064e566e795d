"""Bedrock batch inference on the wire: the create body checked as strictly as the service model says,
the records read from the input JSONL, and the job, list and output shapes rendered.

Why apart from bedrock.py (the routes): these are pure functions of a body or a batch, so the rules
(botocore's bedrock 2023-04-20 service model: patterns, enums, ranges; reference native_batch.md §6)
read in one place and the handlers stay about the lifecycle. Timestamps are ISO 8601 (the model's
`timestampFormat`); statuses are Bedrock's words for the timeline's neutral ones (`status_word`).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from mmq.simulator.batches.timeline import Batch, Line
from mmq.simulator.bedrock.errors import BedrockError, _constraint, _invalid

ACCOUNT = "123456789012"  # the simulator's AWS account, in every ARN it makes
CREATE_FIELDS = frozenset(
    {
        "jobName",
        "roleArn",
        "clientRequestToken",
        "modelId",
        "inputDataConfig",
        "outputDataConfig",
        "vpcConfig",
        "timeoutDurationInHours",
        "tags",
        "modelInvocationType",
    }
)
PATTERNS = {
    "jobName": r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}",
    "roleArn": r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+",
    "clientRequestToken": r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}",
    "modelId": r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,2047}",  # the model's pattern, loosened: ids, ARNs, profiles
    "s3Uri": r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?",
}
INVOCATION_TYPES = ("InvokeModel", "Converse")
RECORD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the simulator's rule; AWS documents none (U)
MAX_RECORDS = 50_000  # records per job (quota, U)
MIN_HOURS, MAX_HOURS = 24, 168


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _string(
    body: dict[str, object], name: str, where: str | None = None, required: bool = True
) -> str | None:
    value = body.get(name)
    where = where or name
    if value is None:
        if required:
            raise _constraint(where, "Member must not be null")
        return None
    if not isinstance(value, str) or not re.fullmatch(PATTERNS[name], value):
        raise _constraint(where, f"Member must satisfy regular expression pattern: {PATTERNS[name]}")
    return value


def _s3(body: dict[str, object], config: str, inner: str, allowed: frozenset[str]) -> dict[str, object]:
    outer = body.get(config)
    if not isinstance(outer, dict) or set(outer) != {inner} or not isinstance(outer[inner], dict):
        raise _constraint(config, f"Member must have exactly one member set: {inner}")
    s3 = outer[inner]
    extra = sorted(set(s3) - allowed)
    if extra:
        raise _invalid(f"Unknown field '{extra[0]}' at '{config}.{inner}'. (the mmq simulator is strict)")
    _string(s3, "s3Uri", f"{config}.{inner}.s3Uri")
    return s3


def check_create(body: dict[str, object]) -> dict[str, object]:
    """The create body, checked; the fields the job keeps (defaults filled). Raises ValidationException."""
    extra = sorted(set(body) - CREATE_FIELDS)
    if extra:
        raise _invalid(f"Unknown field '{extra[0]}' at 'CreateModelInvocationJobRequest'. (mmq simulator)")
    for name in ("jobName", "roleArn", "modelId"):
        _string(body, name)
    _string(body, "clientRequestToken", required=False)
    s3_in = _s3(
        body, "inputDataConfig", "s3InputDataConfig", frozenset({"s3Uri", "s3InputFormat", "s3BucketOwner"})
    )
    if s3_in.get("s3InputFormat", "JSONL") != "JSONL":
        raise _constraint(
            "inputDataConfig.s3InputDataConfig.s3InputFormat", "Member must satisfy enum value set: [JSONL]"
        )
    _s3(
        body,
        "outputDataConfig",
        "s3OutputDataConfig",
        frozenset({"s3Uri", "s3EncryptionKeyId", "s3BucketOwner"}),
    )
    hours = body.get("timeoutDurationInHours", MIN_HOURS)
    if isinstance(hours, bool) or not isinstance(hours, int) or not MIN_HOURS <= hours <= MAX_HOURS:
        raise _constraint(
            "timeoutDurationInHours", f"Member must have value between {MIN_HOURS} and {MAX_HOURS}"
        )
    kind = body.get("modelInvocationType", "InvokeModel")
    if kind not in INVOCATION_TYPES:
        raise _constraint(
            "modelInvocationType", "Member must satisfy enum value set: [InvokeModel, Converse]"
        )
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(
        isinstance(t, dict) and set(t) == {"key", "value"} and all(isinstance(v, str) for v in t.values())
        for t in tags
    ):
        raise _constraint("tags", "Member must be a list of {key, value} strings")
    return {
        **{k: v for k, v in body.items() if k != "tags"},
        "timeoutDurationInHours": hours,
        "modelInvocationType": kind,
    }


def records(
    files: list[tuple[str, bytes]], model: str, minimum: int, most: int | None
) -> tuple[list[Line], list[str], str | None]:
    """The input files' records as batch lines (`url` is the file each came from), and what makes the
    job fail its validation (None: valid): a line that is not a record, a duplicate recordId, too few
    or too many records, no .jsonl file at all."""
    lines: list[Line] = []
    seen: set[str] = set()
    if not files:
        return [], [], "No .jsonl input file was found at the input S3 location."
    for name, data in files:
        if data.startswith(b"\xef\xbb\xbf"):
            return [], [], f"{name}: the file starts with a byte order mark; use UTF-8 without one."
        for n, raw in enumerate(data.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                return [], [], f"{name} line {n}: not valid JSON."
            if not isinstance(record, dict) or not isinstance(record.get("modelInput"), dict):
                return [], [], f"{name} line {n}: a record is an object with a modelInput object."
            if set(record) - {"recordId", "modelInput"}:
                return (
                    [],
                    [],
                    f"{name} line {n}: unknown field(s) {sorted(set(record) - {'recordId', 'modelInput'})}.",
                )
            record_id = record.get("recordId", f"REC{len(lines) + 1:08d}")
            if not isinstance(record_id, str) or not RECORD_ID.match(record_id):
                return [], [], f"{name} line {n}: recordId must match {RECORD_ID.pattern}."
            if record_id in seen:
                return [], [], f"{name} line {n}: duplicate recordId {record_id!r}."
            seen.add(record_id)
            lines.append(Line(len(lines), record_id, name, record["modelInput"]))
    limit = most or MAX_RECORDS
    if len(lines) < minimum:
        return (
            [],
            [],
            (
                f"The number of records ({len(lines)}) is less than the minimum number of records per batch "
                f"inference job ({minimum}) for {model}."
            ),
        )
    if len(lines) > limit:
        return [], [], f"The number of records ({len(lines)}) exceeds the quota of {limit} per job."
    return lines, [name for name, _ in files], None


def status_word(batch: Batch, now: float) -> str:
    """Bedrock's status for the timeline's: validation shows Submitted, Validating then Scheduled;
    an expiry with some records done is PartiallyCompleted, with none Expired; a cancel is Stopping,
    then Stopped."""
    status = batch.terminal or batch.status(now)
    if status == "validating":
        third = (now - batch.created_at) / max(batch.plan.validate_s, 1e-9) * 3
        return ("Submitted", "Validating", "Scheduled")[min(2, int(third))]
    counts = batch.counts()
    return {
        "in_progress": "InProgress",
        "finalizing": "InProgress",
        "cancelling": "Stopping",
        "completed": "Completed",
        "failed": "Failed",
        "cancelled": "Stopped",
        "expired": "PartiallyCompleted" if counts["succeeded"] + counts["errored"] else "Expired",
    }[status]


def job_object(batch: Batch, now: float, status: str) -> dict[str, object]:
    info = batch.info
    counts = batch.counts()
    processed = counts["succeeded"] + counts["errored"]
    job: dict[str, object] = {
        "jobArn": info["arn"],
        "jobName": info["jobName"],
        "modelId": info["modelId"],
        "roleArn": info["roleArn"],
        "status": status,
        "submitTime": iso(batch.created_at),
        "lastModifiedTime": iso(batch.ended_at or now),
        "inputDataConfig": info["inputDataConfig"],
        "outputDataConfig": info["outputDataConfig"],
        "timeoutDurationInHours": info["timeoutDurationInHours"],
        "jobExpirationTime": iso(batch.created_at + int(info["timeoutDurationInHours"]) * 3600),  # type: ignore[call-overload]
        "modelInvocationType": info["modelInvocationType"],
        "totalRecordCount": len(batch.lines),
        "processedRecordCount": processed,
        "successRecordCount": counts["succeeded"],
        "errorRecordCount": counts["errored"],
    }
    if info.get("clientRequestToken"):
        job["clientRequestToken"] = info["clientRequestToken"]
    if batch.ended_at is not None:
        job["endTime"] = iso(batch.ended_at)
    if status == "Failed":
        job["message"] = "; ".join(str(e.get("message")) for e in batch.invalid or [])
    return job


def output_files(batch: Batch) -> dict[str, bytes]:
    """`<input>.jsonl.out` per input file (the records that ran, in the order they finished) and
    `manifest.json.out` with the totals."""
    out: dict[str, list[bytes]] = {name: [] for name in batch.info["files"]}  # type: ignore[union-attr]
    tokens = {"inputTokenCount": 0, "outputTokenCount": 0}
    for line in batch.in_finish_order():
        outcome = line.outcome
        if outcome is None or outcome.kind not in ("succeeded", "errored"):
            continue  # stopped or timed out before it ran: no line (the caller runs it again)
        record: dict[str, object] = {"recordId": line.id, "modelInput": line.body}
        if outcome.kind == "succeeded":
            record["modelOutput"] = outcome.body
            usage = outcome.body.get("usage") if isinstance(outcome.body, dict) else None
            if isinstance(usage, dict):
                tokens["inputTokenCount"] += int(usage.get("inputTokens") or 0)
                tokens["outputTokenCount"] += int(usage.get("outputTokens") or 0)
        else:
            message = outcome.body.get("message") if isinstance(outcome.body, dict) else None
            record["error"] = {"errorCode": outcome.status or 500, "errorMessage": str(message or "error")}
        out[line.url].append(json.dumps(record, ensure_ascii=False).encode())
    counts = batch.counts()
    manifest = {
        "totalRecordCount": len(batch.lines),
        "processedRecordCount": counts["succeeded"] + counts["errored"],
        "successRecordCount": counts["succeeded"],
        "errorRecordCount": counts["errored"],
        **tokens,
    }
    files = {f"{name}.out": b"".join(r + b"\n" for r in rows) for name, rows in out.items()}
    files["manifest.json.out"] = json.dumps(manifest).encode()
    return files


def conflict(message: str) -> BedrockError:
    return BedrockError(400, "ConflictException", message)


def not_found(job: str) -> BedrockError:
    return BedrockError(404, "ResourceNotFoundException", f"The batch inference job {job!r} was not found.")
