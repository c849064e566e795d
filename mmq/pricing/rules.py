"""Usage rules: how many tokens an input image is billed as, per the providers' documented formulas, and
the offline estimates a quote needs (text tokens, the output bound, characters, images asked for).

Why a module apart: these are facts about the providers, not prices, and they are needed in two places
that must agree: the quote before a run and the cost of a job whose provider reports no usage. This
module is pure (no I/O, no engine imports) and every function names the rule it follows
(../shared/reference/pricing.md §1 for images, §8 for quotes). The simulator, which reports usage as the
real providers do, keeps its own copy of the rules on purpose (it imports nothing of the engine), so
that the end-to-end check of a quote against simulated usage compares two independent readings.

What is exact and what is estimated:
- image tokens follow the published formulas exactly (OpenAI tiles and patches, Anthropic's
  (w x h) / 750 with its downscale, Gemini's 258-token tiles); whether the provider bills exactly that
  is itself unverified for several of them (pricing.md marks them U) — reconcile with reported usage.
- text tokens are an ESTIMATE: ceil(characters / 4) per text, plus 3 per message and 3 for the reply
  (OpenAI's cookbook framing). No tokenizer is shipped; real counts differ by a few percent in English
  and more in other scripts and code.
- the output bound is exact where the request names max_tokens / max_completion_tokens (x n choices).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction
from typing import Any

from mmq.pricing.schema import (
    AnthropicPatch,
    AnthropicPixels,
    FixedTokens,
    GeminiTiles,
    OpenAIPatch,
    OpenAITile,
    VisionRule,
)

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
DEFAULT_DETAIL = "auto"


# --------------------------------------------------------------------------------------- images in
def openai_tile_tokens(
    width: int,
    height: int,
    detail: str | None,
    *,
    base: int,
    per_tile: int,
    max_side: int = 2048,
    short_side: int = 768,
    tile: int = 512,
) -> int:
    """OpenAI tile scheme (gpt-4o, gpt-4.1, gpt-5, o1/o3, gpt-image-1 input; pricing.md §1.1):
    `low` → base; otherwise fit within max_side x max_side, scale the short side down to short_side,
    count `tile`-px tiles: base + tiles x per_tile. `auto`, `high` and `original` are counted as high
    (the most `auto` can cost). gpt-4o 1024x1024 high → 4 tiles → 765."""
    if detail == "low":
        return base
    w, h = Fraction(width), Fraction(height)
    if max(w, h) > max_side:
        scale = Fraction(max_side) / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > short_side:
        scale = Fraction(short_side) / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / tile) * math.ceil(h / tile)
    return base + tiles * per_tile


def openai_patch_patches(width: int, height: int, *, max_patches: int = 1536, patch: int = 32) -> int:
    """OpenAI patch scheme (gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini; pricing.md §1.1): 32-px patches;
    over the cap, shrink by r = √(32² · cap / (w · h)), adjusted so that whole patches fit, and count
    again. 1800x2400 → 1452 patches."""
    patches = math.ceil(width / patch) * math.ceil(height / patch)
    if patches <= max_patches:
        return patches
    shrink = math.sqrt(patch * patch * max_patches / (width * height))
    w_patches, h_patches = width * shrink / patch, height * shrink / patch
    shrink *= min(math.floor(w_patches) / w_patches, math.floor(h_patches) / h_patches)
    resized_w, resized_h = int(width * shrink), int(height * shrink)
    patches = math.ceil(resized_w / patch) * math.ceil(resized_h / patch)
    return min(patches, max_patches)


def openai_patch_tokens(
    width: int, height: int, *, multiplier: Decimal, max_patches: int = 1536, patch: int = 32
) -> int:
    """Patches x the model's multiplier (1.62 gpt-4.1-mini / gpt-5-mini, 2.46 nano, 1.72 o4-mini),
    rounded up. gpt-5-mini 1024x1024 → 1024 patches → 1659."""
    patches = openai_patch_patches(width, height, max_patches=max_patches, patch=patch)
    return int((Decimal(patches) * Decimal(multiplier)).to_integral_value(rounding=ROUND_CEILING))


def anthropic_tokens(
    width: int, height: int, *, max_long_edge: int = 1568, max_tokens: int = 1600, pixels_per_token: int = 750
) -> int:
    """Anthropic (also on Bedrock and Vertex; pricing.md §1.2): an image whose long edge is over
    max_long_edge, or that would be over ~max_tokens, is first downscaled keeping its aspect; then
    tokens = ceil(w x h / 750). 1000x1000 → 1334; 200x200 → 54; ~1,600 is the per-image ceiling."""
    w, h = float(width), float(height)
    scale = min(1.0, max_long_edge / max(w, h))
    w, h = w * scale, h * scale
    if w * h / pixels_per_token > max_tokens:
        scale = math.sqrt(max_tokens * pixels_per_token / (w * h))
        w, h = w * scale, h * scale
    w, h = max(1, math.floor(w)), max(1, math.floor(h))
    return math.ceil(w * h / pixels_per_token)


def anthropic_patch_tokens(
    width: int, height: int, *, patch: int = 28, max_long_edge: int = 1568, max_tokens: int = 1568
) -> int:
    """Anthropic's newer description (pricing.md §1.2, unverified): downscale to the model's tier (long
    edge ≤ max_long_edge, ≤ max_tokens patches), then tokens = ceil(w / 28) x ceil(h / 28)."""
    w, h = float(width), float(height)
    scale = min(1.0, max_long_edge / max(w, h))
    w, h = max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
    tokens = math.ceil(w / patch) * math.ceil(h / patch)
    if tokens <= max_tokens:
        return tokens
    scale = math.sqrt(max_tokens * patch * patch / (w * h))
    while True:
        sw, sh = max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
        tokens = math.ceil(sw / patch) * math.ceil(sh / patch)
        if tokens <= max_tokens:
            return tokens
        scale *= 0.99


def gemini_tokens(
    width: int,
    height: int,
    *,
    small_side: int = 384,
    per_tile: int = 258,
    min_tile: int = 256,
    max_tile: int = 768,
) -> int:
    """Gemini 2.x (API and Vertex; pricing.md §1.3): both sides ≤ 384 px → 258 tokens; otherwise crop
    tiles of side short/1.5 clamped to 256-768, 258 tokens each. 1024x1024 → 4 tiles → 1032."""
    if width <= small_side and height <= small_side:
        return per_tile
    tile = min(max(Fraction(min(width, height)) / Fraction(3, 2), Fraction(min_tile)), Fraction(max_tile))
    return math.ceil(width / tile) * math.ceil(height / tile) * per_tile


def image_tokens(rule: VisionRule, width: int, height: int, detail: str | None = None) -> int:
    """The input tokens of one image of width x height under `rule` (the model's `vision` entry)."""
    if isinstance(rule, OpenAITile):
        return openai_tile_tokens(
            width,
            height,
            detail,
            base=rule.base,
            per_tile=rule.per_tile,
            max_side=rule.max_side,
            short_side=rule.short_side,
            tile=rule.tile,
        )
    if isinstance(rule, OpenAIPatch):
        return openai_patch_tokens(
            width, height, multiplier=rule.multiplier, max_patches=rule.max_patches, patch=rule.patch
        )
    if isinstance(rule, AnthropicPixels):
        return anthropic_tokens(
            width,
            height,
            max_long_edge=rule.max_long_edge,
            max_tokens=rule.max_tokens,
            pixels_per_token=rule.pixels_per_token,
        )
    if isinstance(rule, AnthropicPatch):
        return anthropic_patch_tokens(
            width, height, patch=rule.patch, max_long_edge=rule.max_long_edge, max_tokens=rule.max_tokens
        )
    if isinstance(rule, GeminiTiles):
        return gemini_tokens(
            width,
            height,
            small_side=rule.small_side,
            per_tile=rule.per_tile,
            min_tile=rule.min_tile,
            max_tile=rule.max_tile,
        )
    if isinstance(rule, FixedTokens):
        return rule.tokens
    raise TypeError(f"unknown vision rule {rule!r}")


def image_tokens_unsized(rule: VisionRule, detail: str | None = None) -> int | None:
    """What one image costs when its size is unknown: exact where the rule ignores size (OpenAI `low`,
    fixed), else the rule's per-image maximum, or None where the rule has none (Gemini 2.x tiles)."""
    if isinstance(rule, OpenAITile):
        if detail == "low":
            return rule.base
        long_tiles = math.ceil(rule.max_side / rule.tile)
        short_tiles = math.ceil(rule.short_side / rule.tile)
        return rule.base + long_tiles * short_tiles * rule.per_tile
    if isinstance(rule, OpenAIPatch):
        return int((Decimal(rule.max_patches) * rule.multiplier).to_integral_value(rounding=ROUND_CEILING))
    if isinstance(rule, AnthropicPixels | AnthropicPatch):
        return rule.max_tokens
    if isinstance(rule, FixedTokens):
        return rule.tokens
    return None


def size_ignored(rule: VisionRule, detail: str | None) -> bool:
    """Whether the rule's count does not depend on the image's size (no estimate involved)."""
    return isinstance(rule, FixedTokens) or (isinstance(rule, OpenAITile) and detail == "low")


# ----------------------------------------------------------------------------------- chat requests
def text_tokens(text: str) -> int:
    """ESTIMATE: ceil(characters / 4)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


@dataclass
class ChatInput:
    """What a chat request sends, as far as a quote can tell without calling anyone."""

    text_tokens: int = 0
    image_details: list[str] = field(default_factory=list)  # one per image part, in order
    documents: int = 0  # file parts (PDF, text): not counted
    audio_parts: int = 0  # input_audio parts: not counted


def _content_parts(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    return []


def chat_input(body: Mapping[str, Any]) -> ChatInput:
    """Text tokens (estimated, see text_tokens; tools and a response_format schema count as their
    JSON text), and the image parts with their `detail`, in order of appearance."""
    out = ChatInput()
    messages = body.get("messages")
    if not isinstance(messages, list):
        return out
    chars = 0
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        out.text_tokens += TOKENS_PER_MESSAGE
        for part in _content_parts(message.get("content")):
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                out.text_tokens += text_tokens(part["text"])
            elif kind == "image_url":
                image = part.get("image_url")
                detail = image.get("detail") if isinstance(image, Mapping) else None
                out.image_details.append(str(detail or DEFAULT_DETAIL))
            elif kind == "file":
                out.documents += 1
            elif kind == "input_audio":
                out.audio_parts += 1
    for extra in ("tools", "response_format"):
        value = body.get(extra)
        if isinstance(value, list | dict) and value:
            chars += len(json.dumps(value, separators=(",", ":"), default=str))
    out.text_tokens += math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_REPLY
    return out


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return int(value)


def output_bound(body: Mapping[str, Any], default: int | None = None) -> int | None:
    """The most output tokens a chat request can be billed for: max_completion_tokens (or max_tokens,
    else `default`: the adapter's default or the model's limit) x n choices; None when unbounded."""
    limit = (
        _positive_int(body.get("max_completion_tokens")) or _positive_int(body.get("max_tokens")) or default
    )
    if limit is None:
        return None
    return limit * (_positive_int(body.get("n")) or 1)


# ------------------------------------------------------------------------------ other job requests
def speech_characters(body: Mapping[str, Any]) -> int:
    """The characters a speech request bills (the `input` text, as sent)."""
    text = body.get("input")
    return len(text) if isinstance(text, str) else 0


@dataclass(frozen=True)
class ImageAsk:
    """An image generation request's priced facts: how many, what size, what quality."""

    n: int
    size: str | None
    quality: str | None
    prompt_tokens: int


def image_ask(body: Mapping[str, Any]) -> ImageAsk:
    prompt = body.get("prompt")
    size, quality = body.get("size"), body.get("quality")
    return ImageAsk(
        n=_positive_int(body.get("n")) or 1,
        size=str(size) if size else None,
        quality=str(quality) if quality else None,
        prompt_tokens=text_tokens(prompt) if isinstance(prompt, str) else 0,
    )


def parse_size(size: str) -> tuple[int, int] | None:
    """ "1024x1536" -> (1024, 1536); None for "auto", "*" or anything else."""
    w, sep, h = size.partition("x")
    if sep and w.isdigit() and h.isdigit() and int(w) and int(h):
        return int(w), int(h)
    return None


# ------------------------------------------------------------------------------ a chat prompt, whole
@dataclass(frozen=True)
class MediaFacts:
    """What a caller measured of a request's media without storing it: the pixel size of each image part
    in order of appearance (None where unknown), and the seconds of its audio (None where unknown)."""

    images: tuple[tuple[int, int] | None, ...] = ()
    audio_seconds: float | None = None


@dataclass
class PromptEstimate:
    """A chat prompt's input tokens by the rules: text (estimated) + images (by the model's rule)."""

    text_tokens: int
    image_tokens: int = 0
    images: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def input_tokens(self) -> int:
        return self.text_tokens + self.image_tokens


def chat_prompt(
    body: Mapping[str, Any], sizes: tuple[tuple[int, int] | None, ...], rule: VisionRule | None, name: str
) -> PromptEstimate:
    """Input tokens of a chat request: text by text_tokens' estimate, each image part by `rule` from its
    measured size (`sizes`, aligned with the image parts). An image of unknown size counts at the rule's
    per-image maximum; what cannot be counted at all is said in `notes` (`name`: the priced model)."""
    asked = chat_input(body)
    out = PromptEstimate(text_tokens=asked.text_tokens, images=len(asked.image_details))
    unsized = uncounted = 0
    for i, detail in enumerate(asked.image_details):
        size = sizes[i] if i < len(sizes) else None
        if size is not None and not (len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            size = None  # not a measured size: treated as unknown
        if rule is None:
            uncounted += 1
        elif size is not None:
            out.image_tokens += image_tokens(rule, size[0], size[1], detail)
        else:
            most = image_tokens_unsized(rule, detail)
            if most is None:
                uncounted += 1
            else:
                out.image_tokens += most
                unsized += 0 if size_ignored(rule, detail) else 1
    if unsized:
        out.notes.append(f"{unsized} image(s) of unknown size counted at the per-image maximum")
    if uncounted:
        why = "no image-token rule" if rule is None else "unknown size and no per-image maximum"
        out.notes.append(f"{uncounted} image(s) not counted ({why} for {name})")
    if asked.documents:
        out.notes.append(f"{asked.documents} document part(s) not counted")
    if asked.audio_parts:
        out.notes.append(f"{asked.audio_parts} audio part(s) not counted")
    return out
