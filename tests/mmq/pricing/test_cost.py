"""cost_of: a job's money from the usage its provider reported (or the rule where it reports none)."""

from __future__ import annotations

from decimal import Decimal

from mmq.pricing import MediaFacts, cost_of

M = Decimal(1_000_000)


def test_openai_chat_usage_with_cached_tokens():
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 200},
        "completion_tokens_details": {"reasoning_tokens": 100},  # inside completion_tokens already
    }
    cost = cost_of("openai", "gpt-4o-mini", "chat", usage)
    expected = (1000 * Decimal("0.15") + 200 * Decimal("0.075") + 300 * Decimal("0.60")) / M
    assert cost.amount == expected
    assert cost.priced and not cost.estimated and cost.missing is None
    assert cost.price_book_version == "2026-12-03.1"
    assert [item.what for item in cost.breakdown] == ["input tokens", "cached input tokens", "output tokens"]
    assert cost.micro_usd == 345  # 150 + 15 + 180 micro-dollars
    assert cost.to_dict()["amount_usd"] == str(expected)


def test_micro_usd_rounds_up_once():
    cost = cost_of("openai", "gpt-4o-mini", "chat", {"prompt_tokens": 1, "completion_tokens": 0})
    assert cost.amount == Decimal("0.15") / M
    assert cost.micro_usd == 1


def test_batch_tier_and_its_cache_policies():
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 400}}
    # OpenAI gpt-4o family: batch halves everything, cached tokens pay the batch input price
    openai = cost_of("openai", "gpt-4o", "chat", usage, tier="batch")
    assert openai.amount == (600 * Decimal("1.25") + 400 * Decimal("1.25") + 100 * Decimal("5.00")) / M
    # gpt-5 family: batch-cached = half the cached price (stacking)
    gpt5 = cost_of("openai", "gpt-5-mini", "chat", usage, tier="batch")
    assert gpt5.amount == (600 * Decimal("0.125") + 400 * Decimal("0.0125") + 100 * Decimal("1.00")) / M
    # Gemini: cached tokens keep the non-batch cached price
    gemini = cost_of("gemini", "gemini-2.5-flash", "chat", usage, tier="batch")
    assert gemini.amount == (600 * Decimal("0.15") + 400 * Decimal("0.03") + 100 * Decimal("1.25")) / M
    # a provider without a batch tier in the book: realtime prices, said so
    stability = cost_of("stability", "stable-image-core", "image", {}, {"n": 2}, tier="batch")
    assert stability.amount == Decimal("0.06")
    assert any("no batch tier" in n for n in stability.notes)


def test_anthropic_native_usage_with_cache_writes_and_reads():
    usage = {
        "input_tokens": 100,  # uncached only
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 2000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500},
        "output_tokens": 50,
    }
    cost = cost_of("anthropic", "claude-sonnet-4-5-20250929", "chat", usage)
    expected = (
        100 * Decimal("3.00")
        + 1000 * Decimal("0.30")
        + 1500 * Decimal("3.75")
        + 500 * Decimal("6.00")
        + 50 * Decimal("15.00")
    ) / M
    assert cost.amount == expected
    assert cost.priced_as == "anthropic/claude-sonnet-4-5"
    # on the batch tier Anthropic halves cache reads and writes too
    assert cost_of("anthropic", "claude-sonnet-4-5", "chat", usage, tier="batch").amount == expected / 2


def test_mmq_shaped_anthropic_usage_prices_the_whole_prompt():
    # mmq's adapters report OpenAI-shaped usage: prompt_tokens is the whole prompt
    usage = {"prompt_tokens": 1100, "completion_tokens": 50, "prompt_tokens_details": {"cached_tokens": 1000}}
    cost = cost_of("vertex-anthropic", "claude-haiku-4-5@20251001", "chat", usage)
    assert cost.amount == (100 * Decimal(1) + 1000 * Decimal("0.10") + 50 * Decimal(5)) / M
    assert "priced as anthropic/claude-haiku-4-5" in cost.notes


