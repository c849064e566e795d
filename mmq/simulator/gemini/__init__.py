"""The simulator's Google dialect: Gemini generateContent (vision chat) and Imagen predict, on AI Studio
and Vertex AI paths.

Routes (built by `gemini_routes()`, each wrapped in guard.guarded like the OpenAI routes):
    POST /v1beta/models/{model}:generateContent | :predict                                   AI Studio
    POST /v1[beta1]/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent | :predict
                                                                                               Vertex AI

One module per capability: auth.py (where each surface reads the key), chat.py (generateContent),
media.py (its inline and file parts), images.py (Imagen predict), errors.py (Google's error shape, and
the guard's answers translated to it), wire.py (proto-JSON parsing and the block trigger both share).
"""

from __future__ import annotations

from starlette.routing import Route

from mmq.simulator.gemini.auth import studio_key
from mmq.simulator.gemini.chat import generate_content
from mmq.simulator.gemini.errors import GoogleError, _dialect
from mmq.simulator.gemini.images import predict
from mmq.simulator.gemini.media import image_tokens, sniff_mime
from mmq.simulator.gemini.wire import BLOCK_TRIGGER
from mmq.simulator.guard import Handler, bearer_key, guarded

__all__ = [
    "BLOCK_TRIGGER",
    "GoogleError",
    "gemini_routes",
    "generate_content",
    "image_tokens",
    "predict",
    "sniff_mime",
    "studio_key",
]

_ACTIONS: dict[str, Handler] = {"generateContent": generate_content, "predict": predict}
_VERTEX_MODELS = "/projects/{project}/locations/{location}/publishers/google/models/{model}"
# route prefix -> is it Vertex AI
_PREFIXES: dict[str, bool] = {
    "/v1beta/models/{model}": False,
    "/v1" + _VERTEX_MODELS: True,
    "/v1beta1" + _VERTEX_MODELS: True,
}


def gemini_routes() -> list[Route]:
    """The Google-dialect routes, guarded like the OpenAI ones (stats count each path template)."""
    return [
        Route(
            f"{prefix}:{action}",
            _dialect(
                guarded(handler, f"{prefix}:{action}", key=bearer_key if vertex else studio_key), vertex
            ),
            methods=["POST"],
        )
        for prefix, vertex in _PREFIXES.items()
        for action, handler in _ACTIONS.items()
    ]
