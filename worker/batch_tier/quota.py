"""The enqueued-token quota on the worker's side: what a job counts in its ledger, what a provider's
refusal for the quota looks like, the limit a refusal teaches, and which jobs waiting for room must leave
for a realtime call to meet their deadline.

Why: OpenAI, Azure and Gemini cap the input tokens enqueued in one key's running batches per model
(../shared/reference/native_batch.md §0.1.6, §1.7, §2, §4). A batch past the cap fails (OpenAI, Azure:
`failed`, `token_limit_exceeded`) or its create is refused (Gemini: 429 RESOURCE_EXHAUSTED), and a
refused pack used to go realtime at full price. The ledger and its atomic moves live in mmq/packs.py
(pack_open.lua packs within the limit and counts the pack's tokens; pack_release.lua gives them back when
the pack ends, whatever the end); the steps (deposit.py, gather.py, poll.py) ask this module:
- `input_tokens`: a job's input tokens by the quote's own estimate (mmq.pricing: text at ~4 characters a
  token plus the message framing, images by the model's rule from the size prepare measured, or at the
  rule's per-image maximum for one it did not (downscaled since, or fetched); an estimate, erring high
  where it can), counted once, at the job's deposit;
- `ledger_of`: the ledger a route counts in: its rate-limit bucket, provider + virtual key + model (the
  quota is the key's, per model);
- `is_quota_refusal`: whether a create error or a failed batch's error means "over the token quota";
- `learned_limit`: after a refusal, the limit to pack under for a while: what the other packs hold plus
  half the refused pack (so the next pack is half as big, or waits for the others to end);
- `due_realtime`: which jobs waiting for room cannot wait any longer (their deadline, less their
  realtime run at the target's rate, less the margin, has come) and when the next one's moment is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mmq.errors import ProviderError
from mmq.pricing.quotes import estimate_job
from mmq.pricing.rules import MediaFacts
from mmq.request_models import URL_BY_KIND, Kind
from worker import budget

if TYPE_CHECKING:
    from worker.prepare import ImageFacts
    from worker.routes import Route
    from worker.runtime import Runtime

# the batch APIs whose queue quota is in enqueued tokens (reference §0.1.6): for them a 429 at a create
# (Gemini's RESOURCE_EXHAUSTED) is the quota; elsewhere a 429 is a rate or a concurrency limit (Claude on
# Vertex runs 4 jobs at a time), which a smaller pack would not help: the engine retries those later
TOKEN_QUOTA_PROVIDERS = frozenset({"openai", "azure-openai", "gemini"})
# how OpenAI and Azure word it, in any provider's error: the code and the text of the message
QUOTA_WORDS = ("token_limit_exceeded", "enqueued token")


def input_tokens(
    rt: Runtime, route: Route, kind: Kind, images: Mapping[str, ImageFacts] | None = None
) -> int:
    """The job's input tokens as a provider's enqueued-token quota counts them, estimated as a quote
    estimates them (0 for a request the estimate cannot read). `images`: sizes by data: URL."""
    url = URL_BY_KIND.get(kind)
    if url is None:
        return 0
    book = budget.book_for(rt.prices, route.prices)
    media = MediaFacts(images=image_sizes(route.request, images or {}))
    provider = route.target.provider
    estimate = estimate_job(url, route.request, media, provider=provider, book=book, high_only=True)
    return max(0, estimate.input_tokens)


def image_sizes(
    request: Mapping[str, Any], known: Mapping[str, ImageFacts]
) -> tuple[tuple[int, int] | None, ...]:
    """The (width, height) of each image part of a chat request, in the order the estimate counts them
    (mmq.pricing.rules.chat_input), None where it was not measured."""
    sizes: list[tuple[int, int] | None] = []
    messages = request.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, Mapping) else None
        for part in content if isinstance(content, list) else ():
            if not isinstance(part, Mapping) or part.get("type") != "image_url":
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else None
            facts = known.get(url) if isinstance(url, str) else None
            sizes.append((facts.width, facts.height) if facts else None)
    return tuple(sizes)


def ledger_of(route: Route) -> str:
    """The ledger a route's provider batches count in: provider, virtual key and model."""
    if route.bucket:
        return route.bucket
    model = route.request.get("model")
    return f"{route.target.provider}:{route.target.name}:{model if isinstance(model, str) else '-'}"


def is_quota_refusal(error: ProviderError | str | None, provider: str = "") -> bool:
    """A create refused, or a provider batch failed, for the provider's enqueued-token quota."""
    if isinstance(error, ProviderError):
        if error.status == 429 and (provider or error.provider) in TOKEN_QUOTA_PROVIDERS:
            return True
        text = f"{error.code or ''} {error}"
    else:
        text = error or ""
    text = text.lower()
    return any(word in text for word in QUOTA_WORDS)


def learned_limit(others: int, refused: int) -> int:
    """The limit to pack under after a pack of `refused` tokens was refused while the ledger's other packs
    held `others`: the provider's real limit is below others + refused."""
    return max(1, others + refused // 2)


def due(
    dated: list[tuple[float, str]], rate: float, margin_s: float, now: float
) -> tuple[list[str], float | None]:
    """Of jobs waiting for room, (deadline, id) by deadline: those that must go realtime now, and the
    moment the next one must (None: none left). Job n (from 0) needs the n + 1 jobs up to it run
    realtime at `rate` jobs/s before its deadline, less `margin_s`."""
    dated = sorted(dated)
    rate = max(rate, 0.001)
    moments = [deadline - (n + 1) / rate - margin_s for n, (deadline, _) in enumerate(dated)]
    last_due = max((n for n, at in enumerate(moments) if at <= now), default=-1)
    later = moments[last_due + 1 :]
    return [job_id for _, job_id in dated[: last_due + 1]], min(later) if later else None


async def due_realtime(rt: Runtime, group: str, now: float) -> tuple[list[str], float | None]:
    """`due` for the jobs waiting in `group`, at the group's realtime rate (its target's rate limit, else
    MMQ_BATCH_TIER_REALTIME_RATE). Jobs without a deadline can wait for room as long as it takes."""
    ids = await rt.packs.waiting_ids(group)
    if not ids:
        return [], None
    deadlines = await rt.packs.deadlines(ids)
    dated = [(d, i) for i, d in zip(ids, deadlines, strict=True) if d is not None and math.isfinite(d)]
    rate = await rt.packs.rate(group) or rt.settings.batch_tier_realtime_rate
    return due(dated, rate, rt.settings.batch_tier_margin_s, now)
