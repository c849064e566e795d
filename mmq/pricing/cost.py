"""Money from usage: what one job cost, from the usage its provider reported, priced by the price book.

Why a module of its own: the same arithmetic prices a finished job (cost_of), a quote's low and high
(mmq/pricing/quotes.py builds an estimated usage and prices it here), and a budget's reservation, so a
quote can only differ from a bill by the usage, never by the maths. Amounts are exact Decimals in USD
(no rounding per token: pricing.md §7); Cost.micro_usd rounds up once, for integer Redis counters.

Usage shapes read (all optional, unknown keys ignored):
- chat: OpenAI chat `prompt_tokens` (whole prompt), `prompt_tokens_details.{cached_tokens, audio_tokens,
  cache_write_tokens, cache_write_1h_tokens}`, `completion_tokens` (reasoning included); the Responses
  shape `input_tokens` / `input_tokens_details.cached_tokens` / `output_tokens`; Anthropic's native
  `input_tokens` (uncached only) + `cache_read_input_tokens` + `cache_creation_input_tokens`
  (+ `cache_creation.ephemeral_5m/1h_input_tokens`) + `output_tokens`.
- image: gpt-image `input_tokens(details_of.text_tokens/image_tokens)` + `output_tokens`, else the
  number of images (`images`, else the request's `n`) at the size/quality the request asked for.
- speech: `characters` (else the request's `input`), `seconds` of audio out (measured from the result),
  `input_tokens` / `output_tokens` where a provider reports them.
- transcription / translation: `{"type": "tokens", input_tokens, input_token_details{audio_tokens,
  text_tokens}, output_tokens}` or `{"type": "duration", "seconds"}` (also `duration`, `channels`),
  else the seconds measured from the audio (MediaFacts.audio_seconds).
A job whose model has no price gets amount 0 and `missing` = "no price for <provider>/<model>": a
result, never an exception, so the job's end is never stopped by pricing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from mmq.pricing import rules
from mmq.pricing.bill import BATCH, MILLION, REALTIME, Bill, Cost, NoPrice, as_int, as_number, details_of
from mmq.pricing.book import BLOCK_FOR_KIND, Match, PriceBook, default_book
from mmq.pricing.rules import MediaFacts
from mmq.pricing.schema import (
    ChatPrices,
    ImagePrices,
    SpeechPrices,
    TranscriptionPrices,
)


# --------------------------------------------------------------------------------------------- chat
@dataclass(frozen=True)
class ChatTokens:
    """A chat job's tokens: `prompt` is the whole prompt (cached, audio and cache writes included)."""

    prompt: int
    output: int = 0
    cached: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    audio: int = 0


def chat_tokens(usage: Mapping[str, Any]) -> ChatTokens | None:
    """The tokens of a chat usage in any of the shapes in the module docstring, or None."""
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        details = details_of(usage, "prompt_tokens_details")
        w1h = as_int(details.get("cache_write_1h_tokens"))
        return ChatTokens(
            prompt=as_int(usage.get("prompt_tokens")),
            output=as_int(usage.get("completion_tokens")),
            cached=as_int(details.get("cached_tokens")),
            cache_write_5m=max(0, as_int(details.get("cache_write_tokens")) - w1h),
            cache_write_1h=w1h,
            audio=as_int(details.get("audio_tokens")),
        )
    if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
        read = as_int(usage.get("cache_read_input_tokens"))
        written = as_int(usage.get("cache_creation_input_tokens"))
        split = details_of(usage, "cache_creation")
        w1h = as_int(split.get("ephemeral_1h_input_tokens"))
        return ChatTokens(
            prompt=as_int(usage.get("input_tokens")) + read + written,
            output=as_int(usage.get("output_tokens")),
            cached=read,
            cache_write_5m=max(0, written - w1h),
            cache_write_1h=w1h,
        )
    if "input_tokens" in usage or "output_tokens" in usage:
        details = details_of(usage, "input_tokens_details")
        return ChatTokens(
            prompt=as_int(usage.get("input_tokens")),
            output=as_int(usage.get("output_tokens")),
            cached=as_int(details.get("cached_tokens")),
            audio=as_int(details.get("audio_tokens")),
        )
    return None


