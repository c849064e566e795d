"""One spelling per meaning (producer/cli/flags.py): --out, --files, --format, --watch on every command
that starts jobs, --max-bytes on caption as elsewhere; old spellings still work and say what to use;
every option has help; `mmq --version`."""

from __future__ import annotations

import argparse

import pytest

from producer.cli import build_parser, main
from producer.cli.flags import Deprecated
from producer.cli.options import batch_options


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def _parsers(p: argparse.ArgumentParser, path: str = "mmq"):
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_and_argument_has_help():
    missing = [
        f"{path}: {'/'.join(a.option_strings) or a.dest}"
        for path, p in _parsers(build_parser())
        for a in p._actions
        if not isinstance(a, (argparse._SubParsersAction, Deprecated)) and not a.help
    ]
    assert missing == []


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("mmq ")


def test_results_takes_out_and_the_old_output_with_a_note(capsys):
    assert parse("results", "batch_x", "--out", "a.jsonl").out == "a.jsonl"
    assert capsys.readouterr().err == ""
    for old in ("-o", "--output"):
        assert parse("results", "batch_x", old, "b.jsonl").out == "b.jsonl"
        assert "-o/--output is deprecated; use --out" in capsys.readouterr().err


def test_files_is_a_folder_everywhere_transcribe_writes_formats_with_write(capsys):
    assert parse("results", "batch_x", "--out", "o.jsonl", "--files", "media/").files == "media/"
    assert parse("transcribe", "rec", "--write", "srt,txt").write == "srt,txt"
    assert capsys.readouterr().err == ""
    assert parse("transcribe", "rec", "--files", "srt").write == "srt"  # the old spelling
    assert "--files is deprecated; use --write" in capsys.readouterr().err


def test_format_is_a_result_format_template_rows_have_their_own_flag(capsys):
    assert parse("transcribe", "rec", "--format", "srt").format == "srt"
    assert parse("speak", "lines.txt", "--format", "wav").format == "wav"
    assert parse("template", "run", "t", "rows.txt", "--rows-format", "csv").rows_format == "csv"
    assert capsys.readouterr().err == ""
    assert parse("template", "run", "t", "rows.txt", "--format", "jsonl").rows_format == "jsonl"
    assert "--format is deprecated; use --rows-format" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["submit", "in.jsonl"], ["retry-failed", "batch_x"], ["template", "run", "t", "rows.csv"]],
)
def test_watch_and_no_watch_where_jobs_start(command):
    assert parse(*command, "--watch").watch is True
    assert parse(*command, "--no-watch").watch is False
    assert parse(*command).watch is False  # these return at once by default (scripts)
    assert parse("caption", "photos").watch is True  # workflows wait, then write their outputs
    assert parse("caption", "photos", "--no-watch").watch is False


def test_caption_takes_max_bytes_as_the_other_workflows():
    args = parse("caption", "photos", "--max-side", "1024", "--max-bytes", "500000")
    assert batch_options(args, None)["media"] == {"max_side": 1024, "max_bytes": 500000}
    for command in (["submit", "x.jsonl"], ["template", "run", "t", "r.csv"]):  # the commands sending images
        assert parse(*command, "--max-bytes", "9").max_bytes == 9


def test_the_old_spelling_is_hidden_from_help():
    text = build_parser()._subparsers._group_actions[0].choices["results"].format_help()
    assert "--out" in text and "--output" not in text
