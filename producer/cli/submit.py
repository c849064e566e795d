"""Batch commands: `mmq submit` a JSONL file, then `status`, `results`, `cancel` and `retry-failed`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from producer.cli.common import with_records
from producer.cli.options import add_cache_options, add_media_options, add_schedule_options, batch_options


def cmd_submit(args: argparse.Namespace) -> int:
    from producer.jsonl import iter_jsonl
    from producer.options import LineError
    from producer.progress import watch
    from producer.submit import Producer

    async def go(settings, redis, records, storage):
        path = Path(args.file)
        producer = Producer(redis, storage, settings, allow_local_paths=True, base_dir=path.parent)
        try:
            batch = await producer.submit_batch(
                iter_jsonl(path, producer.settings.max_line_bytes),
                metadata={"source": path.name},
                **batch_options(args, producer),
            )
        except LineError as e:
            sys.exit(f"mmq: {e}")
        print(batch.id)
        print(
            f"mmq: {batch.counts.total} jobs ({batch.counts.failed} invalid); "
            f"follow with `mmq status {batch.id} --watch`",
            file=sys.stderr,
        )
        if args.watch:
            await watch(records, batch.id)
        return 0

    return asyncio.run(with_records(go))


def cmd_cancel(args: argparse.Namespace) -> int:
    from producer.submit import Producer

    async def go(settings, redis, records, storage):
        if await records.get_batch(args.id) is None:
            sys.exit(f"mmq: no batch {args.id}")
        status = await Producer(redis, storage, settings).cancel_batch(args.id)
        batch = await records.get_batch(args.id)
        print(f"mmq: batch {args.id} {status}; {batch.counts.cancelled} jobs cancelled", file=sys.stderr)
        return 0

    return asyncio.run(with_records(go))


def cmd_retry_failed(args: argparse.Namespace) -> int:
    from producer.progress import watch
    from producer.submit import Producer

    async def go(settings, redis, records, storage):
        try:
            requeued = await Producer(redis, storage, settings).retry_failed(args.id)
        except KeyError:
            sys.exit(f"mmq: no batch {args.id}")
        print(f"mmq: {requeued} failed jobs of {args.id} queued again", file=sys.stderr)
        if args.watch and requeued:
            await watch(records, args.id)
        return 0

    return asyncio.run(with_records(go))


def cmd_status(args: argparse.Namespace) -> int:
    from producer.progress import watch
    from producer.views import batch_view, job_view

    async def go(settings, redis, records, storage):
        if args.id.startswith("job_"):
            job = await records.get_job(args.id)
            if job is None:
                sys.exit(f"mmq: no job {args.id}")
            print(json.dumps(job_view(job), indent=2))
            return 0
        if args.watch:
            await watch(records, args.id)
        batch = await records.get_batch(args.id)
        if batch is None:
            sys.exit(f"mmq: no batch {args.id}")
        print(json.dumps(batch_view(batch), indent=2))
        return 0

    return asyncio.run(with_records(go))


def cmd_results(args: argparse.Namespace) -> int:
    from producer.export import export_batch

    async def go(settings, redis, records, storage):
        if await records.get_batch(args.id) is None:
            sys.exit(f"mmq: no batch {args.id}")
        files = await export_batch(
            records, storage, args.id, Path(args.output), Path(args.files) if args.files else None
        )
        print(
            f"mmq: wrote {args.output}" + (f" and {files} files to {args.files}" if args.files else ""),
            file=sys.stderr,
        )
        return 0

    return asyncio.run(with_records(go))


def add_submit_parser(sub: Any) -> None:
    s = sub.add_parser("submit", help="submit a JSONL file (OpenAI Batch input format)")
    s.add_argument("file")
    s.add_argument("--tenant", default="default")
    s.add_argument("--watch", action="store_true")
    s.add_argument("--config", help="routing config file (Portkey schema, JSON) for every job")
    add_media_options(s)
    add_cache_options(s)
    add_schedule_options(s)
    s.set_defaults(fn=cmd_submit)


def add_batch_parsers(sub: Any) -> None:
    """status, cancel, retry-failed, results: what follows a submit (listed after the submitting commands)."""
    st = sub.add_parser("status", help="status of a batch or a job")
    st.add_argument("id")
    st.add_argument("--watch", action="store_true", help="show a progress bar until the batch ends")
    st.set_defaults(fn=cmd_status)

    c = sub.add_parser("cancel", help="cancel a batch: queued jobs are cancelled, running ones finish")
    c.add_argument("id")
    c.set_defaults(fn=cmd_cancel)

    rf = sub.add_parser("retry-failed", help="run a batch's failed jobs again (not invalid requests)")
    rf.add_argument("id")
    rf.add_argument("--watch", action="store_true")
    rf.set_defaults(fn=cmd_retry_failed)

    r = sub.add_parser("results", help="write a batch's output JSONL (and files)")
    r.add_argument("id")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--files", help="also write every image/audio/text file to this folder")
    r.set_defaults(fn=cmd_results)
