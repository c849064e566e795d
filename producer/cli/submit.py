"""Batch commands: `mmq submit` a JSONL file, then `results`, `cancel` and `retry-failed` (`status` and
`batches` are in status.py and batches.py).

The input file is opened and its first request read before the batch is created (inputs.py): a
missing file, a folder or an empty file stops `submit` with nothing left behind in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from mmq.settings import get_settings
from producer.cli import remote
from producer.cli.common import with_records
from producer.cli.flags import add_out, add_tenant, add_watch
from producer.cli.inputs import input_file, opened_jsonl
from producer.cli.options import (
    add_cache_options,
    add_config_option,
    add_media_options,
    add_schedule_options,
    batch_options,
)
from producer.cli.quote import add_dry_run


def cmd_submit(args: argparse.Namespace) -> int:
    from mmq.contract import BatchRecord
    from mmq.submissions import SubmissionInterrupted
    from producer.cli.common import CtrlC, Stopped
    from producer.cli.progress import watch
    from producer.options import LineError
    from producer.submit import Producer

    path = input_file(
        args.file,
        kind="a JSONL file",
        instead="for a folder of images use `mmq caption FOLDER`, of audio `mmq transcribe FOLDER`",
    )
    lines = opened_jsonl(path, get_settings().max_line_bytes)
    if args.dry_run:  # the quote only: no Redis connection, nothing stored
        from producer.cli.quote import quote_lines

        options = batch_options(args, None)
        metadata = {"source": path.name}
        return quote_lines(
            args, lines, base_dir=path.parent, metadata=metadata, options=options, dry_run=True
        )
    if (api := remote.api_mode()) is not None:  # MMQ_API_URL: through the API, as the key's tenant
        return remote.run(remote.submit, api, args, path)

    made: list[str] = []

    def created(batch: BatchRecord) -> None:  # the id first: a submit stopped midway names its batch
        made.append(batch.id)
        print(batch.id, flush=True)

    async def go(settings, redis, records, storage):
        producer = Producer(redis, storage, settings, allow_local_paths=True, base_dir=path.parent)
        with CtrlC() as ctrl_c:
            try:
                batch = await producer.submit_batch(
                    ctrl_c.feed(lines),
                    metadata={"source": path.name},
                    on_created=created,
                    **batch_options(args, producer),
                )
            except LineError as e:
                sys.exit(f"mmq: {e}")
            except (Stopped, SubmissionInterrupted) as e:  # sealed with the lines sent (mmq/submissions.py)
                batch = await records.get_batch(made[0])
                why = "interrupted" if isinstance(e, Stopped) else str(e)
                sent = batch.counts.total if batch else "?"
                print(
                    f"\nmmq: {why}: batch {made[0]} keeps the {sent} lines sent before; the workers run "
                    f"them. Follow with `mmq status {made[0]} --watch`",
                    file=sys.stderr,
                )
                return 130 if isinstance(e, Stopped) else 1
            print(
                f"mmq: {batch.counts.total} jobs ({batch.counts.failed} invalid); "
                f"follow with `mmq status {batch.id} --watch`",
                file=sys.stderr,
            )
            if args.watch:
                await watch(records, batch.id, stop=ctrl_c.event)
                if ctrl_c.event.is_set():
                    print(f"\nmmq: detached; batch {batch.id} keeps running in the workers", file=sys.stderr)
                    return 130
        return 0

    try:
        return asyncio.run(with_records(go))
    except KeyboardInterrupt:  # a second Ctrl-C: a worker seals what was sent after MMQ_SUBMIT_STALL_S
        where = f" batch {made[0]} keeps the lines sent;" if made else ""
        print(f"\nmmq: interrupted;{where} see `mmq batches`", file=sys.stderr)
        return 130


def cmd_cancel(args: argparse.Namespace) -> int:
    from producer.submit import Producer

    if (api := remote.api_mode()) is not None:
        return remote.run(remote.cancel, api, args)

    async def go(settings, redis, records, storage):
        if await records.get_batch(args.id) is None:
            sys.exit(f"mmq: no batch {args.id}")
        status = await Producer(redis, storage, settings).cancel_batch(args.id)
        batch = await records.get_batch(args.id)
        print(f"mmq: batch {args.id} {status}; {batch.counts.cancelled} jobs cancelled", file=sys.stderr)
        return 0

    return asyncio.run(with_records(go))


def cmd_retry_failed(args: argparse.Namespace) -> int:
    from producer.cli.progress import watch
    from producer.submit import Producer

    if (api := remote.api_mode()) is not None:
        return remote.run(remote.retry_failed, api, args)

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


def cmd_results(args: argparse.Namespace) -> int:
    from mmq.storage import BlobNotFound
    from producer.cli.errors import store_mismatch
    from producer.export import export_batch

    if not args.out:
        sys.exit("mmq results: give --out FILE.jsonl (where to write the output JSONL)")
    if (api := remote.api_mode()) is not None:
        return remote.run(remote.results, api, args)

    async def go(settings, redis, records, storage):
        if await records.get_batch(args.id) is None:
            sys.exit(f"mmq: no batch {args.id} (list yours with `mmq batches`)")
        try:
            files = await export_batch(
                records, storage, args.id, Path(args.out), Path(args.files) if args.files else None
            )
        except BlobNotFound as e:
            sys.exit(
                f"mmq: {args.out} is incomplete: "
                + store_mismatch(settings.storage_url, e.args[0], "results")
            )
        print(
            f"mmq: wrote {args.out}" + (f" and {files} files to {args.files}" if args.files else ""),
            file=sys.stderr,
        )
        return 0

    return asyncio.run(with_records(go))


def add_submit_parser(sub: Any) -> None:
    s = sub.add_parser(
        "submit", help="submit a JSONL file (OpenAI Batch input format)", description=remote.mode_note()
    )
    s.add_argument("file", metavar="FILE.jsonl", help="one request per line: custom_id, method, url, body")
    add_tenant(s, api=True)
    add_watch(s, default=False)
    add_config_option(s)
    add_media_options(s)
    add_cache_options(s)
    add_schedule_options(s)
    add_dry_run(s)
    s.set_defaults(fn=cmd_submit)


def add_batch_parsers(sub: Any) -> None:
    """cancel, retry-failed, results: what follows a submit (listed after the submitting commands)."""
    c = sub.add_parser(
        "cancel",
        help="cancel a batch: queued jobs are cancelled, running ones finish",
        description=remote.mode_note(),
    )
    c.add_argument("id", metavar="BATCH_ID", help="the batch to cancel")
    c.set_defaults(fn=cmd_cancel)

    rf = sub.add_parser(
        "retry-failed",
        help="run a batch's failed jobs again (not invalid requests)",
        description=remote.mode_note(),
    )
    rf.add_argument("id", metavar="BATCH_ID", help="the batch whose failed jobs run again")
    add_watch(rf, default=False)
    rf.set_defaults(fn=cmd_retry_failed)

    r = sub.add_parser(
        "results", help="write a batch's output JSONL (and its files)", description=remote.mode_note()
    )
    r.add_argument("id", metavar="BATCH_ID", help="the batch to write out")
    add_out(r, "the output JSONL file to write, OpenAI Batch output format (required)", old=True)
    r.add_argument("--files", metavar="DIR", help="also write every image/audio/text file to this folder")
    r.set_defaults(fn=cmd_results)
