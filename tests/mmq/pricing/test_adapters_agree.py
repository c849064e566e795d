"""The price book's aliases mirror the adapters' model mappings (the book lives in the core and cannot
import the worker, so this test holds the two together, as the catalog test does for providers)."""

from __future__ import annotations

from mmq.pricing import default_book
from worker.providers import anthropic, deepgram, elevenlabs


def test_elevenlabs_and_deepgram_aliases_follow_the_adapters():
    book = default_book()
    for provider, models in (("elevenlabs", elevenlabs.MODELS), ("deepgram", deepgram.MODELS)):
        assert book.providers[provider].aliases == models, provider
        for openai_name, native in models.items():
            assert book.find(provider, openai_name, "speech" if provider == "elevenlabs" else "transcription")
            assert native in book.providers[provider].models


def test_the_anthropic_output_bound_is_what_the_adapter_sends():
    assert default_book().providers["anthropic"].default_max_tokens == anthropic.DEFAULT_MAX_TOKENS[""]
