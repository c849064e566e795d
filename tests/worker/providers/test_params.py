"""The parameter-map engine (worker/providers/params.py): rename, transform, default, drop, refusals, and
the rules that decide which row wins. Then the adapters' own tables, read through the engine."""

from __future__ import annotations

from typing import Any

import pytest

from mmq.errors import InvalidJob
from mmq.request_models import Kind
from worker.providers import anthropic, elevenlabs
from worker.providers.bedrock import to_native as bedrock_native
from worker.providers.bedrock.chat import PARAMS as BEDROCK_CHAT
from worker.providers.chat_shape import OPENAI_ONLY_PARAMS
from worker.providers.gemini import to_native as gemini_native
from worker.providers.gemini.chat import PARAMS as GEMINI_CHAT
from worker.providers.params import (
    Param,
    drop,
    given,
    map_params,
    refuse_if,
    rename,
    unsupported,
    validate,
)


# ------------------------------------------------------------------------------------------ the engine
def test_rename_writes_flat_and_dotted_paths() -> None:
    table = {"top_p": rename("generationConfig.topP"), "model": rename("model_id")}
    assert map_params(table, {"top_p": 0.9, "model": "m"}) == {
        "generationConfig": {"topP": 0.9},
        "model_id": "m",
    }


def test_fields_not_in_the_table_are_not_read() -> None:
    assert map_params({"a": rename("x")}, {"a": 1, "b": 2, "c": {"d": 3}}) == {"x": 1}


def test_transform_converts_and_none_leaves_the_field_out() -> None:
    table = {
        "temperature": rename("t", lambda v: min(float(v), 1.0)),
        "user": rename("metadata.user_id", lambda v: str(v) if v else None),
    }
    assert map_params(table, {"temperature": "1.7", "user": 42}) == {"t": 1.0, "metadata": {"user_id": "42"}}
    assert map_params(table, {"temperature": 0.5, "user": ""}) == {"t": 0.5}  # no empty metadata either


def test_absent_field_writes_the_default_and_a_callable_default_reads_the_request() -> None:
    table = {
        "n": rename("count", default=1),
        "max_tokens": rename(
            "max_tokens", default=lambda request: 512 if request["model"] == "small" else 4096
        ),
    }
    assert map_params(table, {"model": "small"}) == {"count": 1, "max_tokens": 512}
    assert map_params(table, {"model": "big", "n": 3}) == {"count": 3, "max_tokens": 4096}
    assert map_params(table, {"model": "big", "n": None, "max_tokens": 7}) == {"count": 1, "max_tokens": 7}


def test_the_first_row_to_write_a_leaf_wins_and_its_default_does_not_overwrite() -> None:
    table = {
        "max_completion_tokens": rename("cfg.maxTokens", int),
        "max_tokens": rename("cfg.maxTokens", int, default=4096),
    }
    assert map_params(table, {"max_completion_tokens": "10", "max_tokens": 20}) == {"cfg": {"maxTokens": 10}}
    assert map_params(table, {"max_tokens": 20}) == {"cfg": {"maxTokens": 20}}
    assert map_params(table, {}) == {"cfg": {"maxTokens": 4096}}
    # a later row's transform is not even run once the leaf is written (a junk legacy value is harmless)
    assert map_params(table, {"max_completion_tokens": 5, "max_tokens": "junk"}) == {"cfg": {"maxTokens": 5}}


def test_a_mapping_merges_into_a_mapping_keys_already_there_winning_and_the_request_is_untouched() -> None:
    table = {"speed": rename("settings.speed", float), "settings": rename("settings")}
    settings = {"speed": 0.5, "stability": 0.3}
    request: dict[str, Any] = {"speed": 1.25, "settings": settings}
    assert map_params(table, request) == {"settings": {"speed": 1.25, "stability": 0.3}}
    assert settings == {"speed": 0.5, "stability": 0.3}
    # and the other way round: the mapping is copied before a later row merges into it
    flipped = {"settings": rename("settings"), "speed": rename("settings.speed", float)}
    assert map_params(flipped, request) == {"settings": {"speed": 0.5, "stability": 0.3}}
    assert settings == {"speed": 0.5, "stability": 0.3}


def test_drop_writes_nothing_and_validate_checks_without_writing() -> None:
    def only_text(fmt: Any) -> None:
        if fmt.get("type") != "text":
            raise InvalidJob(f"response_format {fmt['type']!r} is not supported")

    table = {"seed": drop("no equivalent"), "response_format": validate(only_text)}
    assert map_params(table, {"seed": 3, "response_format": {"type": "text"}}) == {}
    with pytest.raises(InvalidJob, match="'json_object' is not supported"):
        map_params(table, {"response_format": {"type": "json_object"}})


