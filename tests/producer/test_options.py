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


def test_a_batch_condition_on_non_text_metadata_is_refused_and_a_single_jobs_is_not():
    """A batch's metadata is text, so a condition comparing it to a boolean can never match: refused at
    submit. A job outside any batch keeps JSON metadata, where the same condition can match."""
    from mmq.batch_options import BatchOptions
    from mmq.settings import Settings
    from producer.options import LineError, check_options

    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [{"query": {"metadata.rush": {"$eq": True}}, "then": "fast"}],
            "default": "slow",
        },
        "targets": [{"name": "fast", "provider": "openai"}, {"name": "slow", "provider": "openai"}],
    }
    options = BatchOptions(config=config)
    with pytest.raises(LineError, match="can never match"):
        check_options(options, Settings())
    assert check_options(options, Settings(), single_job=True).config is not None
