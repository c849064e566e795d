"""The flags several commands share (producer/cli/options.py): cache flags are passed only when given;
`--not-before 01:00 --deadline 07:00`: clock times mean the next such local time."""

from __future__ import annotations

import datetime as dt

import pytest

from producer.cli import build_parser
from producer.cli.options import cache_option, parse_when, schedule_options


def local(y, mo, d, h, mi=0) -> float:
    return dt.datetime(y, mo, d, h, mi).astimezone().timestamp()


def test_a_clock_time_is_its_next_occurrence_after_now_or_after_the_window_start():
    evening = local(2026, 11, 21, 22, 30)
    assert parse_when("01:00", after=evening) == local(2026, 11, 22, 1)  # tonight, past midnight
    assert parse_when("23:00", after=evening) == local(2026, 11, 21, 23)  # later today
    assert parse_when("22:30", after=evening) == local(2026, 11, 22, 22, 30)  # "now" is already past
    opens = parse_when("01:00", after=evening)
    assert parse_when("07:00", after=opens) == local(2026, 11, 22, 7)  # the deadline after the opening


def test_iso_times_and_epoch_seconds_are_taken_as_given():
    assert parse_when("1800000000") == 1800000000.0
    assert parse_when("2026-11-22T01:00:00+00:00") == dt.datetime(2026, 11, 22, 1, tzinfo=dt.UTC).timestamp()
    assert parse_when("2026-11-22T01:00") == local(2026, 11, 22, 1)


def test_a_bad_time_stops_the_command_with_its_text():
    with pytest.raises(SystemExit, match="not a time"):
        parse_when("soon")


def test_submit_flags_become_submit_batch_arguments():
    args = build_parser().parse_args(
        [
            "submit",
            "f.jsonl",
            "--priority",
            "low",
            "--not-before",
            "01:00",
            "--deadline",
            "07:00",
            "--webhook",
            "http://h/x",
        ]
    )
    got = schedule_options(args)
    assert got["priority"] == "low" and got["webhook_url"] == "http://h/x"
    start, end = (dt.datetime.fromtimestamp(got[k]).astimezone() for k in ("not_before", "deadline"))
    assert (start.hour, end.hour) == (1, 7) and start < end < start + dt.timedelta(hours=8)


# ------------------------------------------------------------------------ cache flags, workflow defaults
def _cache(*argv: str):
    return cache_option(build_parser().parse_args(["caption", "photos", *argv]))


def test_cache_flags_are_passed_only_when_given():
    assert _cache() is None
    assert _cache("--no-cache") is False
    assert _cache("--cache-level", "perceptual", "--cache-threshold", "6", "--cache-ttl", "60") == {
        "level": "perceptual",
        "threshold": 6,
        "ttl_s": 60,
    }
    assert _cache("--refresh-cache") == {"refresh": True}
    with pytest.raises(SystemExit):
        _cache("--no-cache", "--refresh-cache")
    assert cache_option(build_parser().parse_args(["submit", "x.jsonl", "--cache-level", "pixels"])) == {
        "level": "pixels"
    }


def test_workflow_commands_watch_by_default():
    args = build_parser().parse_args(["transcribe", "rec", "--files", "srt"])
    assert args.watch and args.model == "whisper-1" and args.out == "mmq-transcripts"
    assert not build_parser().parse_args(["speak", "t.txt", "--no-watch"]).watch
    assert build_parser().parse_args(["caption", "--resume", "batch_x"]).source is None
