"""`mmq status BATCH_ID|JOB_ID`: a batch or a job as a person reads it, or as JSON with `--json`.

The human view says what the batch is doing now (waiting until its window opens, running, ended), its
counts, local times, the provider batches holding its jobs (the batch tier), and its failures grouped by
error type with one example each, then the command that comes next. `--json` prints the API's view
(producer.views: the batch with its `provider_batches`), unchanged, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from producer.cli import remote
from producer.cli.common import with_records
from producer.cli.flags import add_json, add_watch
from producer.cli.humanize import RUNNING, ago, clock, format_duration, moment, state

if TYPE_CHECKING:
    from mmq.contract import BatchRecord, JobRecord
    from mmq.records import Records


async def failures_by_type(records: Records, batch_id: str) -> list[tuple[str, int, str]]:
    """(error type, count, one example `custom_id: message`) of the batch's failed jobs, most first."""
    from mmq.contract import JobStatus

    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    async for ids in records.iter_batch_job_ids(batch_id, chunk=500):
        for job in await records.get_jobs(ids):
            if job is None or job.status is not JobStatus.failed or job.error is None:
                continue
            kind = job.error.type + (f" ({job.error.code})" if job.error.code else "")
            counts[kind] += 1
            examples.setdefault(kind, f"{job.custom_id or job.id}: {job.error.message}")
    return [(kind, n, examples[kind]) for kind, n in counts.most_common()]


def batch_lines(
    batch: BatchRecord,
    failures: list[tuple[str, int, str]],
    now: float,
    provider_batches: list[dict[str, Any]] | None = None,
) -> list[str]:
    c = batch.counts
    rows: list[tuple[str, str]] = [("status", state(batch, now))]
    if batch.interrupted:
        rows.append(("submitted", f"only part of its input: {batch.interrupted} (its submission stopped)"))
    if source := batch.metadata.get("source"):
        made_by = batch.metadata.get("workflow")
        rows.append(("source", source + (f" (mmq {made_by})" if made_by else "")))
    rows.append(("tenant", batch.tenant))
    rows.append(("created", f"{moment(batch.created_at)} ({ago(batch.created_at, now)})"))
    if batch.finished_at:
        took = format_duration(batch.finished_at - batch.created_at)
        rows.append(("finished", f"{moment(batch.finished_at)} (took {took})"))
    if batch.not_before and batch.status in RUNNING:
        rows.append(("window", f"opens {clock(batch.not_before, now)} ({ago(batch.not_before, now)})"))
    if batch.deadline:
        rows.append(("deadline", f"{clock(batch.deadline, now)} ({ago(batch.deadline, now)})"))
    jobs = (
        f"{c.total} in all: {c.succeeded} ok, {c.failed} failed, {c.cancelled} cancelled, "
        f"{c.queued} queued, {c.running} running"
    )
    if c.budget:
        jobs += f", {c.budget} waiting for the budget"
    if c.provider_batch:
        jobs += f", {c.provider_batch} in provider batches (tier {batch.tier.value})"
    rows.append(("jobs", jobs))
    rows.append(("cost", _cost(batch) + (f"; {c.paid_twice} paid twice" if c.paid_twice else "")))
    extra = [f"{c.cached} from cache"] if c.cached else []
    if batch.invalid_lines:
        extra.append(f"{batch.invalid_lines} invalid lines (counted as failed)")
    extra.append(f"{c.provider_calls} provider calls")
    rows.append(("", "; ".join(extra)))
    lines = [f"batch {batch.id}"] + [f"  {k:<9} {v}" for k, v in rows]
    if provider_batches:
        lines.append("  provider batches:")
        lines += [f"    {_provider_batch(p, now)}" for p in provider_batches]
    if failures:
        lines.append("  failures by error type:")
        width = max(len(kind) for kind, _, _ in failures)
        lines += [f"    {n:>6}  {kind:<{width}}  e.g. {example}" for kind, n, example in failures]
    return [*lines, f"  next      {_next_step(batch)}"]


def _provider_batch(view: dict[str, Any], now: float) -> str:
    """One line of the batch tier's view of a provider batch (producer.views.provider_batches_view)."""
    text = f"{view.get('provider')} {view.get('id') or '(not created)'}: {view.get('state')}, "
    text += f"{view.get('jobs', 0)} lines, made {clock(view.get('created_at') or now, now)}"
    if view.get("fell_back_at"):
        text += f", fell back to realtime {clock(view['fell_back_at'], now)}"
    elif view.get("fallback_at") and view.get("state") not in ("harvested", "failed"):
        text += f", falls back to realtime {clock(view['fallback_at'], now)} if not ended"
    if view.get("error"):
        text += f" ({view['error'][:120]})"
    return text


