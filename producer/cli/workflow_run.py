"""How a workflow command runs: build lines from files, submit like `mmq submit`, watch, then write
friendly outputs.

The first Ctrl-C stops feeding lines (the batch is sealed with what was sent) or stops watching; either
way the workers go on, and the command prints how to re-attach. `--resume BATCH_ID` re-attaches to a
batch the same command submitted and writes its outputs when it ends. The four workflows themselves
(what they build and write, and their flags) are in workflows.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmq.settings import Settings
from producer.cli.common import CtrlC, with_records
from producer.cli.options import batch_options

if TYPE_CHECKING:  # imported lazily at run time: `mmq --help` stays fast
    from redis.asyncio import Redis

    from mmq.contract import BatchRecord
    from mmq.records import Records
    from mmq.storage import Storage
    from producer.workflows.outputs import Written

Built = tuple[Iterator[Any], Path]  # a workflow's lines and the folder local paths are relative to


@dataclass
class Workflow:
    name: str  # the command, also stored in the batch metadata to check --resume
    out_name: str  # what the outputs are called in messages
    build: Callable[[argparse.Namespace], tuple[Iterator[Any], Path, str]]  # lines, base dir, summary
    write: Callable[[argparse.Namespace, Records, Storage, str, Path], Awaitable[Written]]
    metadata: Callable[[argparse.Namespace], dict[str, str]] = lambda args: {}


def _until(stop: asyncio.Event, lines: Iterator[Any]) -> Iterator[Any]:
    """Stops feeding lines at the first Ctrl-C; submit_batch then seals the batch with what it got."""
    for line in lines:
        if stop.is_set():
            return
        yield line


def reattach_hints(wf: Workflow, batch_id: str, out: str) -> str:
    return (
        f"mmq: batch {batch_id} keeps running in the workers. Later:\n"
        f"  mmq {wf.name} --resume {batch_id} --out {out}   # waits for the end, then writes the "
        f"{wf.out_name}\n"
        f"  mmq status {batch_id} --watch                      # progress only\n"
        f"  mmq results {batch_id} --out results.jsonl --files files/   # raw output JSONL and files"
    )


def _build_workflow(wf: Workflow, args: argparse.Namespace) -> Built:
    """Scans the input (before Ctrl-C is taken over: interrupting a long scan just exits)."""
    from producer.workflows.inputs import WorkflowError

    try:
        lines, base_dir, summary = wf.build(args)
    except WorkflowError as e:
        sys.exit(f"mmq: {e}")
    print(f"mmq {wf.name}: {summary}", file=sys.stderr)
    return lines, base_dir


async def _submit_workflow(
    wf: Workflow,
    args: argparse.Namespace,
    built: Built,
    settings: Settings,
    redis: Redis,
    storage: Storage,
    stop: asyncio.Event,
) -> str:
    from producer.options import LineError
    from producer.submit import Producer
    from producer.workflows.inputs import WorkflowError

    lines, base_dir = built
    producer = Producer(redis, storage, settings, allow_local_paths=True, base_dir=base_dir)
    metadata = {"workflow": wf.name, "source": Path(args.source).name, **wf.metadata(args)}
    try:
        batch = await producer.submit_batch(
            _until(stop, lines), metadata=metadata, **batch_options(args, producer)
        )
    except (LineError, WorkflowError) as e:  # a bad routing config or cache option; a CSV that went bad
        sys.exit(f"mmq: {e}")
    print(batch.id, flush=True)
    interrupted = " (interrupted: only these were submitted)" if stop.is_set() else ""
    print(
        f"mmq: batch {batch.id}: {batch.counts.total} jobs, {batch.invalid_lines} invalid{interrupted}",
        file=sys.stderr,
    )
    return batch.id


async def _check_resume(wf: Workflow, records: Records, batch_id: str) -> None:
    batch = await records.get_batch(batch_id)
    if batch is None:
        sys.exit(f"mmq: no batch {batch_id}")
    made_by = batch.metadata.get("workflow")
    if made_by and made_by != wf.name:
        sys.exit(f"mmq: batch {batch_id} was made by `mmq {made_by}`; re-attach with that command")


def _report(wf: Workflow, batch: BatchRecord, written: Written, out: Path) -> None:
    c = batch.counts
    print(
        f"mmq: batch {batch.id} {batch.status.value}: {c.succeeded} ok, {c.failed} failed, "
        f"{c.cancelled} cancelled, {c.cached} from cache",
        file=sys.stderr,
    )
    media = f" and {written.media} files" if written.media else ""
    print(f"mmq: {wf.out_name} in {out}/: {', '.join(p.name for p in written.files)}{media}", file=sys.stderr)
    if written.untimed:
        print(
            f"mmq: {written.untimed} transcripts had no timings, so no .srt/.vtt for them "
            "(submit with --format verbose_json)",
            file=sys.stderr,
        )


def _dry_run(wf: Workflow, args: argparse.Namespace) -> int:
    """The quote of what the workflow would submit (no Redis, nothing stored: producer/cli/quote.py)."""
    from producer.cli.quote import quote_lines
    from producer.workflows.inputs import WorkflowError

    if args.resume:
        sys.exit(f"mmq {wf.name}: --dry-run quotes an input; it does not take --resume")
    lines, base_dir = _build_workflow(wf, args)
    metadata = {"workflow": wf.name, "source": Path(args.source).name, **wf.metadata(args)}
    try:
        options = batch_options(args, None)
        return quote_lines(args, lines, base_dir=base_dir, metadata=metadata, options=options, dry_run=True)
    except WorkflowError as e:  # a CSV that went bad while it was read
        sys.exit(f"mmq: {e}")


def run_workflow(wf: Workflow, args: argparse.Namespace) -> int:
    from producer.cli.progress import watch

    if bool(args.resume) == bool(args.source):
        sys.exit(f"mmq {wf.name}: give an input or --resume BATCH_ID (one of them)")
    if getattr(args, "dry_run", False):
        return _dry_run(wf, args)
    state: dict[str, str] = {}
    built = None if args.resume else _build_workflow(wf, args)

    async def go(settings, redis, records, storage):
        with CtrlC() as ctrl_c:
            if args.resume:
                await _check_resume(wf, records, args.resume)
                state["batch"] = args.resume
            else:
                assert built is not None
                state["batch"] = await _submit_workflow(
                    wf, args, built, settings, redis, storage, ctrl_c.event
                )
                if not args.watch:
                    print(reattach_hints(wf, state["batch"], args.out), file=sys.stderr)
                    return 0
            batch = await watch(records, state["batch"], stop=ctrl_c.event)
        if ctrl_c.event.is_set():
            print("\nmmq: detached.", reattach_hints(wf, state["batch"], args.out), sep="\n", file=sys.stderr)
            return 130
        out = Path(args.out)
        written = await wf.write(args, records, storage, batch.id, out)
        _report(wf, batch, written, out)
        return 0

    try:
        return asyncio.run(with_records(go))
    except KeyboardInterrupt:  # no signal handler (Windows), or Ctrl-C while writing the outputs
        if "batch" in state:
            print(
                "\nmmq: interrupted.", reattach_hints(wf, state["batch"], args.out), sep="\n", file=sys.stderr
            )
            return 130
        raise
