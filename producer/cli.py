"""The `mmq` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmq.settings import Settings, get_settings

if TYPE_CHECKING:  # imported lazily at run time: `mmq --help` stays fast
    from redis.asyncio import Redis

    from mmq.contract import BatchRecord
    from mmq.records import Records
    from mmq.storage import Storage
    from producer.workflows import Written

Built = tuple[Iterator[Any], Path]  # a workflow's lines and the folder local paths are relative to


def _need_redis(settings: Settings) -> str:
    if not settings.redis_url:
        sys.exit(
            "mmq: set MMQ_REDIS_URL (e.g. redis://127.0.0.1:6379/0), or use `mmq run FILE` for the "
            "embedded all-in-one mode"
        )
    return settings.redis_url


def cmd_run(args: argparse.Namespace) -> int:
    from mmq.simulator import SimulatorConfig
    from producer.embedded import run_embedded

    outcome = asyncio.run(
        run_embedded(
            Path(args.file),
            data_dir=Path(args.data_dir),
            api_port=args.port,
            serve=args.serve,
            sim_config=SimulatorConfig(latency_ms=args.latency_ms, jitter_ms=args.latency_ms / 2),
        )
    )
    print(
        json.dumps(
            {
                "batch_id": outcome.batch_id,
                "succeeded": outcome.succeeded,
                "failed": outcome.failed,
                "output": str(outcome.output),
                "files": str(outcome.files_dir),
                "seconds": round(outcome.seconds, 2),
            }
        )
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.worker import build_worker

    settings = get_settings()
    _need_redis(settings)
    level = os.environ.get("MMQ_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_worker(settings, burst=args.burst).run()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from producer.api import create_app
    from producer.serve import serve_config

    settings = get_settings()
    _need_redis(settings)
    if not settings.tenant_keys():
        print(
            "mmq api: no API keys configured (MMQ_API_KEYS / MMQ_API_KEYS_FILE); every request will be "
            "refused. Create one with `mmq keys create --tenant NAME`.",
            file=sys.stderr,
        )
    config = serve_config(create_app(settings), settings, host=args.host, port=args.port, log_level="info")
    uvicorn.Server(config).run()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from mmq.simulator import SimulatorConfig, serve

    config = SimulatorConfig.from_env().model_copy(
        update={
            k: v
            for k, v in {
                "latency_ms": args.latency_ms,
                "jitter_ms": args.jitter_ms,
                "requests_per_window": args.rpw,
                "window_s": args.window_s,
                "error_rate": args.error_rate,
                "hang_rate": args.hang_rate,
                "seed": args.seed,
            }.items()
            if v is not None
        }
    )
    print(f"mmq simulator on http://{args.host}:{args.port}/v1 ({config.model_dump()})", file=sys.stderr)
    serve(config, host=args.host, port=args.port)
    return 0


async def _with_records(fn):
    from mmq.connections import connect
    from mmq.records import Records
    from mmq.storage import open_storage

    settings = get_settings()
    redis = connect(_need_redis(settings))
    try:
        return await fn(
            settings, redis, Records(redis, settings.key_prefix), open_storage(settings.storage_url)
        )
    finally:
        await redis.aclose()


def cache_option(args: argparse.Namespace) -> dict[str, Any] | bool | None:
    """The `cache=` for Producer.submit_batch from the --cache-* flags; None when no flag is given (the
    producer's default: exact-level cache)."""
    given = {
        "level": args.cache_level,
        "ttl_s": args.cache_ttl,
        "refresh": True if args.refresh_cache else None,
        "threshold": args.cache_threshold,
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    if args.no_cache:
        if chosen:
            sys.exit("mmq: --no-cache cannot be combined with --cache-level/--cache-ttl/--refresh-cache")
        return False
    return chosen or None


def _read_config(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as e:
        sys.exit(f"mmq: --config {path}: {e.strerror or e}")


def batch_options(args: argparse.Namespace, producer: Any) -> dict[str, Any]:
    """submit_batch keyword arguments shared by `submit` and the workflow commands."""
    media = {"max_side": getattr(args, "max_side", None), "max_bytes": getattr(args, "max_bytes", None)}
    options: dict[str, Any] = {
        "tenant": args.tenant,
        "config": _read_config(args.config),
        "media": {k: v for k, v in media.items() if v} or None,
    }
    cache = cache_option(args)
    if cache is not None:  # only when asked: the default stays the producer's own
        options["cache"] = cache
    return options | schedule_options(args)


def cmd_submit(args: argparse.Namespace) -> int:
    from producer.jsonl import iter_jsonl
    from producer.progress import watch
    from producer.submit import LineError, Producer

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

    return asyncio.run(_with_records(go))


def cmd_cancel(args: argparse.Namespace) -> int:
    from producer.submit import Producer

    async def go(settings, redis, records, storage):
        if await records.get_batch(args.id) is None:
            sys.exit(f"mmq: no batch {args.id}")
        status = await Producer(redis, storage, settings).cancel_batch(args.id)
        batch = await records.get_batch(args.id)
        print(f"mmq: batch {args.id} {status}; {batch.counts.cancelled} jobs cancelled", file=sys.stderr)
        return 0

    return asyncio.run(_with_records(go))


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

    return asyncio.run(_with_records(go))


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

    return asyncio.run(_with_records(go))


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

    return asyncio.run(_with_records(go))


def cmd_keys(args: argparse.Namespace) -> int:
    from producer.auth import hash_key, new_key

    key = new_key()
    print(f"API key for tenant {args.tenant!r} (shown once): {key}")
    print("Add to MMQ_API_KEYS (JSON) or the MMQ_API_KEYS_FILE object:")
    print(json.dumps({hash_key(key): args.tenant}))
    return 0


# ---------------------------------------------------------------------------------------------- workflows
# caption / transcribe / generate-images / speak: build lines from files, submit like `mmq submit`, watch,
# then write friendly outputs. `--resume BATCH_ID` re-attaches to a batch and writes them when it ends.


@dataclass
class Workflow:
    name: str  # the command, also stored in the batch metadata to check --resume
    out_name: str  # what the outputs are called in messages
    build: Callable[[argparse.Namespace], tuple[Iterator[Any], Path, str]]  # lines, base dir, summary
    write: Callable[[argparse.Namespace, Records, Storage, str, Path], Awaitable[Written]]
    metadata: Callable[[argparse.Namespace], dict[str, str]] = lambda args: {}


class CtrlC:
    """The first Ctrl-C stops feeding lines (the batch is sealed with what was sent) or stops watching.
    Either way the workers go on with the batch. Where signal handlers are unavailable, Ctrl-C raises
    KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> CtrlC:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.event.set)
            self._loop = loop
        except (NotImplementedError, RuntimeError):
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGINT)
            self._loop = None


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
        f"  mmq results {batch_id} -o results.jsonl --files files/   # raw output JSONL and files"
    )


def _build_workflow(wf: Workflow, args: argparse.Namespace) -> Built:
    """Scans the input (before Ctrl-C is taken over: interrupting a long scan just exits)."""
    from producer.workflows import WorkflowError

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
    from producer.submit import LineError, Producer
    from producer.workflows import WorkflowError

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


def run_workflow(wf: Workflow, args: argparse.Namespace) -> int:
    from producer.progress import watch

    if bool(args.resume) == bool(args.source):
        sys.exit(f"mmq {wf.name}: give an input or --resume BATCH_ID (one of them)")
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
        return asyncio.run(_with_records(go))
    except KeyboardInterrupt:  # no signal handler (Windows), or Ctrl-C while writing the outputs
        if "batch" in state:
            print(
                "\nmmq: interrupted.", reattach_hints(wf, state["batch"], args.out), sep="\n", file=sys.stderr
            )
            return 130
        raise


def _files_option(value: str | None) -> set[str]:
    return {f.strip().lower().lstrip(".") for f in (value or "").split(",") if f.strip()}


def _build_caption(args: argparse.Namespace) -> tuple[Iterator[Any], Path, str]:
    from producer.workflows import (
        DEFAULT_CAPTION_PROMPT,
        CaptionOptions,
        WorkflowError,
        caption_lines_from_csv,
        caption_lines_from_folder,
        scan_images,
    )

    src = Path(args.source)
    opts = CaptionOptions(args.model, args.prompt or DEFAULT_CAPTION_PROMPT, args.max_tokens, args.detail)
    if src.is_dir():
        scan = scan_images(src)
        skipped = f"; {scan.skipped} other files skipped" if scan.skipped else ""
        if not scan.files:
            raise WorkflowError(f"no images in {src}{skipped}")
        return caption_lines_from_folder(scan, opts), src, f"{len(scan.files)} images in {src}{skipped}"
    if src.is_file():
        return caption_lines_from_csv(src, opts), src.parent, f"rows of {src}"
    raise WorkflowError(f"{src}: no such folder or CSV file")


def _write_captions(
    args: argparse.Namespace, records: Records, storage: Storage, batch_id: str, out: Path
) -> Awaitable[Written]:
    from producer.workflows import write_captions

    return write_captions(records, storage, batch_id, out)


def _build_transcribe(args: argparse.Namespace) -> tuple[Iterator[Any], Path, str]:
    from producer.workflows import (
        TranscribeOptions,
        WorkflowError,
        scan_audio,
        transcript_format,
        transcription_lines,
    )

    src = Path(args.source)
    fmt = transcript_format(args.format, _files_option(args.files))
    scan = scan_audio(src)
    skipped = f"; {scan.skipped} other files skipped" if scan.skipped else ""
    if not scan.files:
        raise WorkflowError(f"no audio files in {src}{skipped}")
    opts = TranscribeOptions(args.model, args.translate, args.language, fmt)
    what = "translations" if args.translate else "transcriptions"
    return (
        transcription_lines(scan, opts),
        src,
        f"{len(scan.files)} audio files in {src}{skipped} ({what}, {fmt})",
    )


def _transcribe_metadata(args: argparse.Namespace) -> dict[str, str]:
    return {"files": ",".join(sorted(_files_option(args.files)))}


async def _write_transcripts(
    args: argparse.Namespace, records: Records, storage: Storage, batch_id: str, out: Path
) -> Written:
    from producer.workflows import write_transcripts

    wanted = _files_option(args.files)
    if args.resume and args.files is None:  # re-attaching: the files asked for at submit time
        batch = await records.get_batch(batch_id)
        wanted = _files_option(batch.metadata.get("files") if batch else None)
    return await write_transcripts(records, storage, batch_id, out, wanted)


def _build_images(args: argparse.Namespace) -> tuple[Iterator[Any], Path, str]:
    from producer.workflows import image_lines

    src = _lines_file(args.source)
    return (
        image_lines(src, model=args.model, size=args.size, n=args.n),
        src.parent,
        f"one image prompt per line of {src}",
    )


def _write_images(
    args: argparse.Namespace, records: Records, storage: Storage, batch_id: str, out: Path
) -> Awaitable[Written]:
    from producer.workflows import write_images

    return write_images(records, storage, batch_id, out)


def _build_speech(args: argparse.Namespace) -> tuple[Iterator[Any], Path, str]:
    from producer.workflows import speech_lines

    src = _lines_file(args.source)
    lines = speech_lines(src, model=args.model, voice=args.voice, response_format=args.format)
    return lines, src.parent, f"one text per line of {src}"


def _write_speech(
    args: argparse.Namespace, records: Records, storage: Storage, batch_id: str, out: Path
) -> Awaitable[Written]:
    from producer.workflows import write_speech

    return write_speech(records, storage, batch_id, out)


def _lines_file(source: str) -> Path:
    from producer.workflows import WorkflowError, check_text_file

    path = Path(source)
    if not path.is_file():
        raise WorkflowError(f"{path}: no such file")
    check_text_file(path)
    return path


WORKFLOWS = {
    "caption": Workflow("caption", "captions", _build_caption, _write_captions),
    "transcribe": Workflow(
        "transcribe", "transcripts", _build_transcribe, _write_transcripts, _transcribe_metadata
    ),
    "generate-images": Workflow("generate-images", "images", _build_images, _write_images),
    "speak": Workflow("speak", "audio files", _build_speech, _write_speech),
}


def cmd_workflow(args: argparse.Namespace) -> int:
    return run_workflow(WORKFLOWS[args.command], args)


def _workflow_parser(sub: Any, name: str, help: str, source: str, model: str | None, out: str):
    p = sub.add_parser(name, help=help)
    p.add_argument("source", nargs="?", metavar=source)
    p.add_argument("--model", default=model, help=f"default: {model or 'the provider default'}")
    p.add_argument("--out", default=out, help=f"folder for the results (default: {out})")
    p.add_argument("--tenant", default="default")
    p.add_argument("--config", help="routing config file (Portkey schema, JSON) for every job")
    p.add_argument(
        "--watch", action=argparse.BooleanOptionalAction, default=True, help="wait with a progress bar"
    )
    p.add_argument(
        "--resume", metavar="BATCH_ID", help="re-attach to a batch this command submitted; write its outputs"
    )
    add_cache_options(p)
    add_schedule_options(p)
    p.set_defaults(fn=cmd_workflow)
    return p


def add_workflow_parsers(sub: Any) -> None:
    c = _workflow_parser(
        sub,
        "caption",
        "caption every image of a folder (recursively) or of an id,url[,prompt] CSV",
        "DIR|CSV",
        "gpt-4o-mini",
        "mmq-captions",
    )
    c.add_argument("--prompt", help="the instruction sent with every image (a CSV prompt column overrides)")
    c.add_argument("--max-tokens", type=int)
    c.add_argument("--detail", choices=["auto", "low", "high"], default="auto")
    c.add_argument("--max-side", type=int, help="downscale images to this longest side (px) before sending")

    t = _workflow_parser(
        sub,
        "transcribe",
        "transcribe (or translate) every audio file of a folder, recursively",
        "DIR",
        "whisper-1",
        "mmq-transcripts",
    )
    t.add_argument("--translate", action="store_true", help="translate into English instead")
    t.add_argument("--language", help="the spoken language (ISO-639-1, e.g. de); transcription only")
    t.add_argument(
        "--format",
        choices=["json", "text", "srt", "vtt", "verbose_json"],
        help="response_format (default: json, or verbose_json when --files has srt/vtt)",
    )
    t.add_argument("--files", help="also write one file per recording: any of txt,srt,vtt")

    g = _workflow_parser(
        sub, "generate-images", "one image job per non-empty line of a text file", "FILE", None, "mmq-images"
    )
    g.add_argument("--size", help="e.g. 1024x1024")
    g.add_argument("--n", type=int, help="images per prompt")

    s = _workflow_parser(
        sub, "speak", "one speech job per non-empty line of a text file", "FILE", "tts-1", "mmq-speech"
    )
    s.add_argument("--voice", default="alloy")
    s.add_argument("--format", choices=["mp3", "opus", "aac", "flac", "wav", "pcm"], default="mp3")


def parse_when(text: str, after: float | None = None) -> float:
    """`01:00` (the next such local time after `after`, default now), an ISO date-time, or epoch seconds."""
    import datetime as dt

    try:
        return float(text)
    except ValueError:
        pass
    base = dt.datetime.fromtimestamp(after or time.time()).astimezone()
    try:
        clock = dt.time.fromisoformat(text)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            sys.exit(f"mmq: {text!r} is not a time (HH:MM), an ISO date-time or epoch seconds")
        return (moment if moment.tzinfo else moment.astimezone()).timestamp()
    moment = base.replace(hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0)
    if moment.timestamp() <= base.timestamp():
        moment += dt.timedelta(days=1)
    return moment.timestamp()


def schedule_options(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"priority": getattr(args, "priority", "normal")}
    if getattr(args, "not_before", None):
        out["not_before"] = parse_when(args.not_before)
    if getattr(args, "deadline", None):
        out["deadline"] = parse_when(args.deadline, after=out.get("not_before"))
    if getattr(args, "webhook", None):
        out["webhook_url"] = args.webhook
    return out


def add_schedule_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scheduling")
    g.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    g.add_argument("--not-before", metavar="WHEN", help="no job starts before (01:00, ISO time, epoch s)")
    g.add_argument("--deadline", metavar="WHEN", help="what has not run by then expires (batch_expired)")
    g.add_argument(
        "--webhook", metavar="URL", help="POST the batch here when it ends (MMQ_WEBHOOK_SECRET signs)"
    )


def add_cache_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cache (default: the exact-bytes cache)")
    g.add_argument(
        "--cache-level", choices=["exact", "pixels", "perceptual"], help="how alike inputs must be"
    )
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    g.add_argument(
        "--refresh-cache", action="store_true", help="call the provider and overwrite cached results"
    )
    g.add_argument("--cache-ttl", type=int, metavar="SECONDS", help="how long new cache entries live")
    g.add_argument("--cache-threshold", type=int, metavar="BITS", help="perceptual level: max hash distance")


# ---------------------------------------------------------------------------------------------- templates
# mmq template save|list|show|run: prompt templates (producer/templates.py), per tenant, in Redis.


def _template_store(settings: Settings, redis: Redis, storage: Storage) -> Any:
    from producer.submit import allowed_hosts
    from producer.templates import TemplateStore

    return TemplateStore(redis, storage, settings.key_prefix, allowed_hosts(settings))


def cmd_template_save(args: argparse.Namespace) -> int:
    from producer.templates import TemplateError

    path = Path(args.file)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        sys.exit(f"mmq: {path}: {e.strerror or e}")
    except ValueError as e:
        sys.exit(f"mmq: {path}: not valid JSON ({e})")
    if not isinstance(spec, dict):
        sys.exit(f"mmq: {path}: a template is a JSON object")
    if args.name:
        spec["name"] = args.name
    spec.setdefault("name", path.stem)

    async def go(settings, redis, records, storage):
        try:
            template, created = await _template_store(settings, redis, storage).save(args.tenant, spec)
        except TemplateError as e:
            sys.exit(f"mmq: {path}: {e}")
        print(template.ref)
        what = "new version" if created else "unchanged (same content as this version)"
        variables = ", ".join(template.variables) or "none"
        print(f"mmq: template {template.ref}: {what}; variables: {variables}", file=sys.stderr)
        return 0

    return asyncio.run(_with_records(go))


def cmd_template_list(args: argparse.Namespace) -> int:
    async def go(settings, redis, records, storage):
        found = await _template_store(settings, redis, storage).list(args.tenant)
        for template, count in found:
            variables = ",".join(template.variables) or "-"
            print(f"{template.ref}\t{template.url}\t{template.model or '-'}\t{variables}\t{count} version(s)")
        if not found:
            print(f"mmq: no templates for tenant {args.tenant!r}", file=sys.stderr)
        return 0

    return asyncio.run(_with_records(go))


def cmd_template_show(args: argparse.Namespace) -> int:
    from producer.templates import TemplateNotFound

    async def go(settings, redis, records, storage):
        store = _template_store(settings, redis, storage)
        try:
            if args.versions:
                shown: Any = [v.model_dump() for v in await store.versions(args.tenant, args.template)]
            else:
                template = await store.get(args.tenant, args.template)
                shown = template.view(latest=await store.latest(args.tenant, template.name))
        except TemplateNotFound as e:
            sys.exit(f"mmq: {e}")
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0

    return asyncio.run(_with_records(go))


def cmd_template_run(args: argparse.Namespace) -> int:
    from producer.progress import watch
    from producer.submit import LineError
    from producer.templates import (
        TemplateError,
        TemplateNotFound,
        aiter_file_lines,
        read_rows,
        row_format,
        run_template,
        write_results,
    )

    path = Path(args.rows)
    if not path.is_file():
        sys.exit(f"mmq: {path}: no such file")

    async def go(settings, redis, records, storage):
        try:
            template = await _template_store(settings, redis, storage).get(args.tenant, args.template)
            rows = await read_rows(aiter_file_lines(path), args.format or row_format(path.name))
            batch = await run_template(
                redis,
                storage,
                settings,
                template,
                rows,
                metadata={"source": path.name},
                allow_local_paths=True,  # a transcription template's {{file}} may name a local file
                base_dir=path.parent,
                **batch_options(args, None),
            )
        except (TemplateNotFound, TemplateError, LineError) as e:
            sys.exit(f"mmq: {e}")
        print(batch.id, flush=True)
        print(
            f"mmq: batch {batch.id} from {template.ref}: {batch.counts.total} jobs, "
            f"{batch.invalid_lines} invalid; follow with `mmq status {batch.id} --watch`",
            file=sys.stderr,
        )
        if not (args.watch or args.out):
            return 0
        with CtrlC() as ctrl_c:
            batch = await watch(records, batch.id, stop=ctrl_c.event)
        if ctrl_c.event.is_set():
            print(f"\nmmq: detached; batch {batch.id} keeps running in the workers", file=sys.stderr)
            return 130
        if args.out:
            ok, failed, files = await write_results(records, storage, batch.id, Path(args.out))
            print(
                f"mmq: {ok} ok, {failed} failed; in {args.out}/: results.csv, output.jsonl, {files} files",
                file=sys.stderr,
            )
        return 0

    return asyncio.run(_with_records(go))


def add_template_parsers(sub: Any) -> None:
    t = sub.add_parser("template", help="prompt templates: save, list, show, run over CSV/JSONL rows")
    tsub = t.add_subparsers(dest="template_command", required=True)

    save = tsub.add_parser("save", help="save a template (JSON file); prints name@version")
    save.add_argument("file", metavar="FILE.json")
    save.add_argument("--name", help="the template's name (default: its `name`, else the file name)")
    save.set_defaults(fn=cmd_template_save)

    ls = tsub.add_parser("list", help="the latest version of each template")
    ls.set_defaults(fn=cmd_template_list)

    show = tsub.add_parser("show", help="one template as JSON (default: the latest version)")
    show.add_argument("template", metavar="NAME[@VERSION]")
    show.add_argument("--versions", action="store_true", help="list its versions instead")
    show.set_defaults(fn=cmd_template_show)

    run = tsub.add_parser("run", help="one job per row of a CSV (with a header) or JSONL file")
    run.add_argument("template", metavar="NAME[@VERSION]")
    run.add_argument("rows", metavar="ROWS.csv|ROWS.jsonl")
    run.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file's extension")
    run.add_argument("--watch", action="store_true", help="show a progress bar until the batch ends")
    run.add_argument("--out", help="wait, then write results.csv, output.jsonl and files/ to this folder")
    run.add_argument("--config", help="routing config file (Portkey schema, JSON): replaces the template's")
    run.add_argument("--max-side", type=int, help="downscale images to this longest side (px) before sending")
    run.add_argument("--max-bytes", type=int, help="re-encode images above this size before sending")
    add_cache_options(run)
    add_schedule_options(run)
    run.set_defaults(fn=cmd_template_run)
    for p in (save, ls, show, run):
        p.add_argument("--tenant", default="default")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmq", description="Batch multimodal AI jobs on Redis + arq workers")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a JSONL batch all-in-one (in-memory Redis, local store, simulator)")
    run.add_argument("file")
    run.add_argument("--data-dir", default="mmq-data")
    run.add_argument("--port", type=int, default=8000, help="API port while running")
    run.add_argument("--serve", action="store_true", help="keep the API up after the batch ends")
    run.add_argument("--latency-ms", type=float, default=50.0, help="simulated provider latency")
    run.set_defaults(fn=cmd_run)

    w = sub.add_parser("worker", help="run an arq worker (MMQ_REDIS_URL)")
    w.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    w.set_defaults(fn=cmd_worker)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(fn=cmd_api)

    sim = sub.add_parser("simulate", help="serve the provider simulator (OpenAI dialect)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument("--latency-ms", type=float)
    sim.add_argument("--jitter-ms", type=float)
    sim.add_argument("--rpw", type=int, help="requests per window per API key")
    sim.add_argument("--window-s", type=float)
    sim.add_argument("--error-rate", type=float)
    sim.add_argument("--hang-rate", type=float)
    sim.add_argument("--seed", type=int)
    sim.set_defaults(fn=cmd_simulate)

    s = sub.add_parser("submit", help="submit a JSONL file (OpenAI Batch input format)")
    s.add_argument("file")
    s.add_argument("--tenant", default="default")
    s.add_argument("--watch", action="store_true")
    s.add_argument("--config", help="routing config file (Portkey schema, JSON) for every job")
    s.add_argument("--max-side", type=int, help="downscale images to this longest side (px) before sending")
    s.add_argument("--max-bytes", type=int, help="re-encode images above this size before sending")
    add_cache_options(s)
    add_schedule_options(s)
    s.set_defaults(fn=cmd_submit)

    add_workflow_parsers(sub)
    add_template_parsers(sub)

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

    k = sub.add_parser("keys", help="create an API key for a tenant")
    k.add_argument("action", choices=["create"])
    k.add_argument("--tenant", required=True)
    k.set_defaults(fn=cmd_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("\nmmq: interrupted; submitted jobs keep running in the workers", file=sys.stderr)
        return 130


def exit_now(code: int) -> None:
    """Leave without interpreter finalization when the S3 client is loaded: obstore's Tokio threads
    are never shut down and can abort the process (SIGABRT) while Python tears itself down, after all
    work is done. Everything is flushed first; nothing of ours runs at exit."""
    if "obstore" in sys.modules:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run() -> None:
    """The `mmq` console script."""
    try:
        code = main()
    except SystemExit as e:  # sys.exit("mmq: …") from a command: print it as Python would
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = 1 if isinstance(e.code, str) else (e.code or 0)
    exit_now(code)


if __name__ == "__main__":
    run()
