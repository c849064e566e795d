"""The price book: the shipped file, its coverage, the look-up rules, user files and per-target overrides,
and bad files refused with the file, the line and the reason."""

from __future__ import annotations

import json
import textwrap
from datetime import date
from decimal import Decimal

import pytest

from mmq.pricing import PriceBookError, book_from_env, cost_of, default_book, load_book
from mmq.pricing.book import ENV_VAR

# what the README, the examples and the provider adapters' defaults use, per provider and kind
COVERED = [
    ("openai", "gpt-4o-mini", "chat"),
    ("openai", "gpt-4o", "chat"),
    ("openai", "gpt-image-1", "image"),
    ("openai", "dall-e-3", "image"),
    ("openai", "tts-1", "speech"),
    ("openai", "tts-1-hd", "speech"),
    ("openai", "gpt-4o-mini-tts", "speech"),
    ("openai", "whisper-1", "transcription"),
    ("openai", "whisper-1", "translation"),
    ("openai", "gpt-4o-transcribe", "transcription"),
    ("azure-openai", "gpt-4o-mini", "chat"),
    ("azure-openai", "whisper", "transcription"),
    ("azure-openai", "tts", "speech"),
    ("anthropic", "claude-sonnet-4-5", "chat"),
    ("anthropic", "claude-haiku-4-5-20251001", "chat"),
    ("vertex-anthropic", "claude-sonnet-4-5@20250929", "chat"),
    ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", "chat"),
    ("bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0", "chat"),
    ("bedrock", "stability.sd3-5-large-v1:0", "image"),
    ("bedrock", "amazon.nova-canvas-v1:0", "image"),
    ("gemini", "gemini-2.5-flash", "chat"),
    ("gemini", "imagen-4.0-generate-001", "image"),
    ("vertex", "gemini-2.5-flash", "chat"),
    ("vertex", "imagen-4.0-generate-001", "image"),
    ("groq", "whisper-large-v3", "transcription"),
    ("groq", "whisper-large-v3-turbo", "translation"),
    ("groq", "openai/gpt-oss-120b", "chat"),
    ("stability", "stable-image-core", "image"),
    ("stability", "ultra", "image"),
    ("stability", "sd3.5-large", "image"),
    ("elevenlabs", "tts-1", "speech"),
    ("elevenlabs", "eleven_flash_v2_5", "speech"),
    ("deepgram", "nova-3", "transcription"),
    ("deepgram", "whisper-1", "transcription"),
]


def test_the_shipped_book_loads_and_is_versioned():
    book = default_book()
    assert book.version == "2026-12-03.1"
    for provider in ("openai", "azure-openai", "anthropic", "bedrock", "gemini", "vertex", "groq"):
        assert provider in book.providers
    for provider in ("stability", "elevenlabs", "deepgram", "vertex-anthropic"):
        assert provider in book.providers


@pytest.mark.parametrize(("provider", "model", "kind"), COVERED)
def test_coverage(provider, model, kind):
    match = default_book().find(provider, model, kind)
    assert match is not None, f"no price for {provider}/{model} ({kind})"
    block = "transcription" if kind == "translation" else kind
    assert match.source(block) and match.effective_from(block) <= date(2026, 12, 3)


def test_every_shipped_model_has_a_date_and_a_source():
    for pname, provider in default_book().providers.items():
        for mname, entry in provider.models.items():
            assert entry.source.strip(), f"{pname}/{mname}"
            assert entry.effective_from <= date(2026, 12, 3), f"{pname}/{mname}"


def test_lookup_rules():
    book = default_book()
    # dated snapshots fall back to their family ...
    assert book.find("openai", "gpt-4o-2024-08-06", "chat").priced_as == "openai/gpt-4o"
    # ... unless the family excludes them (the first gpt-4o snapshot had other prices)
    assert book.find("openai", "gpt-4o-2024-05-13", "chat") is None
    # adapters' name mappings are aliases; inheritance reaches the parent provider's models
    assert book.find("elevenlabs", "tts-1", "speech").priced_as == "elevenlabs/eleven_multilingual_v2"
    assert book.find("deepgram", "whisper-1", "transcription").priced_as == "deepgram/nova-3"
    assert book.find("azure-openai", "whisper", "transcription").priced_as == "openai/whisper-1"
    # Bedrock ids: region prefix, vendor and version dropped; Bedrock's own entry wins over Anthropic's
    sonnet = book.find("bedrock", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "chat")
    assert sonnet.priced_as == "bedrock/claude-sonnet-4-5"
    assert sonnet.chat.long_context is not None
    arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-canvas-v1:0"
    assert book.find("bedrock", arn, "image").priced_as == "bedrock/amazon.nova-canvas-v1:0"
    assert book.find("gemini", "models/gemini-2.5-flash", "chat").priced_as == "gemini/gemini-2.5-flash"
    # a model priced for another kind is not priced for this one
    assert book.find("openai", "gpt-4o", "speech") is None
    assert book.no_price("openai", "gpt-4o", "speech") == "no price for openai/gpt-4o (speech)"


