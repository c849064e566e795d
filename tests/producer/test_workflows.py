"""Workflow builders (folder / CSV / text lines → BatchLines) and writers (batch → CSV, subtitles, files).
The SRT/VTT writer itself is tested in tests/mmq/test_subtitles.py, the commands' flags in
tests/producer/cli/test_options.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from mmq.connections import embedded_redis
from mmq.contract import JobError, JobRecord, JobResult, JobStatus
from mmq.media import parse_data_url
from mmq.records import Records
from mmq.request_models import Kind
from mmq.settings import Settings
from mmq.simulator import encode_speech_wav
from mmq.storage import open_storage
from producer.safe_names import safe_relpath
from producer.submit import Producer
from producer.workflows.caption_csv import caption_lines_from_csv, read_caption_csv
from producer.workflows.inputs import (
    CaptionOptions,
    TranscribeOptions,
    WorkflowError,
    caption_lines_from_folder,
    check_text_file,
    image_lines,
    line_id,
    scan_audio,
    scan_images,
    slug,
    speech_lines,
    transcript_format,
    transcription_lines,
)
from producer.workflows.outputs import transcript_files, write_captions, write_transcripts
from tests.conftest import png_bytes

OPTS = CaptionOptions(model="m", prompt="Caption it.", max_tokens=50, detail="low")


def _image_url(line) -> str:
    return line.body["messages"][0]["content"][1]["image_url"]["url"]


def _prompt(line) -> str:
    return line.body["messages"][0]["content"][0]["text"]


# ----------------------------------------------------------------------------------------------- folders
@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "shoes" / "red").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    (root / "a.png").write_bytes(png_bytes((255, 0, 0)))
    (root / "shoes" / "b.JPG").write_bytes(png_bytes((0, 255, 0), fmt="JPEG"))
    (root / "shoes" / "red" / "c.webp").write_bytes(png_bytes((0, 0, 255), fmt="WEBP"))
    (root / "shoes" / "no-extension").write_bytes(png_bytes((9, 9, 9)))  # found by its bytes
    (root / "shoes" / "notes.txt").write_text("not an image")
    (root / "Thumbs.db").write_bytes(b"\x00" * 20)
    (root / ".thumbnails" / "a.png").write_bytes(png_bytes((1, 1, 1)))  # hidden folder: not entered
    return root


def test_folder_scan_is_recursive_sorted_and_counts_skips(photos):
    scan = scan_images(photos)
    assert [p.as_posix() for p in scan.files] == [
        "a.png",
        "shoes/b.JPG",
        "shoes/no-extension",
        "shoes/red/c.webp",
    ]
    assert scan.skipped == 2


def test_folder_lines_use_relative_ids_and_typed_data_urls(photos):
    lines = list(caption_lines_from_folder(scan_images(photos), OPTS))
    assert [x.custom_id for x in lines] == ["a.png", "shoes/b.JPG", "shoes/no-extension", "shoes/red/c.webp"]
    first = lines[0]
    assert first.url == "/v1/chat/completions" and first.error is None
    assert first.body["model"] == "m" and first.body["max_tokens"] == 50
    assert _prompt(first) == "Caption it."
    assert first.body["messages"][0]["content"][1]["image_url"]["detail"] == "low"
    mime, data = parse_data_url(_image_url(first))
    assert mime == "image/png" and data == (photos / "a.png").read_bytes()
    assert parse_data_url(_image_url(lines[1]))[0] == "image/jpeg"  # from the bytes, not the name
    assert parse_data_url(_image_url(lines[2]))[0] == "image/png"


def test_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(WorkflowError, match="is not a folder"):
        scan_images(tmp_path / "nope")


def test_audio_scan_and_transcription_lines(tmp_path):
    (tmp_path / "day1").mkdir()
    (tmp_path / "day1" / "call.wav").write_bytes(encode_speech_wav("hi"))
    (tmp_path / "memo.M4A").write_bytes(b"\x00\x00\x00\x18ftypM4A ")
    (tmp_path / "cover.png").write_bytes(png_bytes((1, 2, 3)))
    scan = scan_audio(tmp_path)
    assert [p.as_posix() for p in scan.files] == ["day1/call.wav", "memo.M4A"] and scan.skipped == 1
    lines = list(transcription_lines(scan, TranscribeOptions("whisper-1", False, "de", "srt")))
    assert lines[0].url == "/v1/audio/transcriptions" and lines[0].custom_id == "day1/call.wav"
    assert lines[0].body == {
        "model": "whisper-1",
        "file": "day1/call.wav",
        "response_format": "srt",
        "language": "de",
    }
    translated = list(transcription_lines(scan, TranscribeOptions("whisper-1", True, "de", "json")))
    assert translated[0].url == "/v1/audio/translations" and "language" not in translated[0].body


def test_subtitle_files_pick_a_format_with_timings():
    assert transcript_format(None, set()) == "json"
    assert transcript_format(None, {"txt"}) == "json"
    assert transcript_format(None, {"srt", "txt"}) == "verbose_json"
    assert transcript_format("vtt", {"srt"}) == "vtt"  # converted when written
    with pytest.raises(WorkflowError, match="needs timings"):
        transcript_format("text", {"vtt"})
    with pytest.raises(WorkflowError, match="unknown docx"):
        transcript_format(None, {"docx"})


# ----------------------------------------------------------------------------------------------- CSV
def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_become_lines_with_per_row_prompts(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "x.png").write_bytes(png_bytes((10, 20, 30)))
    path = _write_csv(
        tmp_path / "cat.csv",
        "\ufeffID, url ,Prompt\n"  # a BOM, odd case and spaces in the header are fine
        "sku-1,https://cdn.test/1.jpg,\n"
        'sku-2,img/x.png,"Name the colour, then the size."\n'
        "\n",
    )
    lines = list(caption_lines_from_csv(path, OPTS))
    assert [x.custom_id for x in lines] == ["sku-1", "sku-2"]
    assert _image_url(lines[0]) == "https://cdn.test/1.jpg"  # remote: the provider fetches it
    assert _prompt(lines[0]) == "Caption it."
    assert parse_data_url(_image_url(lines[1]))[1] == (tmp_path / "img" / "x.png").read_bytes()
    assert _prompt(lines[1]) == "Name the colour, then the size."
    assert lines[1].line_no == 3


def test_csv_bad_rows_fail_alone_naming_the_cause(tmp_path):
    path = _write_csv(
        tmp_path / "cat.csv",
        "id,url\n"
        ",https://cdn.test/1.jpg\n"
        "a,https://cdn.test/a.jpg\n"
        "a,https://cdn.test/b.jpg\n"
        "b,missing.png\n"
        "c,ftp://host/c.png\n"
        "d,\n"
        "e,https://cdn.test/e.jpg,extra,value\n",
    )
    lines = list(caption_lines_from_csv(path, OPTS))
    errors = {x.line_no: x.error for x in lines}
    assert errors[2] == "empty id"
    assert errors[3] is None
    assert errors[4] == "id 'a' repeats line 3"
    assert "cannot read 'missing.png'" in errors[5]
    assert "only http(s) URLs or local paths" in errors[6]
    assert errors[7] == "empty url"
    assert "4 fields but the header has 2" in errors[8]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "empty file"),
        ("x,y\n", "missing id, url; unknown 'x', 'y'"),
        ("id,image\n", "missing url; unknown 'image'"),
        ("url,caption\n", "missing id; unknown 'caption'"),
        ("id,url,url\n", "repeated column"),
        ("custom_id,url,prompt\n", "header must be id,url[,prompt]"),
    ],
)
def test_csv_bad_header_is_a_clear_error_before_any_submit(tmp_path, header, message):
    path = _write_csv(tmp_path / "bad.csv", header + ("1,2\n" if header else ""))
    with pytest.raises(WorkflowError, match=message.replace("[", r"\[").replace("]", r"\]")):
        caption_lines_from_csv(path, OPTS)  # raised at the call, not on first iteration


def test_unreadable_files_stop_before_any_submit(tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("id,url\na,https://x.test/a.png\nb,https://x.test/caf\u00e9.png\n".encode("latin-1"))
    with pytest.raises(WorkflowError, match="line 3 is not UTF-8 text"):
        read_caption_csv(latin1)
    huge = tmp_path / "huge.csv"
    huge.write_text("id,url\na,b\nc," + "d" * 200_000 + "\n")
    with pytest.raises(WorkflowError, match=r"unreadable CSV at line 3 \(field larger than field limit"):
        read_caption_csv(huge)
    with pytest.raises(WorkflowError, match=r"latin1\.txt: line 3 is not UTF-8"):
        check_text_file(latin1.rename(tmp_path / "latin1.txt"))
    check_text_file(_write_csv(tmp_path / "ok.txt", "caf\u00e9\n"))


def test_csv_reader_closes_the_file_when_the_header_is_bad(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", "nope\n")
    with pytest.raises(WorkflowError):
        read_caption_csv(path)


# ----------------------------------------------------------------------------------------------- text lines
def test_slugs_and_line_ids():
    assert slug("A red van, parked!") == "a-red-van-parked"
    assert slug("Crème brûlée") == "creme-brulee"
    assert slug("日本語") == ""
    assert len(slug("word " * 40)) <= 40
    assert line_id(7, "A red van") == "0007-a-red-van"
    assert line_id(12, "日本語") == "0012"


def test_line_files_skip_blank_lines_and_keep_line_numbers(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red van\n\n   \n  a teapot  \n", encoding="utf-8")
    images = list(image_lines(path, model="gpt-image-1", size="256x256", n=2))
    assert [(x.line_no, x.custom_id) for x in images] == [(1, "0001-a-red-van"), (4, "0004-a-teapot")]
    assert images[1].body == {"prompt": "a teapot", "model": "gpt-image-1", "size": "256x256", "n": 2}
    assert images[0].url == "/v1/images/generations"
    assert next(image_lines(path)).body == {"prompt": "a red van"}
    speech = list(speech_lines(path, model="tts-1", voice="nova", response_format="wav"))
    assert speech[1].body == {
        "model": "tts-1",
        "input": "a teapot",
        "voice": "nova",
        "response_format": "wav",
    }
    assert speech[1].url == "/v1/audio/speech"


# ----------------------------------------------------------------------------------------------- subtitles
def test_transcript_files_from_each_stored_shape():
    verbose = {"text": "hi there", "segments": [{"start": 0, "end": 1.2, "text": " hi there"}]}
    text, files = transcript_files(verbose, {"txt", "srt", "vtt"})
    assert text == "hi there" and files["txt"] == "hi there\n"
    assert "00:00:01,200\nhi there" in files["srt"] and files["vtt"].startswith("WEBVTT")
    srt_record = {"text": "1\n00:00:00,000 --> 00:00:02,000\nfrom srt\n\n", "format": "srt"}
    text, files = transcript_files(srt_record, {"txt", "vtt"})
    assert text == "from srt" and "00:00:02.000\nfrom srt" in files["vtt"]
    text, files = transcript_files({"text": "plain"}, {"txt", "srt"})
    assert text == "plain" and set(files) == {"txt"}  # no timings, no subtitles


def test_custom_ids_never_escape_the_output_folder():
    assert safe_relpath("a/b/c.wav") == Path("a/b/c.wav")
    assert safe_relpath("../../etc/passwd") == Path("etc/passwd")
    assert safe_relpath("/abs/x") == Path("abs/x")
    assert safe_relpath("..") == Path("_")
    assert safe_relpath('we:ird*"name?.png') == Path("we_ird__name_.png")
    assert safe_relpath("a\\..\\b") == Path("a/b")


# ----------------------------------------------------------------------------------------------- writers
@pytest.fixture
async def stores(tmp_path):
    redis = embedded_redis()
    settings = Settings(redis_url=None, storage_url=f"file://{tmp_path / 'store'}")
    yield (
        Records(redis),
        open_storage(settings.storage_url),
        Producer(redis, open_storage(settings.storage_url), settings),
    )
    await redis.aclose()


async def _finished_batch(records, storage, producer, jobs: list[tuple[str, Kind, object]]) -> str:
    """A batch whose jobs already ended: body is a result body (succeeded) or an error message."""
    batch = await producer.create_batch(tenant="t")
    pipe = records.redis.pipeline(transaction=False)
    for n, (custom_id, kind, outcome) in enumerate(jobs):
        job = JobRecord(id=f"job_{n}", batch_id=batch.id, custom_id=custom_id, tenant="t", kind=kind)
        if isinstance(outcome, str):
            job.status, job.error = JobStatus.failed, JobError(type="provider_error", message=outcome)
        else:
            key = f"results/t/{batch.id}/{job.id}.json"
            await storage.put(key, json.dumps(outcome).encode())
            job.status, job.result = JobStatus.succeeded, JobResult(body_key=key)
        records.add_job(pipe, job)
    await pipe.execute()
    await records.seal_batch(batch.id)
    return batch.id


def _chat(text: str) -> dict:
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
    }


async def test_caption_csv_is_quoted_and_failures_are_listed(stores, tmp_path):
    records, storage, producer = stores
    tricky = 'A "red" shoe, size 42\nsecond line'
    batch_id = await _finished_batch(
        records,
        storage,
        producer,
        [
            ("a,b.png", Kind.chat, _chat(tricky)),
            ("c.png", Kind.chat, "HTTP 500 from provider"),
            ("d.png", Kind.chat, _chat("ok")),
        ],
    )
    written = await write_captions(records, storage, batch_id, tmp_path / "out")
    assert (written.ok, written.failed) == (2, 1)
    rows = list(
        csv.reader(io.StringIO((tmp_path / "out" / "captions.csv").read_text(encoding="utf-8"), newline=""))
    )
    assert rows == [["id", "caption"], ["a,b.png", tricky], ["c.png", ""], ["d.png", "ok"]]
    errors = list(csv.reader((tmp_path / "out" / "errors.csv").open(newline="", encoding="utf-8")))
    assert errors == [["id", "error"], ["c.png", "HTTP 500 from provider"]]
    index = [json.loads(x) for x in (tmp_path / "out" / "captions.jsonl").read_text().splitlines()]
    assert index[1] == {
        "custom_id": "c.png",
        "job_id": "job_1",
        "caption": "",
        "status": "failed",
        "error": "HTTP 500 from provider",
    }


async def test_transcript_files_mirror_the_folder_and_never_overwrite(stores, tmp_path):
    records, storage, producer = stores
    verbose = {"text": "hi", "segments": [{"start": 0, "end": 1, "text": "hi"}], "language": "english"}
    batch_id = await _finished_batch(
        records,
        storage,
        producer,
        [
            ("day1/memo.mp3", Kind.transcription, verbose),
            ("day1/memo.wav", Kind.transcription, verbose),
            ("../evil.wav", Kind.transcription, verbose),
            ("gone.wav", Kind.transcription, "invalid audio"),
        ],
    )
    out = tmp_path / "out"
    written = await write_transcripts(records, storage, batch_id, out, {"srt", "txt"})
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert made == [
        "day1/memo.srt",
        "day1/memo.txt",
        "day1/memo.wav.srt",
        "day1/memo.wav.txt",
        "evil.srt",
        "evil.txt",
        "transcripts.jsonl",
    ]
    assert written.media == 6 and written.failed == 1
    rows = [json.loads(x) for x in (out / "transcripts.jsonl").read_text().splitlines()]
    assert rows[0]["files"] == ["day1/memo.txt", "day1/memo.srt"] and rows[0]["language"] == "english"
    assert rows[3]["error"] == "invalid audio" and rows[3]["files"] == []
