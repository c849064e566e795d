"""A batch's options are one model whatever the entry point: JSON fields, query parameters and Python
keywords give the same options, and a bad option gets the same message naming it everywhere."""

from __future__ import annotations

import pytest

from mmq.batch_options import BatchOptions
from mmq.contract import CacheLevel, Priority
from producer.options import LineError, parse_options

CONFIG = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai"}, {"provider": "groq"}]}


def test_every_spelling_of_an_option_gives_the_same_options():
    as_json = parse_options(
        {
            "config": CONFIG,
            "cache": {"level": "pixels"},
            "media": {"max_side": 512},
            "priority": "high",
            "deadline": 2e9,
            "metadata": {"night": "1"},
        }
    )
    as_query = parse_options(
        BatchOptions.from_query(
            {
                "config": '{"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai"}, '
                '{"provider": "groq"}]}',
                "cache": '{"level": "pixels"}',
                "media": '{"max_side": 512}',
                "priority": "high",
                "deadline": "2000000000",
                "night": "1",
                "version": "v2",
            },
            reserved=("version",),
        )
    )
    as_keywords = parse_options(
        config=CONFIG,
        cache={"level": "pixels"},
        media={"max_side": 512},
        priority=Priority.high,
        deadline=2e9,
        metadata={"night": "1"},
    )
    assert as_json == as_query == as_keywords
    assert as_json.cache.level is CacheLevel.pixels and as_json.metadata == {"night": "1"}
    assert parse_options(cache="false").cache.enabled is False  # a query's false, as JSON's false


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"config": "{not json"}, "routing config"),
        ({"media": {"max_side": -1}}, "media options"),
        ({"cache": {"level": "nope"}}, "cache options"),
        ({"priority": "urgent"}, "priority must be one of"),
        ({"not_before": "tomorrow"}, "not_before: epoch seconds expected"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_option_is_refused_naming_it(fields, message):
    with pytest.raises(LineError, match=message):
        parse_options(fields)
