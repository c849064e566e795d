"""The simulator ASGI app: plain Starlette routes, each API route wrapped by the knob guard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmq.simulator.anthropic import anthropic_routes
from mmq.simulator.audio import speech, transcriptions, translations
from mmq.simulator.azure import azure_routes
from mmq.simulator.batches.engine import BatchEngine
from mmq.simulator.batches.routes import batch_routes
from mmq.simulator.bedrock import bedrock_routes
from mmq.simulator.chat import chat_completions
from mmq.simulator.deepgram import deepgram_routes
from mmq.simulator.elevenlabs import elevenlabs_routes
from mmq.simulator.errors import ApiError, json_response
from mmq.simulator.faults import faults_endpoint
from mmq.simulator.gcs import gcs_routes
from mmq.simulator.gemini import gemini_routes
from mmq.simulator.groq import groq_routes
from mmq.simulator.guard import SimulatorHeaders, guarded
from mmq.simulator.images import image_generations, sim_file
from mmq.simulator.knobs import SimulatorConfig
from mmq.simulator.stability import stability_routes
from mmq.simulator.state import SimState
from mmq.simulator.vertex_anthropic import vertex_anthropic_routes

_API = {
    "/chat/completions": chat_completions,
    "/images/generations": image_generations,
    "/audio/speech": speech,
    "/audio/transcriptions": transcriptions,
    "/audio/translations": translations,
}


async def health(request: Request) -> Response:
    return json_response({"ok": True, "simulator": True})


async def stats(request: Request) -> Response:
    await request.app.state.sim.batches.settle()  # batch lines due by now are run and billed first
    return json_response(request.app.state.stats.to_dict())


async def reset(request: Request) -> Response:
    request.app.state.sim.reset()
    return json_response({"ok": True, "simulator": True})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    # 404/405 in OpenAI's shape too, so clients parse every simulator error the same way
    assert isinstance(exc, HTTPException)
    message = (
        f"Invalid URL ({request.method} {request.url.path})" if exc.status_code == 404 else str(exc.detail)
    )
    return ApiError(exc.status_code, message, headers=exc.headers).response()


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    sim = SimState(config or SimulatorConfig())
    sim.batches = BatchEngine(sim.config, sim.stats)
    routes: list[Route] = []
    for path, handler in _API.items():
        endpoint = guarded(handler, "/v1" + path)
        routes.append(Route("/v1" + path, endpoint, methods=["POST"]))
        routes.append(Route(path, endpoint, methods=["POST"]))
    routes += gemini_routes()  # Google dialect: AI Studio and Vertex paths, each guarded
    routes += azure_routes()  # Azure OpenAI dialect: deployments and /openai/v1 paths, guarded
    routes += groq_routes()  # Groq dialect: /openai/v1 chat and Whisper audio, guarded
    routes += elevenlabs_routes()  # ElevenLabs text-to-speech dialect, guarded
    routes += deepgram_routes()  # Deepgram pre-recorded transcription dialect, guarded
    routes += bedrock_routes()  # AWS Bedrock dialect: Converse and InvokeModel, SigV4-checked, guarded
    routes += stability_routes()  # Stability AI dialect: v2beta multipart and v1 JSON, guarded
    routes += anthropic_routes()  # Anthropic Messages dialect: x-api-key auth, guarded
    routes += vertex_anthropic_routes()  # Claude on Vertex AI: rawPredict, bearer auth, guarded
    routes += batch_routes()  # native batch APIs (OpenAI/Azure/Groq, Anthropic, Gemini, Vertex), /sim/batches
    routes += gcs_routes()  # Cloud Storage JSON API (Vertex batch input and output), bearer auth, guarded
    routes += [
        Route("/health", health, methods=["GET"]),
        Route("/sim/stats", stats, methods=["GET"]),
        Route("/sim/reset", reset, methods=["POST"]),
        Route("/sim/faults", faults_endpoint, methods=["GET", "POST", "DELETE"]),
        Route("/sim/files/{name}", sim_file, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sim.aclose()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(SimulatorHeaders)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.sim = sim
    app.state.config = sim.config
    app.state.stats = sim.stats
    return app
