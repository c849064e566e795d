"""`POST /v1/batches` with `dry_run: true` (mmq; the SDK's `extra_body`): the input file's quote, with
nothing created, written, queued or sent to a provider.

Why apart from batches.py: a create answers at once and submits in the background; a dry run reads the
whole file in the request (it writes nothing, so there is no batch to poll) and answers the quote. The
file is read as a real create reads it: lines OpenAI refuses (another endpoint, a missing or repeated
custom_id, bad JSON) and lines mmq's producer refuses are counted in `invalid_lines` and not priced.

The answer (200):

    {"object": "batch.quote", "dry_run": true, "endpoint": "/v1/chat/completions",
     "input_file_id": "file-…", "completion_window": "24h",
     "quote": {...}}

`quote` is what `POST /api/batches?dry_run=true` answers (producer.quote_sums.BatchQuote.to_dict()):
`price_book_version`, `currency` ("USD"), `jobs` and `priced_jobs`; `low_usd` / `high_usd` (realtime)
and `batch_low_usd` / `batch_high_usd` (on the providers' batch tiers; realtime where a model has none),
as decimal strings; `high_is_bound` (false when a chat job has no max_tokens and no known limit);
`missing` ({"no price for groq/x": jobs}); `groups` (per kind, provider and model: jobs, tokens,
characters, seconds of audio, images, the same amounts, `batch_tier`, `missing`, `notes`);
`invalid_lines` and the first `invalid` ({line, custom_id, error}).

With the SDK, `client.batches.create(..., extra_body={"dry_run": True})` returns a Batch object built
without validation: read `.quote` (a dict), or use `client.batches.with_raw_response.create(...)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from mmq.batch_options import BatchOptions
from mmq.request_models import KIND_BY_URL
from producer.jsonl import aiter_jsonl_chunks
from producer.openai_api.batches import MAX_LINES, _check_line, _Lines
from producer.openai_api.context import Ctx
from producer.openai_api.errors import OpenAIError
from producer.openai_api.file_store import FileMeta
from producer.options import LineError
from producer.quoting import QuoteUnavailable, quote_request
from producer.submit import BatchLine


async def quote_file(
    ctx: Ctx, meta: FileMeta, endpoint: str, completion_window: str, options: BatchOptions
) -> dict[str, Any]:
    """The quote of an uploaded batch input file, its lines checked as create checks them."""
    st = _Lines(kind=KIND_BY_URL[endpoint], endpoint=endpoint)

    async def lines() -> AsyncIterator[BatchLine]:
        seen = 0
        async for line in aiter_jsonl_chunks(ctx.files.stream(meta), ctx.producer.settings.max_line_bytes):
            if seen >= MAX_LINES:
                break
            seen += 1
            _check_line(line, st)  # sets `error` on a line OpenAI refuses: the quote leaves it out
            yield line

    try:
        quote = await quote_request(lines(), options, ctx.producer.settings)
    except LineError as e:  # checked by create already; a clock-bound option may have moved since
        raise OpenAIError(400, str(e)) from None
    except QuoteUnavailable as e:
        raise OpenAIError(500, str(e), type="server_error", code="price_book_unavailable") from None
    return {
        "object": "batch.quote",
        "dry_run": True,
        "endpoint": endpoint,
        "input_file_id": meta.id,
        "completion_window": completion_window,
        "quote": quote,
    }