def price_chat(bill: Bill, prices: ChatPrices, tokens: ChatTokens) -> None:
    """Add a chat job's items: uncached input, cached input, cache writes, audio input, output."""
    input_rate, output_rate, cached_rate = prices.input, prices.output, prices.cached_input
    long = prices.long_context
    if long is not None and tokens.prompt > long.above_input_tokens:
        input_rate, output_rate = long.input, long.output
        cached_rate = long.cached_input if long.cached_input is not None else cached_rate
        bill.note(f"long-context prices: prompt over {long.above_input_tokens:,} tokens")
    special = tokens.cached + tokens.cache_write_5m + tokens.cache_write_1h + tokens.audio
    bill.add("input tokens", max(0, tokens.prompt - special), "tokens", input_rate, MILLION)
    if tokens.cached:
        if cached_rate is None:
            bill.note("no cached-input price: cached tokens priced as input")
            cached_rate = input_rate
        policy = bill.batch.cached if (bill.tier == BATCH and bill.batch) else "stack"
        if policy == "batch_input":
            bill.add("cached input tokens", tokens.cached, "tokens", input_rate, MILLION)
        else:
            bill.add(
                "cached input tokens", tokens.cached, "tokens", cached_rate, MILLION, tiered=policy == "stack"
            )
    for count, rate, what in (
        (tokens.cache_write_5m, prices.cache_write_5m, "cache write tokens (5 min)"),
        (tokens.cache_write_1h, prices.cache_write_1h, "cache write tokens (1 h)"),
        (tokens.audio, prices.audio_input, "audio input tokens"),
    ):
        if count:
            if rate is None:
                bill.note(f"no price for {what}: priced as input")
            bill.add(what, count, "tokens", input_rate if rate is None else rate, MILLION)
    bill.add("output tokens", tokens.output, "tokens", output_rate, MILLION)


# -------------------------------------------------------------------------------------------- image
def table_options(
    table: Any, size: str | None, quality: str | None, default_size: str, default_quality: str
) -> tuple[list[tuple[str, Any]], list[str]]:
    """The entries of a size → (value | quality → value) table that a request can land on: one when the
    size and quality are set, several for "auto" (the caller takes the cheapest and the dearest). A size
    missing from the table is priced as the smallest listed size that holds its pixels, and says so."""
    if not isinstance(table, Mapping):
        return [("", table)], []
    notes: list[str] = []
    wanted = size or default_size
    if wanted == "auto":
        keys = list(table)
    elif wanted in table:
        keys = [wanted]
    elif "*" in table:
        keys = ["*"]
    else:
        dims = rules.parse_size(wanted)
        if dims is None:
            raise NoPrice(f"size {wanted!r} is not priced")
        holding = sorted(
            (d[0] * d[1], key)
            for key in table
            if (d := rules.parse_size(key)) and d[0] * d[1] >= dims[0] * dims[1]
        )
        if not holding:
            raise NoPrice(f"size {wanted} is larger than any priced size")
        keys = [holding[0][1]]
        notes.append(f"size {wanted} is not in the price table: priced as {keys[0]}")
    options: list[tuple[str, Any]] = []
    for key in keys:
        value = table[key]
        if not isinstance(value, Mapping):
            options.append((key, value))
            continue
        q = quality or default_quality
        if q == "auto":
            options.extend((f"{key} {name}", v) for name, v in value.items())
        elif q in value:
            options.append((f"{key} {q}", value[q]))
        elif "*" in value:
            options.append((f"{key} {q}", value["*"]))
        else:
            raise NoPrice(f"quality {q!r} is not priced at {key}")
    return options, notes


def image_options(
    prices: ImagePrices, size: str | None, quality: str | None
) -> tuple[list[tuple[str, Decimal, int]], list[str]]:
    """Per-image options for a request: (label, USD per image, image-out tokens or 0)."""
    if prices.per_image is not None:
        found, notes = table_options(
            prices.per_image, size, quality, prices.default_size, prices.default_quality
        )
        return [(label, Decimal(value), 0) for label, value in found], notes
    if prices.output_tokens is not None and prices.image_output is not None:
        found, notes = table_options(
            prices.output_tokens, size, quality, prices.default_size, prices.default_quality
        )
        return [
            (label, tokens * prices.image_output / MILLION, int(tokens)) for label, tokens in found
        ], notes
    raise NoPrice("no per-image price or image-out token count in the price book")