@pytest.mark.parametrize("value", [True, "auto", [{"type": "function"}], {"type": "none"}, 1])
def test_unsupported_refuses_any_meaningful_value_naming_the_field(value: Any) -> None:
    table = {"tools": unsupported("tool calling is not supported here")}
    with pytest.raises(InvalidJob) as info:
        map_params(table, {"tools": value})
    assert str(info.value) == "tools: tool calling is not supported here"


@pytest.mark.parametrize("value", [None, False, 0, "", [], {}])
def test_unsupported_lets_values_that_ask_for_nothing_through(value: Any) -> None:
    assert not given(value)
    assert map_params({"tools": unsupported("no")}, {"tools": value}) == {}


def test_refuse_if_and_required_name_the_field() -> None:
    table = {
        "n": refuse_if(lambda n: (n or 1) > 1, "one choice per request; send n=1"),
        "input": rename("text", required=True),
    }
    assert map_params(table, {"n": 1, "input": "hi"}) == {"text": "hi"}
    with pytest.raises(InvalidJob, match=r"^n: one choice per request; send n=1$"):
        map_params(table, {"n": 2, "input": "hi"})
    with pytest.raises(InvalidJob, match=r"^input: required$"):
        map_params(table, {"n": 1})


def test_several_rows_for_one_field_and_writing_into_a_given_dict() -> None:
    def side(i: int) -> Any:
        return lambda size: int(size.split("x")[i])

    table = {"size": [rename("width", side(0), default=1024), rename("height", side(1), default=1024)]}
    into = {"taskType": "TEXT_IMAGE"}
    out = map_params(table, {"size": "1280x768"}, into=into)
    assert out is into and list(out) == ["taskType", "width", "height"]
    assert out == {"taskType": "TEXT_IMAGE", "width": 1280, "height": 768}
    assert map_params(table, {}) == {"width": 1024, "height": 1024}


def test_a_transform_error_is_the_job_error() -> None:
    def fmt(value: Any) -> str:
        raise InvalidJob(f"output_format {value!r}: writes png only")

    with pytest.raises(InvalidJob, match="output_format 'gif'"):
        map_params({"output_format": rename("output_format", fmt)}, {"output_format": "gif"})


def test_param_is_plain_data() -> None:
    assert rename("x", default=0) == Param("x", None, 0)
    assert unsupported("why").to is None and drop("why").transform is None


# ----------------------------------------------------------------------------- the adapters' tables
def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize("field", OPENAI_ONLY_PARAMS)
def test_gemini_and_bedrock_refuse_every_openai_only_field_by_name(field: str) -> None:
    assert field in GEMINI_CHAT and field in BEDROCK_CHAT
    with pytest.raises(InvalidJob, match=rf"^{field}: not supported by the gemini adapter$"):
        gemini_native(Kind.chat, _chat(**{field: [{"x": 1}]}))
    with pytest.raises(InvalidJob, match=rf"^{field}: not supported by the bedrock adapter$"):
        bedrock_native(Kind.chat, _chat(**{field: [{"x": 1}]}))


def test_chat_tables_map_sampling_to_each_native_place() -> None:
    request = _chat(max_tokens=50, max_completion_tokens=70, temperature=1.5, top_p=0.5, stop="END")
    _, gemini = gemini_native(Kind.chat, request)
    assert gemini["generationConfig"] == {
        "temperature": 1.5,
        "topP": 0.5,
        "maxOutputTokens": 70,
        "stopSequences": ["END"],
    }
    bedrock = bedrock_native(Kind.chat, request).bodies[0]
    assert bedrock["inferenceConfig"] == {
        "maxTokens": 70,
        "temperature": 1.0,  # clamped to Converse's maximum
        "topP": 0.5,
        "stopSequences": ["END"],
    }
    ant = anthropic.to_native(request)
    assert (ant["max_tokens"], ant["temperature"], ant["top_p"], ant["stop_sequences"]) == (
        70,
        1.0,
        0.5,
        ["END"],
    )
    # dropped on purpose: no trace on the wire
    assert "seed" not in bedrock_native(Kind.chat, _chat(seed=7)).bodies[0]


def test_elevenlabs_table_renames_body_and_query_fields() -> None:
    voice, query, body = elevenlabs.to_native(
        {"model": "tts-1", "input": "hello", "voice": "alloy", "speed": 1.1, "enable_logging": False}
    )
    assert voice == elevenlabs.VOICES["alloy"]
    assert query == {"output_format": "mp3_44100_128", "enable_logging": "false"}
    assert body == {"text": "hello", "model_id": "eleven_multilingual_v2", "voice_settings": {"speed": 1.1}}
    with pytest.raises(InvalidJob, match=r"^instructions: "):
        elevenlabs.to_native({"model": "tts-1", "input": "hi", "voice": "alloy", "instructions": "whisper"})