def test_long_context_tier():
    usage = {"prompt_tokens": 250_000, "completion_tokens": 1000}
    cost = cost_of("gemini", "gemini-2.5-pro", "chat", usage)
    assert cost.amount == (250_000 * Decimal("2.50") + 1000 * Decimal(15)) / M
    assert any("long-context" in n for n in cost.notes)
    short = cost_of("gemini", "gemini-2.5-pro", "chat", {"prompt_tokens": 1000, "completion_tokens": 1000})
    assert short.amount == (1000 * Decimal("1.25") + 1000 * Decimal(10)) / M


def test_gemini_audio_input_has_its_own_rate():
    usage = {"prompt_tokens": 1000, "completion_tokens": 0, "prompt_tokens_details": {"audio_tokens": 800}}
    cost = cost_of("gemini", "gemini-2.5-flash", "chat", usage)
    assert cost.amount == (200 * Decimal("0.30") + 800 * Decimal("1.00")) / M


def test_chat_without_usage_is_estimated_by_the_rules():
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x", "detail": "high"}}]}
        ],
    }
    cost = cost_of("openai", "gpt-4o", "chat", None, body, media=MediaFacts(images=((1024, 1024),)))
    assert cost.estimated
    assert cost.breakdown[0].quantity == 765 + 3 + 3  # the image, one message, the reply
    assert cost.amount == Decimal(771) * Decimal("2.50") / M


def test_gpt_image_usage_tokens():
    usage = {
        "input_tokens": 50,
        "input_tokens_details": {"text_tokens": 40, "image_tokens": 10},
        "output_tokens": 4160,
        "total_tokens": 4210,
    }
    cost = cost_of("openai", "gpt-image-1", "image", usage, {"size": "1024x1024", "quality": "high"})
    assert cost.amount == (40 * Decimal(5) + 10 * Decimal(10) + 4160 * Decimal(40)) / M
    assert not cost.estimated


def test_per_image_prices_from_the_request_when_no_usage():
    hd = cost_of("openai", "dall-e-3", "image", {}, {"size": "1792x1024", "quality": "hd", "n": 1})
    assert hd.amount == Decimal("0.120")
    standard = cost_of("openai", "dall-e-3", "image", None, {"prompt": "x"})  # defaults: 1024x1024 standard
    assert standard.amount == Decimal("0.040")
    # Stability: per image, n images (usage may say how many were actually made)
    assert cost_of("stability", "ultra", "image", {}, {"n": 3}).amount == Decimal("0.24")
    assert cost_of("stability", "ultra", "image", {"images": 2}, {"n": 3}).amount == Decimal("0.16")
    assert cost_of("gemini", "imagen-4.0-generate-001", "image", {}, {"n": 2}).amount == Decimal("0.08")
    # Gemini image models: image-out tokens per image
    flash = cost_of("gemini", "gemini-2.5-flash-image", "image", {}, {"prompt": "abcd"})
    assert flash.amount == (1290 * Decimal(30) + 1 * Decimal("0.30")) / M


def test_quality_auto_without_usage_is_priced_at_the_dearest_option_and_marked_estimated():
    cost = cost_of("openai", "gpt-image-1", "image", {}, {"size": "1024x1536"})
    assert cost.estimated
    assert cost.breakdown[0].quantity == 6240


def test_unpriced_size_or_quality_is_missing_not_guessed():
    cost = cost_of("openai", "dall-e-3", "image", {}, {"size": "1024x1024", "quality": "ultra"})
    assert cost.amount == 0
    assert cost.missing == "quality 'ultra' is not priced at 1024x1024 (openai/dall-e-3)"
    # gpt-image-1.5 has token rates only: from usage it is priced, from the request alone it is not
    assert cost_of("openai", "gpt-image-1.5", "image", {"output_tokens": 1000}, {}).amount == Decimal("0.032")
    assert cost_of("openai", "gpt-image-1.5", "image", {}, {"size": "1024x1024"}).missing is not None