def _cost(batch: BatchRecord) -> str:
    from mmq.budgets import dollars

    text = f"${dollars(batch.spent_micro_usd)} spent"
    if batch.max_cost_micro_usd is not None:
        text += f" of a ${dollars(batch.max_cost_micro_usd)} budget"
        if batch.on_budget.value == "fail":
            text += " (jobs past it fail)"
    if batch.reserved_micro_usd:
        text += f"; ${dollars(batch.reserved_micro_usd)} held by calls in flight"
    if batch.saved_micro_usd:
        text += f"; ${dollars(batch.saved_micro_usd)} saved by the batch tier"
    return text


def _next_step(batch: BatchRecord) -> str:
    if batch.counts.budget and batch.status in RUNNING:
        return f"mmq budget batch {batch.id} --max-cost USD    (raise it: the waiting jobs run)"
    if batch.status in RUNNING:
        return f"mmq status {batch.id} --watch"
    if batch.counts.failed:
        return f"mmq results {batch.id} --out out.jsonl    or: mmq retry-failed {batch.id} --watch"
    return f"mmq results {batch.id} --out out.jsonl --files files/"


def job_lines(job: JobRecord, now: float) -> list[str]:
    rows: list[tuple[str, Any]] = [
        ("status", job.status.value + (" (from cache)" if job.cached else "")),
        ("kind", job.kind.value),
        ("batch", job.batch_id or "-"),
        ("custom_id", job.custom_id or "-"),
        ("created", f"{moment(job.created_at)} ({ago(job.created_at, now)})"),
    ]
    if job.started_at:
        rows.append(("started", moment(job.started_at)))
    if job.finished_at:
        rows.append(("finished", moment(job.finished_at)))
    for n, a in enumerate(job.attempts, 1):
        outcome = a.error or ("skipped: circuit open" if a.skipped else f"HTTP {a.status}")
        via = f" (provider batch {a.provider_batch})" if a.tier == "batch" else ""
        rows.append(
            (f"attempt {n}", f"{a.target}{via}: {outcome} in {a.latency_ms:.0f} ms at {clock(a.at, now)}")
        )
    if job.cost is not None:
        priced = f"${job.cost.usd}" if job.cost.missing is None else job.cost.missing
        rows.append(("cost", priced + (f" ({job.cost.tier} tier)" if job.cost.tier != "realtime" else "")))
    if job.error:
        code = f" ({job.error.code})" if job.error.code else ""
        rows.append(("error", f"{job.error.type}{code}: {job.error.message}"))
    if job.result:
        files = ", ".join(f"{f.content_type} {f.bytes} B" for f in job.result.files) or "none"
        rows.append(("result", f"files: {files}"))
    return [f"job {job.id}"] + [f"  {k:<10} {v}" for k, v in rows]


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from mmq.packs import Packs
    from producer.cli.progress import watch
    from producer.views import batch_view, job_view, provider_batches_view

    if (api := remote.api_mode()) is not None:  # MMQ_API_URL: through the API, as the key's tenant
        return remote.run(remote.status, api, args)

    async def go(settings, redis, records, storage):
        if args.id.startswith("job_"):
            job = await records.get_job(args.id)
            if job is None:
                sys.exit(f"mmq: no job {args.id}")
            print(
                json.dumps(job_view(job), indent=2) if args.json else "\n".join(job_lines(job, time.time()))
            )
            return 0
        batch = await records.get_batch(args.id)
        if batch is None:
            sys.exit(f"mmq: no batch {args.id} (list yours with `mmq batches`)")
        if args.watch:
            batch = await watch(records, args.id)
        packs = provider_batches_view(await Packs(redis, settings.key_prefix).batch_packs(batch.id))
        if args.json:
            print(json.dumps({**batch_view(batch), "provider_batches": packs}, indent=2))
            return 0
        failures = await failures_by_type(records, batch.id) if batch.counts.failed else []
        print("\n".join(batch_lines(batch, failures, time.time(), packs)))
        return 0

    return asyncio.run(with_records(go))


def add_parsers(sub: Any) -> None:
    st = sub.add_parser(
        "status",
        help="a batch or a job: state, counts, times, failures by error type",
        description=remote.mode_note(),
    )
    st.add_argument("id", metavar="BATCH_ID|JOB_ID", help="batch_… or job_…")
    add_watch(st, default=False, then=", then the status")
    add_json(st, "the API's view of the batch or job")
    st.set_defaults(fn=cmd_status)
