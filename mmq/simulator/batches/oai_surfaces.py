"""The three providers that speak the OpenAI Files + Batches dialect, and what sets each apart.

Why one description per provider: OpenAI, Azure OpenAI and Groq share the wire shapes (reference
../shared/reference/native_batch.md §1, §2, §7) and differ in a handful of rules, which live here as
data so the handlers (oai_files.py, oai_batches.py) are written once:
- OpenAI: chat completions and image generations; one model per file; 50,000 requests / 200 MB;
  completion_window "24h" only.
- Azure: chat completions; body.model (the deployment) identical on every line (model_mismatch); a
  completion_window other than "24h" fails the batch rather than the call; 100,000 requests / 200 MB;
  batches never expire (they run until cancelled); output and error files exist even when empty; a
  file starting with a UTF-8 BOM fails with Azure's misleading deployment-name error.
- Groq: chat completions and Whisper transcriptions/translations (each audio line passes `url`);
  completion_window 24h to 7d; 50,000 requests / 100 MB; models may differ per line.
Each line is answered by the provider's realtime handler: Azure's content filter, Groq's image limits
and Whisper model rules apply inside batches as they do outside.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.responses import Response

from mmq.simulator.azure import _operation as azure_operation
from mmq.simulator.batches.groq_audio import audio_line
from mmq.simulator.chat import chat_completions
from mmq.simulator.errors import ApiError
from mmq.simulator.groq import _to_groq
from mmq.simulator.groq import chat as groq_chat
from mmq.simulator.guard import Handler
from mmq.simulator.images import image_generations

DAY_S = 86_400.0
# every `endpoint` the OpenAI SDK's BatchCreateParams accepts; the simulator runs the ones a surface maps
OPENAI_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
GROQ_WINDOW = re.compile(r"^(\d+)([hd])$")
AZURE_BOM_ERROR = (
    "The provided model deployment name does not exist or is not a Global-Batch deployment. "
    "(mmq simulator: as Azure does, this is the error for an input file that starts with a UTF-8 BOM)"
)


def _only_24h(window: object) -> float | None:
    return DAY_S if window == "24h" else None


def _groq_window(window: object) -> float | None:
    match = GROQ_WINDOW.match(window) if isinstance(window, str) else None
    if match is None:
        return None
    hours = int(match[1]) * (24 if match[2] == "d" else 1)
    return hours * 3600.0 if 24 <= hours <= 168 else None


@dataclass(frozen=True)
class Surface:
    provider: str  # stats name; batches and files are the provider's own
    handlers: Mapping[str, Handler]  # batch endpoint -> the realtime handler that answers a line
    max_requests: int
    max_bytes: int
    one_model: bool
    window: Callable[[object], float | None]  # completion_window -> seconds, None = not accepted
    windows_text: str  # what the error for a refused window says is accepted
    window_fails_batch: bool = False  # Azure: the batch fails instead of the create call
    expires: bool = True
    always_files: bool = False  # Azure: output and error files even when empty
    bom_error: str | None = None
    render: Callable[[ApiError], Response] | None = None  # a line's realtime error, as the dialect says it
    file_expiry_s: tuple[int, int] = (3600, 2_592_000)  # expires_after[seconds] range on upload


OPENAI = Surface(
    provider="openai",
    handlers={"/v1/chat/completions": chat_completions, "/v1/images/generations": image_generations},
    max_requests=50_000,
    max_bytes=200 * 1024 * 1024,
    one_model=True,
    window=_only_24h,
    windows_text="'24h'",
)
AZURE = Surface(
    provider="azure",
    handlers={"/v1/chat/completions": azure_operation("chat/completions", False)},
    max_requests=100_000,
    max_bytes=200 * 1024 * 1024,
    one_model=True,
    window=_only_24h,
    windows_text="'24h'",
    window_fails_batch=True,
    expires=False,
    always_files=True,
    bom_error=AZURE_BOM_ERROR,
    file_expiry_s=(1_209_600, 2_592_000),
)
GROQ = Surface(
    provider="groq",
    handlers={
        "/v1/chat/completions": groq_chat,
        "/v1/audio/transcriptions": audio_line(translate=False),
        "/v1/audio/translations": audio_line(translate=True),
    },
    max_requests=50_000,
    max_bytes=100 * 1024 * 1024,
    one_model=False,
    window=_groq_window,
    windows_text="a duration from '24h' to '7d'",
    render=lambda exc: _to_groq(exc.response()),
)
