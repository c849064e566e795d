"""The enqueued-token quota of the OpenAI-format batch APIs (OpenAI, Azure, Groq), simulated.

Why: OpenAI and Azure cap the input tokens enqueued in an organisation's unfinished batches per model. A
batch that would pass the cap is accepted by the create call and fails when its validation ends, with
`errors.data[0].code` = `token_limit_exceeded` ("Enqueued token limit reached for gpt-4o-mini in
organization org-…. Limit: 2,000,000 enqueued tokens. …": reference native_batch.md §1.7, §2). With the
knob `batch_queue_tokens` (MMQ_SIM_BATCH_QUEUE_TOKENS) set, the simulator does the same, per provider
surface and model (the simulator is one organisation, whatever the key), so a test can show that mmq's
batch tier never sends a batch past the quota (`batch_quota_refusals` in the stats stays empty) and
copes when it does.

How a line is counted, without decoding anything: text as the realtime chat handler counts prompt
tokens (3 for the reply, 3 per message, ~4 characters a token of each message's text), a typical 765 per
image part (85 at `detail: low`); an image generation line by its prompt, an embeddings line by its
input. A batch's tokens count until it is terminal (completed, failed, expired, cancelled: its time
alone decides, timeline.py); a refused batch counts nothing.
"""

from __future__ import annotations

import time

from mmq.simulator.batches.engine import BatchEngine
from mmq.simulator.batches.oai_input import error
from mmq.simulator.batches.timeline import TERMINAL, Line
from mmq.simulator.parsing import estimate_tokens

IMAGE_TOKENS, LOW_DETAIL_TOKENS = 765, 85
ORGANISATION = "org-mmq-simulator"


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(item) for item in value)
    return ""


def _message_tokens(message: object) -> int:
    if not isinstance(message, dict):
        return 0
    content = message.get("content")
    texts: list[str] = []
    images = 0
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") in ("text", "refusal") and isinstance(part.get(part["type"]), str):
                texts.append(part[part["type"]])
            elif part.get("type") == "image_url":
                spec = part.get("image_url")
                low = isinstance(spec, dict) and spec.get("detail") == "low"
                images += LOW_DETAIL_TOKENS if low else IMAGE_TOKENS
    return 3 + estimate_tokens(" ".join(texts)) + images


def line_tokens(body: dict[str, object]) -> int:
    """The input tokens one batch line enqueues."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return 3 + sum(_message_tokens(m) for m in messages)
    return estimate_tokens(_text(body.get("prompt")) or _text(body.get("input")))


def enqueued(engine: BatchEngine, provider: str, model: str | None, now: float) -> int:
    """The tokens of the provider's unfinished batches of `model`."""
    total = 0
    for batch in engine.batches.values():
        if batch.provider != provider or batch.info.get("model") != model:
            continue
        if (batch.terminal or batch.status(now)) in TERMINAL:
            continue
        tokens = batch.info.get("enqueued_tokens")
        total += tokens if isinstance(tokens, int) else 0
    return total


def over_quota(
    engine: BatchEngine, provider: str, model: str | None, lines: list[Line]
) -> tuple[int, dict[str, object] | None]:
    """(the batch's tokens, the validation error that fails it when they do not fit the quota, else None);
    a refusal is counted in the stats."""
    tokens = sum(line_tokens(line.body) for line in lines)
    limit = engine.config.batch_queue_tokens
    if limit is None or not lines:
        return tokens, None
    if enqueued(engine, provider, model, time.time()) + tokens <= limit:
        return tokens, None
    engine.stats.quota_refused(provider)
    message = (
        f"Enqueued token limit reached for {model} in organization {ORGANISATION}. Limit: {limit:,} "
        "enqueued tokens. Please try submitting an input file with fewer tokens, or wait for your "
        "in_progress batches to complete. (mmq simulator: batch_queue_tokens)"
    )
    return tokens, error("token_limit_exceeded", message)
