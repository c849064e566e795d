"""The long-running commands: `mmq run` (all-in-one), `mmq worker`, `mmq api` and `mmq simulate`.

Each checks what would otherwise fail later, or quietly, before it starts (preflight.py): its port,
its input file, and for a worker the key of its default target.

`mmq worker` is one of the two places the front may start a worker (the import contract in pyproject
allows this module and producer.embedded, which `mmq run` uses, to import worker.worker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from mmq import logs
from mmq.keys import Keys
from mmq.settings import get_settings
from producer.cli.common import need_redis, with_records
from producer.cli.errors import UserError
from producer.cli.inputs import input_file, opened_jsonl
from producer.cli.preflight import bound_socket, check_port_free, provider_key_problem


def cmd_run(args: argparse.Namespace) -> int:
    from mmq.simulator import SimulatorConfig
    from producer.embedded import run_embedded
    from producer.jsonl import DEFAULT_MAX_LINE_BYTES

    # the file and the port are checked before anything starts: the embedded run would otherwise fail
    # half-way (the file), or run on without its API (the port)
    opened_jsonl(input_file(args.file, kind="a JSONL file"), DEFAULT_MAX_LINE_BYTES)
    check_port_free("127.0.0.1", args.port, "run")
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
    need_redis(settings)
    problem, fatal = provider_key_problem(settings)
    if fatal:
        raise UserError(problem.removeprefix("mmq worker: "))
    if problem:
        print(problem, file=sys.stderr)
    logs.configure()  # MMQ_LOG_LEVEL, MMQ_LOG_FORMAT (JSON lines when stderr is not a terminal)
    build_worker(settings, burst=args.burst).run()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from producer.api import create_app
    from producer.serve import serve_config

    settings = get_settings()
    need_redis(settings)
    # Redis answers, the store is the shared one; and how many keys `mmq keys create` made
    made = asyncio.run(with_records(lambda s, redis, *_: redis.zcard(Keys(s.key_prefix).api_keys())))
    sock = bound_socket(args.host, args.port, "api")
    if not settings.tenant_keys() and not made:
        print(
            "mmq api: no API keys yet; every request is refused until one exists. Create one with "
            "`mmq keys create --tenant NAME` (it works at once, no restart).",
            file=sys.stderr,
        )
    config = serve_config(create_app(settings), settings, host=args.host, port=args.port, log_level="info")
    uvicorn.Server(config).run(sockets=[sock])
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
    check_port_free(args.host, args.port, "simulate")
    print(f"mmq simulator on http://{args.host}:{args.port}/v1 ({config.model_dump()})", file=sys.stderr)
    serve(config, host=args.host, port=args.port)
    return 0


def add_parsers(sub: Any) -> None:
    run = sub.add_parser("run", help="run a JSONL batch all-in-one (in-memory Redis, local store, simulator)")
    run.add_argument("file", metavar="FILE.jsonl", help="one request per line (OpenAI Batch input format)")
    run.add_argument(
        "--data-dir", default="mmq-data", metavar="DIR", help="store and results go here (default: mmq-data)"
    )
    run.add_argument("--port", type=int, default=8000, help="API port while running (default: 8000)")
    run.add_argument("--serve", action="store_true", help="keep the API up after the batch ends")
    run.add_argument(
        "--latency-ms", type=float, default=50.0, help="simulated provider latency (default: 50)"
    )
    run.set_defaults(fn=cmd_run)

    w = sub.add_parser("worker", help="run an arq worker (MMQ_REDIS_URL)")
    w.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    w.set_defaults(fn=cmd_worker)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    api.set_defaults(fn=cmd_api)

    sim = sub.add_parser("simulate", help="serve the provider simulator (OpenAI dialect)")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8090, help="port to listen on (default: 8090)")
    sim.add_argument("--latency-ms", type=float, help="mean answer latency")
    sim.add_argument("--jitter-ms", type=float, help="random spread around the latency")
    sim.add_argument("--rpw", type=int, help="requests per window per API key (429 beyond)")
    sim.add_argument("--window-s", type=float, help="the rate window's length")
    sim.add_argument("--error-rate", type=float, help="share of requests answered 500 (0-1)")
    sim.add_argument("--hang-rate", type=float, help="share of requests never answered (0-1)")
    sim.add_argument("--seed", type=int, help="random seed, for repeatable runs")
    sim.set_defaults(fn=cmd_simulate)
