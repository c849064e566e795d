"""SRT / WebVTT (mmq/subtitles.py): the one writer the worker (Deepgram's srt/vtt answers) and the front
(`mmq transcribe --files srt,vtt`) share; the output is byte for byte what both wrote before."""

from __future__ import annotations

from mmq.subtitles import Cue, cue_text, parse_cues, parse_timestamp, render_srt, render_vtt, timestamp


def test_cues_round_trip_between_srt_and_vtt():
    cues = [Cue(0, 1.5, "hello"), Cue(61.25, 3725.004, "two\nlines --> here")]
    srt = render_srt(cues)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\nhello\n\n2\n00:01:01,250 --> 01:02:05,004\n")
    assert "two\nlines -> here" in srt
    vtt = render_vtt(parse_cues(srt))
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nhello\n\n")
    assert [(c.start, c.end) for c in parse_cues(vtt)] == [(0, 1.5), (61.25, 3725.004)]
    assert parse_cues("WEBVTT\n\nNOTE hi\n\n00:01.000 --> 00:02.500 align:start\nshort form\n")[0] == Cue(
        1.0, 2.5, "short form"
    )


def test_whole_documents_byte_for_byte():
    cues = [(0.0, 0.9, "One two."), (1.2, 1.6, "Three")]
    assert render_srt(cues) == (
        "1\n00:00:00,000 --> 00:00:00,900\nOne two.\n\n2\n00:00:01,200 --> 00:00:01,600\nThree\n\n"
    )
    assert render_vtt(cues) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:00.900\nOne two.\n\n00:00:01.200 --> 00:00:01.600\nThree\n\n"
    )
    assert render_srt([Cue(*c) for c in cues]) == render_srt(cues)  # a Cue is a (start, end, text) tuple
    assert render_srt([]) == "" and render_vtt([]) == "WEBVTT\n\n"


def test_cue_text_never_ends_a_cue_early_or_reads_as_a_timing():
    assert cue_text("a --> b\n\nc") == "a -> b\nc"
    assert cue_text("  \n") == " " and cue_text("") == " "
    assert render_srt([(3723.5, 3724.0, "a --> b\n\nc")]) == "1\n01:02:03,500 --> 01:02:04,000\na -> b\nc\n\n"


def test_timestamps():
    assert timestamp(3723.5, ",") == "01:02:03,500" and timestamp(3723.5, ".") == "01:02:03.500"
    assert timestamp(-2, ",") == "00:00:00,000"  # never negative
    assert timestamp(0.0004, ".") == "00:00:00.000" and timestamp(59.9996, ".") == "00:01:00.000"
    assert parse_timestamp("01:02:03,500") == 3723.5 and parse_timestamp(" 00:01.250 ") == 1.25


def test_blocks_without_a_readable_timing_are_skipped():
    text = "WEBVTT\n\nSTYLE\n::cue {}\n\nxx --> yy\nbad\n\n00:00:01.000 --> 00:00:02.000\nok\n"
    assert parse_cues(text) == [Cue(1.0, 2.0, "ok")]
    assert parse_cues("1\r\n00:00:00,000 --> 00:00:01,000\r\nwindows\r\n") == [Cue(0.0, 1.0, "windows")]
