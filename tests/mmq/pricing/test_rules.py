"""The usage rules against the documented examples (../shared/reference/pricing.md §1, §8)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from mmq.pricing import rules
from mmq.pricing.book import default_book
from mmq.pricing.schema import AnthropicPixels, FixedTokens, GeminiTiles, OpenAIPatch, OpenAITile

GPT_4O = OpenAITile(rule="openai_tile", base=85, per_tile=170)


@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [
        ((1024, 1024), "high", 765),  # pricing.md §1.1: 4 tiles -> 85 + 4 x 170
        ((2048, 4096), "high", 1105),  # §1.1: fit 2048, short side 768 -> 768x1536 -> 6 tiles
        ((1024, 1024), "low", 85),  # low: the base alone, whatever the size
        ((512, 512), "high", 255),  # already small: one tile, no upscaling
        ((1024, 1024), "auto", 765),  # auto is counted as high: the most it can cost
    ],
)
def test_openai_tile_scheme(size, detail, tokens):
    assert rules.image_tokens(GPT_4O, *size, detail) == tokens


def test_gpt_4o_mini_uses_its_own_tile_weights():
    mini = default_book().find("openai", "gpt-4o-mini", "chat")
    # pricing.md §1.1: base 2,833 and 5,667 per tile (the same $ per image as gpt-4o at its first $5/M
    # price; at today's $2.50/M a gpt-4o-mini image costs twice a gpt-4o one)
    assert rules.image_tokens(mini.vision, 1024, 1024, "high") == 2833 + 4 * 5667
    assert rules.image_tokens(mini.vision, 128, 64, "low") == 2833


def test_openai_patch_scheme():
    gpt_5_mini = OpenAIPatch(rule="openai_patch", multiplier=Decimal("1.62"))
    # pricing.md §1.1: 1024x1024 -> 1024 patches -> 1659 tokens on gpt-5-mini
    assert rules.openai_patch_patches(1024, 1024) == 1024
    assert rules.image_tokens(gpt_5_mini, 1024, 1024) == 1659
    # over 1536 patches: shrink so that whole patches fit (OpenAI's worked example: 1800x2400 -> 1452)
    assert rules.openai_patch_patches(1800, 2400) == 1452
    # the cap holds for any size
    assert rules.openai_patch_patches(8000, 8000) <= 1536
    nano = OpenAIPatch(rule="openai_patch", multiplier=Decimal("2.46"))
    assert rules.image_tokens(nano, 64, 64) == math.ceil(4 * 2.46)


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        ((1000, 1000), 1334),  # (w x h) / 750, rounded up
        ((200, 200), 54),
        ((1092, 1092), 1590),  # the no-resize sweet spot (~1.19 MP)
    ],
)
def test_anthropic_pixels_over_750(size, tokens):
    assert rules.image_tokens(AnthropicPixels(rule="anthropic"), *size) == tokens


def test_anthropic_downscales_large_images_first():
    rule = AnthropicPixels(rule="anthropic")
    # long edge over 1568 px or over ~1,600 tokens: scaled down first, so ~1,600 is the ceiling
    for size in [(4000, 3000), (1568, 1568), (8000, 400), (3000, 3000)]:
        assert rules.image_tokens(rule, *size) <= 1600
    # 8000x400: the long edge goes to 1568 -> 1568x78
    assert rules.image_tokens(rule, 8000, 400) == math.ceil(1568 * 78 / 750)


def test_anthropic_patch_rule():
    rule = default_book().find("anthropic", "claude-sonnet-5", "chat").vision
    # 28-px patches within the model's tier (pricing.md §1.2)
    assert rules.image_tokens(rule, 1920, 1080) == math.ceil(1920 / 28) * math.ceil(1080 / 28)
    assert rules.image_tokens(rule, 12000, 9000) <= 4784


def test_gemini_tiles():
    rule = GeminiTiles(rule="gemini")
    assert rules.image_tokens(rule, 384, 200) == 258  # both sides <= 384: one image, 258 tokens
    # larger: tiles of short side / 1.5 (clamped 256..768), 258 each: 1024 / 682.7 -> 2 x 2 tiles
    assert rules.image_tokens(rule, 1024, 1024) == 4 * 258
    assert rules.image_tokens(rule, 3000, 1000) == math.ceil(3000 / (1000 / 1.5)) * 2 * 258


def test_unknown_size_counts_at_the_rule_maximum():
    assert rules.image_tokens_unsized(GPT_4O, "high") == 85 + 8 * 170  # at most 768x2048 -> 8 tiles
    assert rules.image_tokens_unsized(GPT_4O, "low") == 85
    assert rules.image_tokens_unsized(AnthropicPixels(rule="anthropic")) == 1600
    assert rules.image_tokens_unsized(FixedTokens(rule="fixed", tokens=1101)) == 1101
    assert rules.image_tokens_unsized(GeminiTiles(rule="gemini")) is None  # no documented ceiling


def test_text_estimate_is_chars_over_four_plus_message_overheads():
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "abcdefghij"},  # 10 chars -> 3
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "abcd"},
                    {"type": "image_url", "image_url": {"url": "x"}},
                ],
            },
        ],
    }
    asked = rules.chat_input(body)
    assert asked.text_tokens == 3 + 3 + 3 + 1 + 3  # 2 messages x 3, the texts, the reply's 3
    assert asked.image_details == ["auto"]


def test_output_bound():
    assert rules.output_bound({"max_tokens": 300}) == 300
    assert rules.output_bound({"max_completion_tokens": 200, "max_tokens": 300}) == 200
    assert rules.output_bound({"max_tokens": 100, "n": 3}) == 300  # every choice is billed
    assert rules.output_bound({}) is None
    assert rules.output_bound({}, default=4096) == 4096
    assert rules.output_bound({"max_tokens": True}) is None
