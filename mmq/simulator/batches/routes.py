"""Every native batch route, and /sim/batches: the batch knobs and batches, read and changed at run time.

Why a run-time door: a simulator process started by a test or a benchmark (`mmq simulate`) takes its
knobs from MMQ_SIM_* variables at start; GET /sim/batches shows the batch knobs and every batch's
status and counts, POST /sim/batches {"batch_stall": true, …} changes batch knobs for the batches
created after it (each batch keeps the knobs it was created under).
"""

from __future__ import annotations

import json
import time

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.batches.anthropic import anthropic_batch_routes
from mmq.simulator.batches.bedrock import bedrock_batch_routes
from mmq.simulator.batches.engine import BatchEngine
from mmq.simulator.batches.gemini import gemini_batch_routes
from mmq.simulator.batches.gemini_files import gemini_file_routes
from mmq.simulator.batches.oai_routes import openai_family_routes
from mmq.simulator.batches.vertex import vertex_batch_routes
from mmq.simulator.errors import bad_request, json_response
from mmq.simulator.knobs import BATCH_KNOBS, SimulatorConfig


async def _change(request: Request, config: SimulatorConfig) -> None:
    try:
        changes = json.loads(await request.body())
    except ValueError:
        raise bad_request("POST /sim/batches takes a JSON object of batch_* knobs.") from None
    if not isinstance(changes, dict):
        raise bad_request("POST /sim/batches takes a JSON object of batch_* knobs.")
    unknown = sorted(set(changes) - BATCH_KNOBS)
    if unknown:
        raise bad_request(f"Unknown batch knobs {unknown}; known: {sorted(BATCH_KNOBS)}.")
    try:
        checked = SimulatorConfig.model_validate({**config.model_dump(), **changes})
    except ValidationError as exc:
        raise bad_request(f"Invalid batch knobs: {exc.errors(include_url=False)}") from None
    for name in changes:
        setattr(config, name, getattr(checked, name))


async def sim_batches(request: Request) -> Response:
    sim = request.app.state.sim
    if request.method == "POST":
        await _change(request, sim.config)
    engine: BatchEngine = sim.batches
    await engine.settle()
    now = time.time()
    return json_response(
        {
            "knobs": {name: getattr(sim.config, name) for name in sorted(BATCH_KNOBS)},
            "batches": [
                {
                    "id": b.id,
                    "provider": b.provider,
                    "status": b.terminal or b.status(now),
                    "lines": len(b.lines),
                    "counts": b.counts(),
                }
                for b in engine.batches.values()
            ],
        }
    )


def batch_routes() -> list[Route]:
    return [
        *openai_family_routes(),
        *anthropic_batch_routes(),
        *gemini_batch_routes(),
        *gemini_file_routes(),
        *bedrock_batch_routes(),
        *vertex_batch_routes(),
        Route("/sim/batches", sim_batches, methods=["GET", "POST"]),
    ]
