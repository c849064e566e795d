"""quote: a mixed batch's quote equals the sum of the documented rules, priced by the book."""

from __future__ import annotations

import base64
import json
import math
from decimal import Decimal
from pathlib import Path

from mmq.pricing import MediaFacts, QuoteLine, estimate_job, measure_audio, measure_image, quote

from .test_measure import wav_bytes

M = Decimal(1_000_000)
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

SYSTEM = "You caption product photos."
ASK = "Describe these three photos."
PROMPT = "a ceramic teapot on a wooden table"
SPOKEN = "Welcome to the spring catalog."


def chat_body() -> dict:
    return {
        "model": "gpt-4o",
        "max_tokens": 300,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": ASK},
                    {"type": "image_url", "image_url": {"url": "https://x/a.jpg", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "https://x/b.jpg"}},  # auto
                    {"type": "image_url", "image_url": {"url": "https://x/c.jpg", "detail": "low"}},
                ],
            },
        ],
    }


def claude_body() -> dict:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/d.png"}}]}
        ],
    }


def test_a_mixed_batch_quote_equals_the_sum_of_the_documented_rules():
    audio = wav_bytes(2.5)
    lines = [
        # chat, three sizes and three detail levels, measured by the caller
        QuoteLine(
            "/v1/chat/completions", chat_body(), MediaFacts(images=((1024, 1024), (2048, 4096), (512, 512)))
        ),
        QuoteLine(
            "/v1/chat/completions", claude_body(), MediaFacts(images=((1000, 1000),)), provider="anthropic"
        ),
        (
            "/v1/images/generations",
            {"model": "gpt-image-1", "prompt": PROMPT, "size": "1024x1024", "quality": "high", "n": 2},
        ),
        (
            "/v1/images/generations",
            {"model": "dall-e-3", "prompt": PROMPT, "size": "1024x1792", "quality": "hd"},
        ),
        ("/v1/audio/speech", {"model": "tts-1", "input": SPOKEN, "voice": "alloy"}),
        (
            "/v1/audio/transcriptions",
            {"model": "whisper-1", "file": "audio/a.wav"},
            MediaFacts(audio_seconds=measure_audio(audio)),
        ),
    ]
    q = quote(lines)

    # chat on gpt-4o: text by chars/4 + 3 per message + 3 for the reply; images by the tile rule
    text = 2 * 3 + math.ceil(len(SYSTEM) / 4) + math.ceil(len(ASK) / 4) + 3
    images = 765 + 1105 + 85  # 1024x1024 high, 2048x4096 auto (= high), 512x512 low
    chat_low = (text + images) * Decimal("2.50") / M
    chat_high = chat_low + 300 * Decimal("10.00") / M
    # chat on claude-sonnet-4-5: 1000x1000 -> 1334 tokens, + one message and the reply
    claude_in = 1334 + 3 + 3
    claude_low = claude_in * Decimal(3) / M
    claude_high = claude_low + 200 * Decimal(15) / M
    # gpt-image-1 1024x1024 high: 4160 image-out tokens at $40/M per image, + the prompt at $5/M
    image = 2 * 4160 * Decimal(40) / M + math.ceil(len(PROMPT) / 4) * Decimal(5) / M
    dalle = Decimal("0.120")
    speech = len(SPOKEN) * Decimal(15) / M  # tts-1 per character
    stt = Decimal("2.5") * Decimal("0.006") / 60  # whisper-1 per minute, prorated by the second

    groups = {(g.kind, g.provider, g.model): g for g in q.groups}
    gpt4o = groups["chat", "openai", "gpt-4o"]
    assert (gpt4o.text_tokens, gpt4o.image_tokens, gpt4o.input_tokens) == (text, images, text + images)
    assert gpt4o.output_bound == 300 and gpt4o.images_in == 3
    assert (gpt4o.low, gpt4o.high) == (chat_low, chat_high)
    claude = groups["chat", "anthropic", "claude-sonnet-4-5"]
    assert (claude.input_tokens, claude.low, claude.high) == (claude_in, claude_low, claude_high)
    assert (
        groups["image", "openai", "gpt-image-1"].low == image == groups["image", "openai", "gpt-image-1"].high
    )
    assert groups["image", "openai", "dall-e-3"].high == dalle
    assert groups["speech", "openai", "tts-1"].characters == len(SPOKEN)
    assert groups["transcription", "openai", "whisper-1"].audio_seconds == Decimal("2.5")

    fixed = image + dalle + speech + stt
    assert q.low == chat_low + claude_low + fixed
    assert q.high == chat_high + claude_high + fixed
    assert (q.jobs, q.priced_jobs, q.missing, q.high_is_bound) == (6, 6, {}, True)
    assert q.price_book_version == "2026-12-03.1"
    # the batch tier: half of the chat and image jobs; OpenAI's batch API takes no audio endpoints
    realtime_only = speech + stt
    assert q.batch_low == (q.low - realtime_only) / 2 + realtime_only
    assert q.batch_high == (q.high - realtime_only) / 2 + realtime_only
    rendered = "\n".join(q.lines())
    assert "price book 2026-12-03.1" in rendered and "chat          openai/gpt-4o  1 job(s)" in rendered


