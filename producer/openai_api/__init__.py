"""The OpenAI Files + Batches API on mmq, so the stock `openai` SDK works with `base_url=<mmq>/v1`.

    client = OpenAI(base_url="http://mmq:8000/v1", api_key="<mmq API key>")
    f = client.files.create(file=open("in.jsonl", "rb"), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")

A batch is an mmq batch (mmq/records.py) plus the OpenAI-only fields in `{p}:oai:batch:{id}`; the
batch ids are the same. Beyond OpenAI, `endpoint` may be any mmq kind (images, speech, transcription,
translation; audio goes in a line's body as a data: URL in `file`), and `config` / `media` (mmq
extensions, via the SDK's `extra_body`) set a routing config and image downscaling for every line.

The modules:
    errors.py        OpenAIError and the /v1 error shapes (other paths keep FastAPI's own)
    context.py       what every /v1 route gets: the tenant, Redis, records, storage, the file store
    file_store.py    uploaded files: metadata in Redis, bytes in the mmq Storage, part by part
    files.py         the /v1/files routes
    batches.py       the /v1/batches routes and the submission task that reads the input file
    batch_object.py  the Batch object: OpenAI's statuses, output/error file ids, usage
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from producer.openai_api import batches, files
from producer.openai_api.context import lifespan
from producer.openai_api.errors import (
    OpenAIError,
    on_crash,
    on_http_error,
    on_openai_error,
    on_validation_error,
)

router = APIRouter(prefix="/v1", lifespan=lifespan)
router.include_router(files.router)
router.include_router(batches.router)


def mount(app: FastAPI) -> None:
    """Adds /v1/files and /v1/batches, and OpenAI-shaped errors on /v1 paths (other paths unchanged)."""
    app.include_router(router)
    app.add_exception_handler(OpenAIError, on_openai_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_crash)
