"""The shape of a price file (the shipped mmq/pricing/prices.yaml, a user's MMQ_PRICES_FILE, a routing
target's overrides), as strict pydantic models.

Why here: a price file is data a person edits, so every field is checked at the boundary (unknown keys,
negative or non-finite prices, a vision rule without its parameters, a model with no prices) and the
error names the entry; mmq/pricing/book.py turns these errors into "file, line, entry, reason". Units are
documented at the top of prices.yaml: token and character rates per 1,000,000, audio per minute or hour,
images per image.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

Rate = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
# size -> price, or size -> quality -> price; "*" matches any size / quality
SizeTable = dict[str, Rate | dict[str, Rate]]
TokenTable = dict[str, PositiveInt | dict[str, PositiveInt]]
_SIZE = re.compile(r"\d+x\d+|\*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Sourced(_Strict):
    """A block may carry its own date and source; the model's apply otherwise."""

    effective_from: date | None = None
    source: str | None = None


class LongContext(_Strict):
    """A dearer tier for the whole request once its prompt exceeds `above_input_tokens` (Gemini Pro,
    Claude on Bedrock with the 1M context)."""

    above_input_tokens: PositiveInt
    input: Rate
    output: Rate
    cached_input: Rate | None = None


class ChatPrices(_Sourced):
    input: Rate
    output: Rate
    cached_input: Rate | None = None
    cache_write_5m: Rate | None = None
    cache_write_1h: Rate | None = None
    audio_input: Rate | None = None
    long_context: LongContext | None = None
    # the output bound used by a quote when a request names no max_tokens (the model's own limit)
    max_output_tokens: PositiveInt | None = None


def _check_sizes(table: dict | None, field: str) -> None:
    for size in table or {}:
        if not _SIZE.fullmatch(size):
            raise ValueError(f"{field}: size {size!r} must look like 1024x1024 (or '*')")


class ImagePrices(_Sourced):
    # per image: one figure, or a table size -> (price | quality -> price)
    per_image: Rate | SizeTable | None = None
    # image-out tokens per image (size -> (tokens | quality -> tokens)), priced at image_output
    output_tokens: TokenTable | None = None
    text_input: Rate | None = None
    image_input: Rate | None = None
    image_output: Rate | None = None
    default_size: str = "1024x1024"
    default_quality: str = "auto"

    @model_validator(mode="after")
    def _priced(self) -> ImagePrices:
        if self.per_image is None and self.image_output is None:
            raise ValueError("an image block needs per_image or image_output")
        if self.output_tokens is not None and self.image_output is None:
            raise ValueError("output_tokens needs image_output (the price of an image-out token)")
        if isinstance(self.per_image, dict):
            _check_sizes(self.per_image, "per_image")
        _check_sizes(self.output_tokens, "output_tokens")
        return self


class SpeechPrices(_Sourced):
    per_character: Rate | None = None
    text_input: Rate | None = None
    audio_output: Rate | None = None
    # audio out per minute: what a quote (and a job without audio-token usage) uses for token-billed models
    per_minute: Rate | None = None
    # how fast the voice speaks, to turn characters into seconds of audio for per_minute
    chars_per_second: Positive = Decimal(15)

    @model_validator(mode="after")
    def _priced(self) -> SpeechPrices:
        if self.per_character is None and self.per_minute is None:
            raise ValueError("a speech block needs per_character or per_minute")
        return self


class TranscriptionPrices(_Sourced):
    per_minute: Rate | None = None
    per_hour: Rate | None = None
    min_seconds: Rate = Decimal(0)  # a per-request minimum (Groq)
    # token-billed models: what the reported usage is priced at
    audio_input: Rate | None = None
    text_input: Rate | None = None
    text_output: Rate | None = None

    @model_validator(mode="after")
    def _priced(self) -> TranscriptionPrices:
        if self.per_minute is not None and self.per_hour is not None:
            raise ValueError("give per_minute or per_hour, not both")
        if self.per_minute is None and self.per_hour is None and self.audio_input is None:
            raise ValueError("a transcription block needs per_minute, per_hour or audio_input")
        return self