def test_unknown_models_quote_no_price_and_the_rest_still_adds_up():
    lines = [
        (
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        ),
        (
            "/v1/chat/completions",
            {"model": "gpt-9-ears", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("/v1/chat/completions", {"model": "gpt-9-ears", "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hello"}, None, "groq"),
    ]
    q = quote(lines)
    assert q.jobs == 4 and q.priced_jobs == 1
    assert q.missing == {"no price for openai/gpt-9-ears": 2, "no price for groq/tts-1": 1}
    known = estimate_job(*lines[0][:2])
    assert q.low == known.low and q.high == known.high
    unknown = next(g for g in q.groups if g.model == "gpt-9-ears")
    assert unknown.input_tokens == 2 * (3 + 1 + 3)  # tokens are still counted for an unpriced model
    assert not q.high_is_bound  # one of them has no max_tokens and no known limit
    assert "no price for openai/gpt-9-ears: 2 job(s)" in "\n".join(q.lines())


def test_invalid_lines_are_reported_not_raised():
    q = quote(
        [
            ("/v1/embeddings", {"model": "x"}),
            ("/v1/chat/completions", {"messages": []}),
            ("/v1/chat/completions", "not a body"),
        ]
    )
    assert q.priced_jobs == 0 and q.jobs == 3
    assert all(reason.startswith("invalid request") for reason in q.missing)


def test_output_bound_defaults_and_unknown_image_sizes():
    # Anthropic: mmq's adapter sends max_tokens 4096 when the request names none
    body = {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}],
    }
    job = estimate_job("/v1/chat/completions", body, provider="anthropic")
    assert job.output_bound == 4096
    assert job.image_tokens == 1600  # unknown size: the per-image ceiling
    assert any("unknown size" in n for n in job.notes)
    assert job.high == (job.input_tokens * Decimal(1) + 4096 * Decimal(5)) / M
    # OpenAI: the model's output limit from the book
    job = estimate_job("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [], "n": 2})
    assert job.output_bound == 2 * 16384
    # a model without an image rule: images are not counted, and the quote says so
    body = {
        "model": "openai/gpt-oss-120b",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}],
    }
    job = estimate_job("/v1/chat/completions", body, MediaFacts(images=((512, 512),)), provider="groq")
    assert job.image_tokens == 0 and any("no image-token rule" in n for n in job.notes)


def test_bad_measurements_count_as_unknown():
    body = {
        "model": "gpt-4o",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}] * 2}],
    }
    job = estimate_job("/v1/chat/completions", body, MediaFacts(images=((0, 10), (640, 480))))
    assert job.priced and job.image_tokens == (85 + 8 * 170) + (85 + 2 * 170)
    q = quote([("/v1/audio/transcriptions", {"model": "whisper-1"}, {"audio_seconds": float("nan")})])
    assert q.missing == {"audio duration unknown (openai/whisper-1)": 1}


def test_image_generation_auto_gives_a_range():
    job = estimate_job("/v1/images/generations", {"model": "gpt-image-1", "prompt": "", "size": "1024x1536"})
    assert job.low == 408 * Decimal(40) / M and job.high == 6240 * Decimal(40) / M


def test_unmeasured_audio_is_unpriced_not_guessed():
    q = quote([("/v1/audio/transcriptions", {"model": "whisper-1", "file": "x"}, None)])
    assert q.priced_jobs == 0 and q.missing == {"audio duration unknown (openai/whisper-1)": 1}
    assert q.groups[0].unmeasured_audio == 1


def test_the_readme_example_batch():
    """examples/batch.jsonl measured the way a `mmq quote` would: image headers and audio durations."""
    lines = []
    for raw in (EXAMPLES / "batch.jsonl").read_text().splitlines():
        line = json.loads(raw)
        body = line["body"]
        media = MediaFacts()
        if "file" in body:
            media = MediaFacts(audio_seconds=measure_audio((EXAMPLES / body["file"]).read_bytes()))
        for message in body.get("messages", []):
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part.get("type") == "image_url":
                    data = base64.b64decode(part["image_url"]["url"].partition(",")[2])
                    media = MediaFacts(images=(*media.images, measure_image(data)))
        lines.append((line["url"], body, media))
    q = quote(lines)
    assert q.jobs == len(lines) and q.priced_jobs == q.jobs and q.missing == {}
    assert 0 < q.low < q.high
    kinds = {g.kind for g in q.groups}
    assert kinds == {"chat", "image", "speech", "transcription", "translation"}