def test_unknown_models_get_no_price_never_a_guess():
    book = default_book()
    for provider, model, kind in [
        ("openai", "gpt-9-ears", "chat"),
        ("groq", "meta-llama/llama-4-scout-17b-16e-instruct", "chat"),  # no price in pricing.md
        ("bedrock", "amazon.titan-image-generator-v2:0", "image"),  # sources disagree
        ("openai-compatible", "Qwen2.5-VL-7B", "chat"),  # a self-hosted model: yours to price
        ("azure-openai", "my-gpt4o-deployment", "chat"),  # a deployment name: map it yourself
        ("nosuchprovider", "x", "chat"),
    ]:
        assert book.find(provider, model, kind) is None
        assert book.no_price(provider, model, kind) == f"no price for {provider}/{model}"
    cost = cost_of("openai", "gpt-9-ears", "chat", {"prompt_tokens": 10, "completion_tokens": 5})
    assert cost.amount == 0 and cost.missing == "no price for openai/gpt-9-ears" and not cost.priced


# ------------------------------------------------------------------------------------ user files
def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_a_user_file_overrides_one_model_and_extends_the_book(tmp_path):
    path = _write(
        tmp_path,
        "prices.yaml",
        """
        version: acme-2027-01
        providers:
          openai:
            models:
              gpt-4o-mini:
                effective_from: 2027-01-01
                source: our negotiated contract
                chat: {input: 0.10, output: 0.40}
          openai-compatible:
            models:
              Qwen2.5-VL-7B:
                effective_from: 2026-01-01
                source: our GPU cost per token
                chat: {input: 0.01, output: 0.02}
          azure-openai:
            aliases: {my-gpt4o-deployment: gpt-4o}
        """,
    )
    book = load_book(path)
    assert book.version == "2026-12-03.1+acme-2027-01"
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}
    overridden = cost_of("openai", "gpt-4o-mini", "chat", usage, book=book, at=date(2027, 2, 1))
    assert overridden.amount == Decimal("0.50")
    assert overridden.price_book_version == "2026-12-03.1+acme-2027-01"
    # the other models are the shipped ones
    assert cost_of("openai", "gpt-4o", "chat", usage, book=book).amount == Decimal("12.50")
    assert cost_of("openai-compatible", "Qwen2.5-VL-7B", "chat", usage, book=book).amount == Decimal("0.03")
    assert cost_of("azure-openai", "my-gpt4o-deployment", "chat", usage, book=book).amount == Decimal("12.50")
    # the override's prices start on its effective_from: before that day the model has no price
    assert book.find("openai", "gpt-4o-mini", "chat", at=date(2026, 12, 31)) is None
    # the shipped book itself is untouched
    assert cost_of("openai", "gpt-4o-mini", "chat", usage).amount == Decimal("0.75")


def test_history_keeps_older_and_announced_prices(tmp_path):
    path = _write(
        tmp_path,
        "p.yaml",
        """
        providers:
          openai:
            models:
              whisper-1:
                effective_from: 2027-03-01
                source: announced increase
                transcription: {per_minute: 0.012}
                history:
                  - effective_from: 2023-03-01
                    source: list price
                    transcription: {per_minute: 0.006}
        """,
    )
    book = load_book(path)
    usage = {"type": "duration", "seconds": 60}
    assert cost_of(
        "openai", "whisper-1", "transcription", usage, book=book, at=date(2027, 2, 1)
    ).amount == Decimal("0.006")
    assert cost_of(
        "openai", "whisper-1", "transcription", usage, book=book, at=date(2027, 3, 1)
    ).amount == Decimal("0.012")
    assert book.version.startswith("2026-12-03.1+p.yaml@")


def test_json_user_files_work_too(tmp_path):
    doc = {
        "providers": {
            "deepgram": {
                "models": {
                    "nova-3": {
                        "effective_from": "2026-01-01",
                        "source": "growth plan",
                        "transcription": {"per_minute": 0.0036},
                    }
                }
            }
        }
    }
    book = load_book(_write(tmp_path, "p.json", json.dumps(doc, indent=2)))
    cost = cost_of("deepgram", "nova-3", "transcription", {"type": "duration", "seconds": 120}, book=book)
    assert cost.amount == Decimal("0.0072")


def test_per_target_overrides_in_the_same_shape():
    book = default_book().with_overrides(
        {"providers": {"azure-openai": {"aliases": {"prod-4o": "gpt-4o"}, "batch": {"multiplier": 0.5}}}}
    )
    assert book.version.startswith("2026-12-03.1+override@")
    assert book.find("azure-openai", "prod-4o", "chat").priced_as == "openai/gpt-4o"
    with pytest.raises(PriceBookError) as caught:
        default_book().with_overrides(
            {"providers": {"openai": {"batch": {"multiplier": 2}}}}, label="target oa"
        )
    assert "target oa: providers.openai.batch.multiplier: Input should be less than or equal to 1" in str(
        caught.value
    )


def test_mmq_prices_file_from_the_environment(tmp_path):
    path = _write(tmp_path, "p.yaml", "version: env-1\nproviders: {}\n")
    assert book_from_env({ENV_VAR: str(path)}).version == "2026-12-03.1+env-1"
    assert book_from_env({}).version == "2026-12-03.1"


