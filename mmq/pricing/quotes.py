"""A quote before the run: per kind and model, how many jobs, how many input tokens (text + images by the
rules), the output bound, and a low-high cost range, without enqueueing anything or calling a provider.

Why here, and built on cost.py: a quote is the sum of per-job estimates (estimate_job, also what a
budget reserves before a provider call), and each estimate is an estimated usage priced by the very
functions that price a finished job, so quote and bill differ only by the usage.

The range: chat low = the input with no output (0 output tokens), high = the input with the output bound
(max_completion_tokens / max_tokens x n; else the adapter's default max_tokens, else the model's output
limit from the book, said in the notes; without any, high counts no output and the quote says it is not a
bound). Image generation: exact when size and quality are set; "auto" gives the cheapest to the dearest
option. Speech: exact per character; token-billed voices from characters at the book's speaking rate.
Transcription: exact from the measured seconds; a job whose audio could not be measured is unpriced.
`batch_low` / `batch_high` price the same jobs on the provider's batch tier (realtime where a model has
none). Unknown models are listed as "no price for <provider>/<model>" with their job counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from mmq.pricing import rules
from mmq.pricing.bill import BATCH, REALTIME, Bill, NoPrice
from mmq.pricing.book import BLOCK_FOR_KIND, PriceBook, default_book
from mmq.pricing.cost import (
    ChatTokens,
    price_chat,
    price_image_count,
    price_speech,
    price_transcription,
)
from mmq.pricing.rules import MediaFacts
from mmq.request_models import kind_for_url

DEFAULT_PROVIDER = "openai"


@dataclass(frozen=True)
class QuoteLine:
    """One request of a batch: its OpenAI Batch `url` and `body`, what was measured of its media, and
    the provider it will go to (the routing plan's first target; `quote`'s default otherwise)."""

    url: str
    body: Mapping[str, Any]
    media: MediaFacts | None = None
    provider: str | None = None


@dataclass(frozen=True)
class JobEstimate:
    kind: str
    provider: str
    model: str
    low: Decimal = Decimal(0)
    high: Decimal = Decimal(0)
    batch_low: Decimal | None = None  # None: no batch tier for this model
    batch_high: Decimal | None = None
    input_tokens: int = 0  # chat: text + images; image generation: the prompt
    text_tokens: int = 0
    image_tokens: int = 0
    images_in: int = 0
    output_bound: int | None = None  # chat; None = unbounded
    characters: int = 0  # speech
    audio_seconds: Decimal | None = None  # transcription / translation
    images_out: int = 0  # image generation
    missing: str | None = None
    priced_as: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def priced(self) -> bool:
        return self.missing is None


def _media(value: Any) -> MediaFacts:
    if isinstance(value, MediaFacts):
        return value
    if isinstance(value, Mapping):
        images = tuple(tuple(size) if size else None for size in value.get("images") or ())
        return MediaFacts(images=images, audio_seconds=value.get("audio_seconds"))  # type: ignore[arg-type]
    return MediaFacts()


def _line(item: Any, provider: str) -> QuoteLine:
    if isinstance(item, QuoteLine):
        return item if item.provider else QuoteLine(item.url, item.body, item.media, provider)
    url, body, *rest = item
    media = rest[0] if rest else None
    return QuoteLine(url, body, _media(media), rest[1] if len(rest) > 1 and rest[1] else provider)


def estimate_job(
    url: str,
    body: Mapping[str, Any],
    media: MediaFacts | None = None,
    *,
    provider: str = DEFAULT_PROVIDER,
    book: PriceBook | None = None,
    at: date | None = None,
    high_only: bool = False,
) -> JobEstimate:
    """One request's estimate (what a quote adds up, and what a budget reserves: `high`). Never raises:
    a request that cannot be priced has `missing` set. `high_only`: the realtime high alone (a budget's
    reservation, per call on the worker), without the low and the batch tier."""
    book = book or default_book()
    media = media or MediaFacts()
    try:
        kind = str(kind_for_url(url))
    except (ValueError, AttributeError) as e:
        return JobEstimate("invalid", provider, "", missing=f"invalid request: {e}")
    if not isinstance(body, Mapping):
        return JobEstimate(kind, provider, "", missing="invalid request: the body is not an object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return JobEstimate(kind, provider, "", missing="invalid request: no model")
    try:
        return _estimate(kind, provider, model, body, media, book, at, high_only)
    except Exception as e:  # a quote reports what it cannot price; it never stops on one request
        return JobEstimate(kind, provider, model, missing=f"could not estimate: {type(e).__name__}: {e}")


def _estimate(
    kind: str,
    provider: str,
    model: str,
    body: Mapping[str, Any],
    media: MediaFacts,
    book: PriceBook,
    at: date | None,
    high_only: bool = False,
) -> JobEstimate:
    match = book.find(provider, model, kind, at)
    block = BLOCK_FOR_KIND[kind]
    facts: dict[str, Any] = {}
    notes: list[str] = []
    if block == "chat":
        name = match.priced_as if match else f"{provider}/{model}"
        prompt = rules.chat_prompt(body, media.images, match.vision if match else None, name)
        notes += prompt.notes
        default = None
        if match is not None:
            default = match.default_max_tokens or (match.chat.max_output_tokens if match.chat else None)
        bound = rules.output_bound(body)
        if bound is None and default is not None:
            bound = rules.output_bound(body, default)
            notes.append(f"no max_tokens in the request: output bound {default:,} per choice")
        elif bound is None:
            notes.append("no max_tokens and no known output limit: high counts no output")
        facts = {
            "input_tokens": prompt.input_tokens,
            "text_tokens": prompt.text_tokens,
            "image_tokens": prompt.image_tokens,
            "images_in": prompt.images,
            "output_bound": bound,
        }
    elif block == "image":
        ask = rules.image_ask(body)
        facts = {"input_tokens": ask.prompt_tokens, "text_tokens": ask.prompt_tokens, "images_out": ask.n}
    elif block == "speech":
        facts = {"characters": rules.speech_characters(body)}
    else:
        seconds = media.audio_seconds
        measured = isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0
        facts = {"audio_seconds": Decimal(str(seconds)) if measured else None}
    if match is None:
        return JobEstimate(kind, provider, model, missing=book.no_price(provider, model, kind), **facts)

    def price(pick: str) -> Any:
        def run(bill: Bill) -> None:
            if block == "chat":
                assert match.chat is not None
                output = facts["output_bound"] if pick == "high" else 0
                price_chat(bill, match.chat, ChatTokens(prompt=facts["input_tokens"], output=output or 0))
            elif block == "image":
                assert match.image is not None
                ask = rules.image_ask(body)
                price_image_count(bill, match.image, ask, ask.n, pick=pick)
            elif block == "speech":
                assert match.speech is not None
                price_speech(bill, match.speech, facts["characters"], {})
            else:
                assert match.transcription is not None
                price_transcription(bill, match.transcription, {}, media.audio_seconds)

        return run

    def run(tier: str, pick: str) -> Bill:
        bill = Bill(tier, match.batch)
        price(pick)(bill)
        return bill

    try:
        high = run(REALTIME, "high")
        low = high if high_only else run(REALTIME, "low")
        batch = (run(BATCH, "low"), run(BATCH, "high")) if match.batch and not high_only else None
    except NoPrice as e:
        return JobEstimate(
            kind, provider, model, missing=f"{e} ({provider}/{model})", priced_as=match.priced_as, **facts
        )
    for text in high.notes + low.notes:
        if text not in notes:
            notes.append(text)
    if match.priced_as != f"{provider}/{model}":
        notes.append(f"priced as {match.priced_as}")
    return JobEstimate(
        kind,
        provider,
        model,
        low=low.amount,
        high=high.amount,
        batch_low=batch[0].amount if batch else None,
        batch_high=batch[1].amount if batch else None,
        priced_as=match.priced_as,
        notes=tuple(notes),
        **facts,
    )


# ------------------------------------------------------------------------------------------ the quote
@dataclass
class QuoteGroup:
    """The jobs of one kind, provider and model, added up."""

    kind: str
    provider: str
    model: str
    jobs: int = 0
    priced_jobs: int = 0
    input_tokens: int = 0
    text_tokens: int = 0
    image_tokens: int = 0
    images_in: int = 0
    output_bound: int = 0  # summed over the jobs that have one
    unbounded_jobs: int = 0
    characters: int = 0
    audio_seconds: Decimal = Decimal(0)
    unmeasured_audio: int = 0
    images_out: int = 0
    low: Decimal = Decimal(0)
    high: Decimal = Decimal(0)
    batch_low: Decimal = Decimal(0)  # realtime figures for jobs whose model has no batch tier
    batch_high: Decimal = Decimal(0)
    missing: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    priced_as: str | None = None

    def add(self, job: JobEstimate) -> None:
        self.jobs += 1
        self.input_tokens += job.input_tokens
        self.text_tokens += job.text_tokens
        self.image_tokens += job.image_tokens
        self.images_in += job.images_in
        self.characters += job.characters
        self.images_out += job.images_out
        if job.kind == "chat":
            if job.output_bound is None:
                self.unbounded_jobs += 1
            else:
                self.output_bound += job.output_bound
        if job.kind in ("transcription", "translation"):
            if job.audio_seconds is None:
                self.unmeasured_audio += 1
            else:
                self.audio_seconds += job.audio_seconds
        self.notes.update(job.notes)
        if job.missing:
            self.missing[job.missing] += 1
            return
        self.priced_jobs += 1
        self.priced_as = job.priced_as
        self.low += job.low
        self.high += job.high
        self.batch_low += job.low if job.batch_low is None else job.batch_low
        self.batch_high += job.high if job.batch_high is None else job.batch_high

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "provider": self.provider,
            "model": self.model,
            "priced_as": self.priced_as,
            "jobs": self.jobs,
            "priced_jobs": self.priced_jobs,
            "input_tokens": self.input_tokens,
            "text_tokens": self.text_tokens,
            "image_tokens": self.image_tokens,
            "images_in": self.images_in,
            "output_bound": self.output_bound,
            "unbounded_jobs": self.unbounded_jobs,
            "characters": self.characters,
            "audio_seconds": str(self.audio_seconds),
            "unmeasured_audio": self.unmeasured_audio,
            "images_out": self.images_out,
            "low_usd": str(self.low),
            "high_usd": str(self.high),
            "batch_low_usd": str(self.batch_low),
            "batch_high_usd": str(self.batch_high),
            "missing": dict(self.missing),
            "notes": dict(self.notes),
        }


def usd(amount: Decimal) -> str:
    """$1.50, $0.1664, $0.000018: up to 6 decimals, at least 2."""
    text = f"{amount.quantize(Decimal('0.000001')):f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


@dataclass(frozen=True)
class Quote:
    groups: tuple[QuoteGroup, ...]
    price_book_version: str
    jobs: int
    priced_jobs: int
    low: Decimal
    high: Decimal
    batch_low: Decimal
    batch_high: Decimal
    missing: dict[str, int]  # "no price for groq/x" (or another reason) -> jobs
    high_is_bound: bool  # False when some chat job has no output bound

    def to_dict(self) -> dict[str, Any]:
        return {
            "price_book_version": self.price_book_version,
            "currency": "USD",
            "jobs": self.jobs,
            "priced_jobs": self.priced_jobs,
            "low_usd": str(self.low),
            "high_usd": str(self.high),
            "batch_low_usd": str(self.batch_low),
            "batch_high_usd": str(self.batch_high),
            "high_is_bound": self.high_is_bound,
            "missing": self.missing,
            "groups": [g.to_dict() for g in self.groups],
        }

    def lines(self) -> list[str]:
        """A plain-text rendering for the CLI."""
        out = [f"price book {self.price_book_version} (USD)"]
        for g in self.groups:
            parts = [f"{g.kind:<13} {g.provider}/{g.model}", f"{g.jobs} job(s)"]
            if g.kind == "chat":
                parts.append(
                    f"input {g.input_tokens:,} tokens (text ~{g.text_tokens:,}, images {g.image_tokens:,})"
                )
                parts.append(f"output ≤ {g.output_bound:,}" + (" + unbounded" if g.unbounded_jobs else ""))
            elif g.kind == "image":
                parts.append(f"{g.images_out} image(s)")
            elif g.kind == "speech":
                parts.append(f"{g.characters:,} characters")
            else:
                parts.append(f"{g.audio_seconds:.1f} s of audio")
            if g.priced_jobs:
                parts.append(f"{usd(g.low)}-{usd(g.high)}")
            out.append("  ".join(parts))
            out.extend(f"    {reason}: {n} job(s)" for reason, n in g.missing.items())
            out.extend(f"    note: {text}" + (f" ({n} jobs)" if n > 1 else "") for text, n in g.notes.items())
        total = f"total {self.priced_jobs} of {self.jobs} job(s) priced: {usd(self.low)}-{usd(self.high)}"
        if not self.high_is_bound:
            total += " (high is not a bound: some jobs have no max_tokens)"
        out.append(total)
        out.append(f"on the batch tier: {usd(self.batch_low)}-{usd(self.batch_high)}")
        return out


def quote(
    lines: Iterable[QuoteLine | tuple[Any, ...]],
    *,
    provider: str = DEFAULT_PROVIDER,
    book: PriceBook | None = None,
    at: date | None = None,
) -> Quote:
    """A quote over `lines`: QuoteLine or (url, body[, media[, provider]]) tuples, where media is a
    MediaFacts (or {"images": [(w, h) | None, ...], "audio_seconds": s | None}, or None)."""
    book = book or default_book()
    groups: dict[tuple[str, str, str], QuoteGroup] = {}
    for item in lines:
        line = _line(item, provider)
        job = estimate_job(
            line.url, line.body, _media(line.media), provider=line.provider or provider, book=book, at=at
        )
        key = (job.kind, job.provider, job.model)
        groups.setdefault(key, QuoteGroup(*key)).add(job)
    ordered = tuple(groups.values())
    missing: Counter[str] = Counter()
    for g in ordered:
        missing.update(g.missing)
    return Quote(
        groups=ordered,
        price_book_version=book.version,
        jobs=sum(g.jobs for g in ordered),
        priced_jobs=sum(g.priced_jobs for g in ordered),
        low=sum((g.low for g in ordered), Decimal(0)),
        high=sum((g.high for g in ordered), Decimal(0)),
        batch_low=sum((g.batch_low for g in ordered), Decimal(0)),
        batch_high=sum((g.batch_high for g in ordered), Decimal(0)),
        missing=dict(missing),
        high_is_bound=not any(g.unbounded_jobs for g in ordered),
    )
