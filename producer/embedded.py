"""`mmq run`: producer, worker, API and the provider simulator in one process, on an in-memory Redis.

The same code paths as a deployment (arq worker, Records, Producer, FastAPI app) on embedded parts, so
a fresh machine can run a real batch with no services, no keys and no network.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from arq import worker as arq_worker
from rich.console import Console

from mmq.connections import embedded_redis
from mmq.records import Records
from mmq.settings import Settings
from mmq.simulator import SimulatorConfig
from mmq.simulator import create_app as create_simulator
from mmq.storage import open_storage
from producer.api import create_app as create_api
from producer.auth import hash_key, new_key
from producer.cli.progress import watch
from producer.export import export_batch
from producer.jsonl import iter_jsonl
from producer.serve import serve_config
from producer.submit import Producer
from worker.worker import build_worker

LOCAL_TENANT = "local"


async def _no_redis_info(*_: object) -> None:
    # fakeredis has no INFO command; arq only logs it at startup
    return None


def _bound_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


async def _serve(
    app: object, sock: socket.socket, settings: Settings | None = None
) -> tuple[uvicorn.Server, asyncio.Task]:
    """`settings`: serve with the API's connection limits (producer.serve); the simulator needs none."""
    options: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "on"}
    config = serve_config(app, settings, **options) if settings else uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # surfaces the startup error
        await asyncio.sleep(0.02)
    return server, task


@dataclass
class RunOutcome:
    batch_id: str
    output: Path
    files_dir: Path
    succeeded: int
    failed: int
    seconds: float


async def run_embedded(
    file: Path,
    *,
    data_dir: Path = Path("mmq-data"),
    api_port: int = 8000,
    serve: bool = False,
    sim_config: SimulatorConfig | None = None,
    out=sys.stderr,
) -> RunOutcome:
    started = time.monotonic()
    redis = embedded_redis()
    sim_sock = _bound_socket(0)
    sim_url = f"http://127.0.0.1:{sim_sock.getsockname()[1]}/v1"
    api_key = new_key()
    settings = Settings(
        redis_url=None,
        storage_url=f"file://{data_dir.resolve() / 'store'}",
        openai_base_url=sim_url,
        openai_api_key="simulator-local-key",  # the simulator accepts any key; no real key is needed
        api_keys={hash_key(api_key): LOCAL_TENANT},
        poll_delay_s=0.05,
    )
    storage = open_storage(settings.storage_url)
    records = Records(redis, settings.key_prefix)

    servers = [
        await _serve(create_simulator(sim_config or SimulatorConfig(latency_ms=50, jitter_ms=30)), sim_sock)
    ]
    api_url = None
    with contextlib.suppress(OSError):
        api = create_api(settings, redis=redis, storage=storage)
        servers.append(await _serve(api, _bound_socket(api_port), settings))
        api_url = f"http://127.0.0.1:{api_port}"

    arq_worker.log_redis_info = _no_redis_info  # type: ignore[assignment]
    worker = build_worker(settings, redis_pool=redis, handle_signals=False)
    worker_task = asyncio.create_task(worker.main())

    print(f"mmq embedded: simulator at {sim_url} (no real provider is called)", file=out)
    if api_url:
        print(f"mmq embedded: API at {api_url}  key for tenant '{LOCAL_TENANT}': {api_key}", file=out)
        print(f"mmq embedded: console at {api_url}/console/ (sign in with that key)", file=out)
    producer = Producer(redis, storage, settings, allow_local_paths=True, base_dir=file.parent)
    batch = await producer.submit_batch(iter_jsonl(file), tenant=LOCAL_TENANT, metadata={"source": file.name})
    print(f"mmq embedded: batch {batch.id} with {batch.counts.total} jobs", file=out)
    final = await watch(records, batch.id, interval_s=0.25, console=Console(file=out))

    results_dir = data_dir.resolve() / "results" / batch.id
    output = results_dir / "output.jsonl"
    files_dir = results_dir / "files"
    written = await export_batch(records, storage, batch.id, output, files_dir)
    print(f"mmq embedded: results in {output} and {written} files in {files_dir}", file=out)

    if serve and api_url:
        print(f"mmq embedded: serving the API at {api_url} until Ctrl-C", file=out)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    worker_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await worker_task
    for server, _ in servers:
        server.should_exit = True
    await asyncio.gather(*(task for _, task in servers), return_exceptions=True)
    await worker.close()
    return RunOutcome(
        batch.id, output, files_dir, final.counts.succeeded, final.counts.failed, time.monotonic() - started
    )