def price_image_tokens(bill: Bill, prices: ImagePrices, usage: Mapping[str, Any]) -> bool:
    """Add a token-billed image job's items from its usage; False when the usage has no tokens."""
    if prices.image_output is None:
        return False
    in_tokens = usage.get("input_tokens", usage.get("prompt_tokens"))
    out_tokens = usage.get("output_tokens", usage.get("completion_tokens"))
    if in_tokens is None and out_tokens is None:
        return False
    details = details_of(usage, "input_tokens_details")
    image_in = as_int(details.get("image_tokens"))
    text_in = (
        as_int(details.get("text_tokens"))
        if "text_tokens" in details
        else max(0, as_int(in_tokens) - image_in)
    )
    text_rate = prices.text_input if prices.text_input is not None else prices.image_input
    image_rate = prices.image_input if prices.image_input is not None else prices.text_input
    if (text_in or image_in) and text_rate is None:  # neither input rate: image_rate is None too
        bill.note("no input-token price for this image model: input not counted")
    if text_rate is not None:
        bill.add("text input tokens", text_in, "tokens", text_rate, MILLION)
    if image_rate is not None:
        bill.add("image input tokens", image_in, "tokens", image_rate, MILLION)
    bill.add("image output tokens", as_int(out_tokens), "tokens", prices.image_output, MILLION)
    return True


def price_image_count(
    bill: Bill, prices: ImagePrices, ask: rules.ImageAsk, images: int, pick: str = "high"
) -> None:
    """Add `images` images at the request's size/quality; for "auto", the dearest (`high`) or the
    cheapest (`low`) option, marked as an estimate."""
    options, notes = image_options(prices, ask.size, ask.quality)
    for text in notes:
        bill.note(text)
    label, price, tokens = (max if pick == "high" else min)(options, key=lambda o: o[1])
    if len(options) > 1:
        cheapest, dearest = min(options, key=lambda o: o[1])[0], max(options, key=lambda o: o[1])[0]
        bill.estimated = True
        bill.note(f"size/quality left to the provider: from {cheapest} to {dearest}")
    if tokens and prices.image_output is not None:
        bill.add(f"image output tokens ({label})", tokens * images, "tokens", prices.image_output, MILLION)
        if ask.prompt_tokens and prices.text_input is not None:
            bill.estimated = True
            bill.add("text input tokens (estimated)", ask.prompt_tokens, "tokens", prices.text_input, MILLION)
    else:
        bill.add(f"images ({label})" if label else "images", images, "images", price, 1)


# ------------------------------------------------------------------------------------------- speech
def price_speech(bill: Bill, prices: SpeechPrices, characters: int, usage: Mapping[str, Any]) -> None:
    """Per character, or (token-billed voices) text in + audio out: reported tokens, else the `seconds`
    of audio produced (measured from the result), else characters / chars_per_second."""
    if prices.per_character is not None:
        bill.add("characters", characters, "characters", prices.per_character, MILLION)
        return
    in_tokens = usage.get("input_tokens")
    if prices.text_input is not None:
        if in_tokens is None:
            bill.estimated = True
        tokens = as_int(in_tokens) if in_tokens is not None else math.ceil(characters / rules.CHARS_PER_TOKEN)
        bill.add("text input tokens", tokens, "tokens", prices.text_input, MILLION)
    out_tokens = usage.get("output_tokens")
    if out_tokens is not None and prices.audio_output is not None:
        bill.add("audio output tokens", as_int(out_tokens), "tokens", prices.audio_output, MILLION)
        return
    seconds = as_number(usage.get("seconds"))
    if seconds is None:
        bill.estimated = True
        seconds = Decimal(characters) / prices.chars_per_second
        bill.note(f"audio length estimated at {prices.chars_per_second} characters per second")
    if prices.per_minute is not None:
        bill.add("audio output", seconds, "seconds", prices.per_minute, 60)


