"""Values JSON cannot carry, and nesting mmq cannot read back, are refused at the door, per line; the
rest of the file runs (issue: NaN/Infinity turned into null and merged two requests' cache entries; a
body nested 200 levels was accepted and unreadable, and one past ~1,000 crashed the parser, losing the
valid lines beside it)."""

from __future__ import annotations

import json

import pytest

from mmq.request_models import MAX_JSON_DEPTH, Kind, check_json_values, parse_request
from producer.jsonl import parse_line

GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _line(body_json: str, custom_id: str = "x") -> bytes:
    head = f'{{"custom_id": "{custom_id}", "method": "POST", "url": "/v1/chat/completions", "body": '
    return (head + body_json + "}").encode()


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_naming_the_field(bad):
    line = parse_line(_line(json.dumps(GOOD)[:-1] + f', "temperature": {bad}}}'), 3)
    with pytest.raises(ValueError, match=r"body\.temperature: .* is not a JSON number"):
        parse_request(Kind.chat, line.body)


def test_nesting_past_the_limit_is_refused_and_a_shallow_request_is_not():
    deep = {"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": {}}
    node = deep["metadata"]
    for _ in range(MAX_JSON_DEPTH):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        check_json_values(deep)
    check_json_values(GOOD)  # no error


def test_a_line_too_deep_for_the_parser_is_a_failed_line_not_a_crash():
    line = parse_line(_line("[" * 5000 + "]" * 5000), 7)
    assert line.error and "nested too deep" in line.error and line.line_no == 7


@pytest.fixture
async def producer(tmp_path):
    from mmq.connections import embedded_redis
    from mmq.settings import Settings
    from mmq.storage import open_storage
    from producer.submit import Producer

    redis = embedded_redis()
    settings = Settings(redis_url=None, storage_url=f"file://{tmp_path / 'store'}")
    yield Producer(redis, open_storage(settings.storage_url), settings)
    await redis.aclose()


async def test_the_rest_of_the_file_runs(producer):
    lines = [
        parse_line(_line(json.dumps(GOOD), "ok-1"), 1),
        parse_line(_line(json.dumps(GOOD)[:-1] + ', "temperature": NaN}', "nan"), 2),
        parse_line(_line("[" * 5000 + "]" * 5000, "deep"), 3),
        parse_line(
            _line(json.dumps({**GOOD, "messages": [{"role": "user", "content": "again"}]}), "ok-2"), 4
        ),
    ]
    batch = await producer.submit_batch(iter(lines), tenant="t")
    assert batch.counts.total == 4 and batch.counts.failed == 2 and batch.counts.queued == 2