def test_speech_per_character_and_per_audio():
    text = "Welcome to the spring catalog."
    assert cost_of("openai", "tts-1", "speech", None, {"input": text}).amount == len(text) * Decimal(15) / M
    assert cost_of("openai", "tts-1-hd", "speech", {"characters": 1000}, {}).amount == Decimal("0.03")
    # ElevenLabs through an OpenAI model name: the adapter's model, per character
    eleven = cost_of("elevenlabs", "tts-1", "speech", None, {"input": "x" * 1000})
    assert eleven.amount == Decimal("0.1") and eleven.priced_as == "elevenlabs/eleven_multilingual_v2"
    # gpt-4o-mini-tts: text tokens + audio out, from the measured seconds of the result
    measured = cost_of("openai", "gpt-4o-mini-tts", "speech", {"seconds": 60}, {"input": "x" * 400})
    assert measured.amount == (100 * Decimal("0.60")) / M + Decimal("0.015")
    assert measured.estimated  # the text tokens are estimated
    guessed = cost_of("openai", "gpt-4o-mini-tts", "speech", None, {"input": "x" * 900})
    assert guessed.breakdown[-1].quantity == 60  # 900 characters at 15 per second


def test_transcription_by_duration_tokens_or_measured_audio():
    whisper = cost_of("openai", "whisper-1", "transcription", {"type": "duration", "seconds": 90})
    assert whisper.amount == Decimal("0.009")
    tokens = {
        "type": "tokens",
        "input_tokens": 1000,
        "input_token_details": {"audio_tokens": 900, "text_tokens": 100},
        "output_tokens": 200,
    }
    gpt4o = cost_of("openai", "gpt-4o-transcribe", "transcription", tokens)
    assert gpt4o.amount == (900 * Decimal("2.50") + 100 * Decimal("2.50") + 200 * Decimal(10)) / M
    # no usage: the seconds measured from the audio itself
    measured = cost_of("deepgram", "whisper-1", "transcription", None, {}, media=MediaFacts(audio_seconds=30))
    assert measured.amount == 30 * Decimal("0.0077") / 60
    # Deepgram multichannel is billed per channel
    stereo = cost_of("deepgram", "nova-3", "transcription", {"seconds": 30, "channels": 2})
    assert stereo.amount == 60 * Decimal("0.0077") / 60
    # Groq: per hour, 10 s minimum per request
    groq = cost_of("groq", "whisper-large-v3-turbo", "translation", {"type": "duration", "seconds": 3})
    assert groq.amount == 10 * Decimal("0.04") / 3600
    assert groq.micro_usd == 112
    # nothing to go by: not priced, said why
    unknown = cost_of("openai", "whisper-1", "transcription", None, {})
    assert unknown.amount == 0 and unknown.missing == "audio duration unknown (openai/whisper-1)"


def test_garbage_usage_never_raises():
    garbage = [{"prompt_tokens": "many"}, {"prompt_tokens": -5, "completion_tokens": None}, [], "x", 7]
    garbage += [{"prompt_tokens": float("inf")}, {"prompt_tokens": float("nan"), "completion_tokens": 1e300}]
    for usage in garbage:
        cost = cost_of("openai", "gpt-4o-mini", "chat", usage, {"messages": "nope"})  # type: ignore[arg-type]
        assert cost.amount >= 0
    assert cost_of("openai", "gpt-4o-mini", "no-such-kind", {}).missing is not None
    nan = {"type": "duration", "seconds": float("nan")}
    assert (
        cost_of("openai", "whisper-1", "transcription", nan).missing
        == "audio duration unknown (openai/whisper-1)"
    )
    assert cost_of("openai", "", "chat", {}).missing == "no price for openai/"


def test_kinds_without_a_batch_api_are_priced_realtime_on_the_batch_tier():
    whisper = cost_of("openai", "whisper-1", "transcription", {"seconds": 60}, tier="batch")
    assert whisper.amount == Decimal("0.006") and any("no batch tier" in n for n in whisper.notes)
    imagen = cost_of("gemini", "imagen-4.0-generate-001", "image", {}, {}, tier="batch")
    assert imagen.amount == Decimal("0.04")
    usage = {"output_tokens": 1290}
    flash_image = cost_of("gemini", "gemini-2.5-flash-image", "image", usage, {}, tier="batch")
    assert flash_image.amount == 1290 * Decimal(15) / M
    groq = cost_of("groq", "whisper-large-v3", "transcription", {"seconds": 3600}, tier="batch")
    assert groq.amount == Decimal("0.0555")