# ------------------------------------------------------------------------------------ transcription
def price_transcription(
    bill: Bill, prices: TranscriptionPrices, usage: Mapping[str, Any], audio_seconds: Any = None
) -> None:
    """Reported tokens (gpt-4o-*-transcribe), else seconds (reported, else measured: `audio_seconds`)
    x channels, with the per-request minimum; raises NoPrice when the duration is unknown."""
    if prices.audio_input is not None and ("input_tokens" in usage or usage.get("type") == "tokens"):
        details = details_of(usage, "input_token_details")
        total = as_int(usage.get("input_tokens"))
        text = as_int(details.get("text_tokens"))
        audio = as_int(details.get("audio_tokens")) if "audio_tokens" in details else max(0, total - text)
        bill.add("audio input tokens", audio, "tokens", prices.audio_input, MILLION)
        if text:
            rate = prices.text_input if prices.text_input is not None else prices.audio_input
            bill.add("text input tokens", text, "tokens", rate, MILLION)
        if prices.text_output is not None:
            bill.add(
                "text output tokens",
                as_int(usage.get("output_tokens")),
                "tokens",
                prices.text_output,
                MILLION,
            )
        return
    seconds = as_number(usage.get("seconds")) or as_number(usage.get("duration"))
    if seconds is None:
        seconds = as_number(audio_seconds)
        if seconds is None:
            raise NoPrice("audio duration unknown")
    if prices.per_minute is None and prices.per_hour is None:
        raise NoPrice("no per-minute price and no token usage")
    channels = max(1, as_int(usage.get("channels")))
    billed = max(seconds, prices.min_seconds) * channels
    if billed > seconds:
        bill.note(f"billed at least {prices.min_seconds} s per request")
    if prices.per_minute is not None:
        bill.add("audio", billed, "seconds", prices.per_minute, 60)
    else:
        bill.add("audio", billed, "seconds", prices.per_hour, 3600)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ cost_of
def _unpriced(book: PriceBook, message: str, tier: str, priced_as: str | None = None) -> Cost:
    return Cost(Decimal(0), (), book.version, missing=message, priced_as=priced_as, tier=tier)


def cost_of(
    provider: str,
    model: str,
    kind: str,
    usage: Mapping[str, Any] | None = None,
    request: Mapping[str, Any] | None = None,
    *,
    media: MediaFacts | None = None,
    tier: str = REALTIME,
    book: PriceBook | None = None,
    at: date | None = None,
) -> Cost:
    """What one job cost: its provider's reported `usage` priced by the book (falling back to the rules
    where a provider reports none: image count and size from the `request`, characters of its input,
    seconds from `media`), at the `tier` it ran on ("realtime" or "batch"). Never raises for a price or
    usage problem: an unpriceable job has amount 0 and `missing` set."""
    book = book or default_book()
    usage = usage if isinstance(usage, Mapping) else {}
    request = request if isinstance(request, Mapping) else {}
    media = media or MediaFacts()
    match = book.find(provider, model, kind, at)
    if match is None:
        return _unpriced(book, book.no_price(provider, model, kind), tier)
    bill = Bill(tier, match.batch)
    try:
        _price_job(bill, match, str(kind), usage, request, media)
    except NoPrice as e:
        return _unpriced(book, f"{e} ({provider}/{model})", tier, match.priced_as)
    if match.priced_as != f"{provider}/{model}":
        bill.note(f"priced as {match.priced_as}")
    return Cost(
        amount=bill.amount,
        breakdown=tuple(bill.items),
        price_book_version=book.version,
        estimated=bill.estimated,
        priced_as=match.priced_as,
        tier=tier,
        notes=tuple(bill.notes),
    )


def _price_job(
    bill: Bill,
    match: Match,
    kind: str,
    usage: Mapping[str, Any],
    request: Mapping[str, Any],
    media: MediaFacts,
) -> None:
    block = BLOCK_FOR_KIND[kind]
    if block == "chat":
        assert match.chat is not None
        tokens = chat_tokens(usage)
        if tokens is None:
            estimate = rules.chat_prompt(request, media.images, match.vision, match.priced_as)
            tokens = ChatTokens(prompt=estimate.input_tokens)
            bill.estimated = True
            bill.note("the provider reported no usage: input estimated by the rules, output not counted")
            for text in estimate.notes:
                bill.note(text)
        price_chat(bill, match.chat, tokens)
    elif block == "image":
        assert match.image is not None
        if not price_image_tokens(bill, match.image, usage):
            ask = rules.image_ask(request)
            images = as_int(usage.get("images")) or ask.n
            price_image_count(bill, match.image, ask, images, pick="high")
    elif block == "speech":
        assert match.speech is not None
        characters = as_int(usage.get("characters")) or rules.speech_characters(request)
        price_speech(bill, match.speech, characters, usage)
    else:
        assert match.transcription is not None
        price_transcription(bill, match.transcription, usage, media.audio_seconds)