# -------------------------------------------------------------------------------------- bad files
BAD_FILES = [
    (
        "syntax.yaml",
        """
        providers:
          openai:
            models:
              gpt-x: {chat: {input: 1, output: 2}
        """,
        5,
        # the parser's wording differs between libyaml and pure-Python PyYAML; the lines do not
        "(while parsing a flow mapping that starts on line 4)",
    ),
    (
        "negative.yaml",
        """
        providers:
          openai:
            models:
              my-model:
                effective_from: 2026-01-01
                source: me
                chat:
                  input: -1
                  output: 2
        """,
        8,
        "providers.openai.models.my-model.chat.input: Input should be greater than or equal to 0",
    ),
    (
        "typo.yaml",
        """
        providers:
          openai:
            models:
              my-model:
                effective_from: 2026-01-01
                source: me
                chat: {input: 1, output: 2, cahced_input: 0.5}
        """,
        7,
        "providers.openai.models.my-model.chat.cahced_input: Extra inputs are not permitted",
    ),
    (
        "nosource.yaml",
        """
        providers:
          openai:
            models:
              my-model:
                effective_from: 2026-01-01
                chat: {input: 1, output: 2}
        """,
        4,
        "providers.openai.models.my-model.source: required field missing",
    ),
    (
        "noprices.yaml",
        """
        providers:
          openai:
            models:
              my-model: {effective_from: 2026-01-01, source: me}
        """,
        4,
        "providers.openai.models.my-model: a model needs at least one of chat, image, speech, transcription",
    ),
    (
        "rule.yaml",
        """
        providers:
          openai:
            models:
              my-model:
                effective_from: 2026-01-01
                source: me
                chat: {input: 1, output: 2}
                vision: {rule: openai_tile, base: 85}
        """,
        8,
        "providers.openai.models.my-model.vision.per_tile: required field missing",
    ),
    (
        "duplicate.yaml",
        """
        providers:
          openai:
            models:
              my-model: {effective_from: 2026-01-01, source: me, chat: {input: 1, output: 2}}
              my-model: {effective_from: 2026-01-01, source: me, chat: {input: 3, output: 4}}
        """,
        5,
        "duplicate key 'my-model' (first on line 4)",
    ),
    (
        "inherits.yaml",
        """
        providers:
          my-cloud:
            inherits: opneai
        """,
        3,
        "providers.my-cloud.inherits: inherits unknown provider 'opneai'",
    ),
    (
        "alias.yaml",
        """
        providers:
          azure-openai:
            aliases:
              prod: gpt-4o-mni
        """,
        4,
        "alias 'prod' -> 'gpt-4o-mni': no model 'gpt-4o-mni' in azure-openai / openai",
    ),
    (
        "size.yaml",
        """
        providers:
          openai:
            models:
              img:
                effective_from: 2026-01-01
                source: me
                image:
                  per_image: {"1024 by 1024": 0.04}
        """,
        7,
        "size '1024 by 1024' must look like 1024x1024",
    ),
    (
        "syntax.json",
        """
        {"providers": {"openai": {"models": {
          "my-model": {"effective_from": "2026-01-01", "source": "me",
                       "chat": {"input": 1, "output": 2,}}}}}}
        """,
        3,
        "invalid JSON",
    ),
    (
        "schema.json",
        """
        {"providers": {"openai": {"models": {
          "my-model": {"effective_from": "2026-01-01", "source": "me",
                       "chat": {"input": "cheap", "output": 2}}}}}}
        """,
        3,
        "providers.openai.models.my-model.chat.input: Input should be a valid decimal",
    ),
    ("empty.yaml", "\n", None, "the file is empty"),
    ("list.yaml", "- a\n- b\n", 1, "a price file is a mapping"),
]


@pytest.mark.parametrize(("name", "text", "line", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_price_files_are_refused_with_the_file_the_line_and_the_reason(
    tmp_path, name, text, line, reason
):
    path = _write(tmp_path, name, text)
    with pytest.raises(PriceBookError) as caught:
        load_book(path)
    error = caught.value
    assert error.source == str(path)
    message = str(error)
    assert message.startswith(f"{path}: ")
    assert reason in message
    if line is not None:
        assert any(p.line == line for p in error.problems), message
        assert f"line {line}: " in message


def test_a_missing_file_is_refused_with_its_name(tmp_path):
    with pytest.raises(PriceBookError, match="cannot read the file"):
        load_book(tmp_path / "nope.yaml")


def test_model_names_with_dots_are_shown_quoted_in_entry_paths(tmp_path):
    path = _write(
        tmp_path,
        "dots.yaml",
        """
        providers:
          openai:
            models:
              gpt-4.1:
                effective_from: 2026-01-01
                source: me
                chat: {input: 1}
        """,
    )
    with pytest.raises(PriceBookError) as caught:
        load_book(path)
    assert 'line 7: providers.openai.models["gpt-4.1"].chat.output: required field missing' in str(
        caught.value
    )
