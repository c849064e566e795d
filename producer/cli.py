"""The `mmq` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from worker.config import Settings, get_settings


def _need_redis(settings: Settings) -> str:
    if not settings.redis_url:
        sys.exit(
            "mmq: set MMQ_REDIS_URL (e.g. redis://127.0.0.1:6379/0), or use `mmq run FILE` for the "
            "embedded all-in-one mode"
        )
    return settings.redis_url


def cmd_run(args: argparse.Namespace) -> int:
    from producer.embedded import run_embedded
    from worker.simulator import SimulatorConfig

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

    settings = get_settings()
    _need_redis(settings)
    if not settings.tenant_keys():
        print(
            "mmq api: no API keys configured (MMQ_API_KEYS / MMQ_API_KEYS_FILE); every request will be "
            "refused. Create one with `mmq keys create --tenant NAME`.",
            file=sys.stderr,
        )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from worker.simulator import SimulatorConfig, serve

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
    from worker.connections import connect
    from worker.records import Records
    from worker.storage import open_storage

    settings = get_settings()
    redis = connect(_need_redis(settings))
    try:
        return await fn(
            settings, redis, Records(redis, settings.key_prefix), open_storage(settings.storage_url)
        )
    finally:
        await redis.aclose()


def cmd_submit(args: argparse.Namespace) -> int:
    from producer.jsonl import iter_jsonl
    from producer.progress import watch
    from producer.submit import LineError, Producer

    async def go(settings, redis, records, storage):
        path = Path(args.file)
        producer = Producer(redis, storage, settings, allow_local_paths=True, base_dir=path.parent)
        config = Path(args.config).read_text() if args.config else None
        media = {"max_side": args.max_side, "max_bytes": args.max_bytes}
        try:
            batch = await producer.submit_batch(
                iter_jsonl(path),
                tenant=args.tenant,
                metadata={"source": path.name},
                config=config,
                media={k: v for k, v in media.items() if v} or None,
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
    s.set_defaults(fn=cmd_submit)

    st = sub.add_parser("status", help="status of a batch or a job")
    st.add_argument("id")
    st.add_argument("--watch", action="store_true", help="show a progress bar until the batch ends")
    st.set_defaults(fn=cmd_status)

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


if __name__ == "__main__":
    sys.exit(main())
