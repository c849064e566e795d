"""The simulator's AWS Bedrock dialect: Converse (vision chat with documents) and InvokeModel (images).

Routes (built by `bedrock_routes()`, each wrapped in guard.guarded like the OpenAI routes):
    POST /model/{modelId}/converse
    POST /model/{modelId}/invoke      Titan / Nova Canvas, Stability SD3 / Stable Image, Stability SDXL
The model id may arrive percent-encoded (`%3A`, `%2F` for ARNs) or not: both are read.

One module per capability: auth.py (SigV4 / bearer, the guard's key reader), chat.py (Converse),
images.py (InvokeModel image families), errors.py (Bedrock's error shape, and the guard's answers
re-rendered in it), wire.py (JSON bodies and the block trigger both share).
"""

from __future__ import annotations

from starlette.routing import Route

from mmq.simulator.bedrock.auth import SIM_CREDENTIALS, authenticate, canonical_path, verify_sigv4
from mmq.simulator.bedrock.chat import converse
from mmq.simulator.bedrock.errors import BedrockError, _dialect
from mmq.simulator.bedrock.images import invoke
from mmq.simulator.bedrock.wire import BLOCK_TRIGGER
from mmq.simulator.guard import Handler, guarded

__all__ = [
    "BLOCK_TRIGGER",
    "SIM_CREDENTIALS",
    "BedrockError",
    "authenticate",
    "bedrock_routes",
    "canonical_path",
    "converse",
    "invoke",
    "verify_sigv4",
]

_ACTIONS: dict[str, Handler] = {"converse": converse, "invoke": invoke}


def bedrock_routes() -> list[Route]:
    """The Bedrock-dialect routes, guarded like the OpenAI ones (stats count each path template)."""
    return [
        Route(
            f"/model/{{model_id:path}}/{action}",
            _dialect(guarded(handler, f"/model/{{modelId}}/{action}", key=authenticate)),
            methods=["POST"],
        )
        for action, handler in _ACTIONS.items()
    ]