# ------------------------------------------------------------------------------ vision rules (facts)
class OpenAITile(_Strict):
    """gpt-4o family: fit in max_side², short side to short_side, tiles of `tile` px (pricing.md §1.1)."""

    rule: Literal["openai_tile"]
    base: PositiveInt
    per_tile: PositiveInt
    max_side: PositiveInt = 2048
    short_side: PositiveInt = 768
    tile: PositiveInt = 512


class OpenAIPatch(_Strict):
    """gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini: 32-px patches, capped, x multiplier (§1.1)."""

    rule: Literal["openai_patch"]
    multiplier: Positive
    max_patches: PositiveInt = 1536
    patch: PositiveInt = 32


class AnthropicPixels(_Strict):
    """Claude: (w x h) / 750 after the downscale to ≤ max_long_edge and ≤ ~max_tokens (§1.2)."""

    rule: Literal["anthropic"]
    max_long_edge: PositiveInt = 1568
    max_tokens: PositiveInt = 1600
    pixels_per_token: PositiveInt = 750


class AnthropicPatch(_Strict):
    """Newer Claude models: 28-px patches after the downscale to the model's tier (§1.2, unverified)."""

    rule: Literal["anthropic_patch"]
    patch: PositiveInt = 28
    max_long_edge: PositiveInt = 1568
    max_tokens: PositiveInt = 1568


class GeminiTiles(_Strict):
    """Gemini 2.x: 258 tokens for a small image, else 258 per crop tile (§1.3)."""

    rule: Literal["gemini"]
    small_side: PositiveInt = 384
    per_tile: PositiveInt = 258
    min_tile: PositiveInt = 256
    max_tile: PositiveInt = 768


class FixedTokens(_Strict):
    """A fixed count per image whatever its size (Gemini 3.x at the default media resolution, §1.3)."""

    rule: Literal["fixed"]
    tokens: PositiveInt


VisionRule = Annotated[
    OpenAITile | OpenAIPatch | AnthropicPixels | AnthropicPatch | GeminiTiles | FixedTokens,
    Field(discriminator="rule"),
]


# ------------------------------------------------------------------------------------- the entries
class BatchPolicy(_Strict):
    """The provider's batch tier: `multiplier` on every price, and what cached input costs there:
    stack (cached price x multiplier), cached_price (the cache discount wins, no batch discount on it),
    batch_input (no cache discount in batch: cached tokens pay the batch input price). pricing.md §5.1."""

    multiplier: Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]
    cached: Literal["stack", "cached_price", "batch_input"] = "stack"
    # the job kinds the provider's batch API takes (None: all); other kinds only run realtime
    kinds: list[Literal["chat", "image", "speech", "transcription", "translation"]] | None = None


class ModelPeriod(_Strict):
    """One model's prices from `effective_from` on."""

    effective_from: date
    source: Annotated[str, Field(min_length=1)]
    note: str | None = None
    chat: ChatPrices | None = None
    image: ImagePrices | None = None
    speech: SpeechPrices | None = None
    transcription: TranscriptionPrices | None = None
    vision: VisionRule | None = None
    batch: BatchPolicy | None = None

    @model_validator(mode="after")
    def _has_prices(self) -> ModelPeriod:
        if not (self.chat or self.image or self.speech or self.transcription):
            raise ValueError("a model needs at least one of chat, image, speech, transcription")
        return self


class ModelEntry(ModelPeriod):
    # model ids that must not fall back to this entry through the snapshot/prefix look-up
    exclude: list[str] = Field(default_factory=list)
    # other periods of the same model (older prices, or prices announced for a later date)
    history: list[ModelPeriod] = Field(default_factory=list)


class ProviderEntry(_Strict):
    # look models up in this provider too (azure-openai -> openai, vertex -> gemini, ...)
    inherits: str | None = None
    # a name the caller uses -> the model it is priced as (deployments, an adapter's model mapping)
    aliases: dict[str, str] = Field(default_factory=dict)
    batch: BatchPolicy | None = None
    # the max_tokens mmq's adapter sends when a request names none (the output bound of a quote)
    default_max_tokens: PositiveInt | None = None
    models: dict[str, ModelEntry] = Field(default_factory=dict)


class PriceDoc(_Strict):
    version: Annotated[str, Field(min_length=1)] | None = None
    currency: Literal["USD"] = "USD"
    providers: dict[str, ProviderEntry] = Field(default_factory=dict)
