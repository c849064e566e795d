"""Hostile custom_ids and file names through every writer that names a file after them: nothing
escapes the output folder, no file overwrites another's, nothing crashes, and the count reported is
what is on disk."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import httpx
import pytest

from mmq.connections import embedded_redis
from mmq.contract import JobRecord, JobResult, JobStatus, ResultFile
from mmq.records import Records
from mmq.request_models import Kind
from mmq.settings import Settings
from mmq.simulator import encode_speech_wav
from mmq.storage import open_storage
from producer.api import create_app
from producer.auth import hash_key
from producer.export import export_batch
from producer.safe_names import (
    MAX_COMPONENT_BYTES,
    OutputNames,
    content_disposition,
    safe_component,
    safe_relpath,
)
from producer.submit import Producer
from producer.templates.run import write_results
from producer.workflows.outputs import write_images, write_speech, write_transcripts
from tests.conftest import png_bytes

# each distinct: two of a kind come out the same once made safe (or cut, or case-folded)
HOSTILE = [
    "../x",
    "x",
    "x/",
    "../../etc/passwd",
    "/etc/passwd",
    "etc/passwd",
    "a\x00b",
    "a_b",
    "A" * 300,
    "A" * 301,  # the same as the one before once cut to 200 bytes
    "日" * 200,  # 600 bytes of UTF-8: cut by bytes, not characters
    "日" * 201,
    "collide?",
    "collide*",
    "collide_",
    "same/x",
    "same_x",
    "CON",
    "_CON",
    ".",
    "..",
    "",
    "a\\..\\..\\b",
    "dot.",
    "d",
    "d.png/e",  # a folder named like the file of `d`
    "Case",
    "case",
    "line\nbreak\r\t",
]


def _files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() or p.is_symlink()]


def _assert_contained(out: Path, files: list[Path]) -> None:
    root = out.resolve()
    for path in files:
        assert not path.is_symlink()
        assert path.resolve().is_relative_to(root), path
        rel = path.relative_to(out)
        assert all(len(part.encode()) <= 255 for part in rel.parts), rel
        assert not any(c in str(rel) for c in '\x00\n\r\t<>:"|?*\\'), rel


# ============================================================================================ the names
def test_names_stay_under_the_folder_and_fit_any_filesystem():
    assert safe_relpath("a/b/c.wav") == PurePosixPath("a/b/c.wav")
    assert safe_relpath("../../etc/passwd") == PurePosixPath("etc/passwd")
    assert safe_relpath("/abs/x") == PurePosixPath("abs/x")
    assert safe_relpath("a\\..\\b") == PurePosixPath("a/b")
    assert safe_relpath("same/x", keep_dirs=False) == PurePosixPath("same_x")
    for empty in ("", ".", "..", "/", "../..", "./"):
        assert safe_relpath(empty) == PurePosixPath("_")
    assert safe_component("a\x00b\x7f\x85\ud800") == "a_b___"
    assert safe_component('we:ird*"name?.png') == "we_ird__name_.png"
    assert safe_component("CON") == "_CON" and safe_component("com1.png") == "_com1.png"
    assert safe_component("CONTROL") == "CONTROL"
    assert safe_component("trailing. .") == "trailing___"  # Windows would drop them
    cut = safe_component("日" * 200)
    assert len(cut.encode()) <= MAX_COMPONENT_BYTES and cut == "日" * (MAX_COMPONENT_BYTES // 3)
    assert len(safe_component("é" * 150).encode()) == MAX_COMPONENT_BYTES  # 2-byte chars, cut between two


def test_names_are_unique_in_a_run_and_the_later_one_gets_a_stable_digest():
    names = OutputNames(reserved=["images.jsonl"])
    assert names.claim("collide?", [".png"]) == ["collide_.png"]
    [later] = names.claim("collide*", [".png"])
    assert (
        later.startswith("collide_-")
        and later.endswith(".png")
        and len(later) == len("collide_-12345678.png")
    )
    assert OutputNames().claim("collide_", [".png"]) != [later]  # the digest is of the original id...
    again = OutputNames()
    again.claim("collide?", [".png"])
    assert again.claim("collide*", [".png"]) == [later]  # ...so the same batch gets the same names
    assert names.claim("images", [".jsonl"]) != ["images.jsonl"]  # the run's index is not a job's
    # the same custom_id twice in a batch: still two files
    assert (
        len(set(names.claim("dup", [".png"]) + names.claim("dup", [".png"]) + names.claim("dup", [".png"])))
        == 3
    )
    # a job's files share one base; multi-file suffixes never clash with each other
    assert names.claim("multi", ["-1.png", "-2.png"]) == ["multi-1.png", "multi-2.png"]
    # transcripts: a.wav next to a.mp3 keeps its full name, as documented, before any digest
    t = OutputNames()
    assert t.claim("day/a.mp3", [".txt", ".srt"], replace_ext=True) == ["day/a.txt", "day/a.srt"]
    assert t.claim("day/a.wav", [".txt", ".srt"], replace_ext=True) == ["day/a.wav.txt", "day/a.wav.srt"]
    assert t.claim("day/a.ogg", [".txt"], replace_ext=True) == ["day/a.ogg.txt"]


def test_a_file_and_a_folder_never_share_a_name():
    names = OutputNames()
    [file] = names.claim("d.png", [""])
    [inside] = names.claim("d.png/e", [".png"])
    assert file == "d.png" and not inside.startswith("d.png/") and inside.endswith("/e.png")
    names = OutputNames()
    [inside] = names.claim("f.png/e", [".png"])
    [file] = names.claim("f.png", [""])
    assert inside == "f.png/e.png" and file != "f.png"


def test_flat_names_keep_ids_with_and_without_slashes_apart():
    names = OutputNames(keep_dirs=False)
    got = [names.claim(i, [".png"])[0] for i in ("same/x", "same_x", "../x", "x")]
    assert got[0] == "same_x.png" and len(set(got)) == 4 and all("/" not in g for g in got)


def test_content_disposition_carries_any_name():
    assert content_disposition("in.jsonl") == 'attachment; filename="in.jsonl"'
    assert content_disposition("文件.jsonl") == (
        "attachment; filename=\"__.jsonl\"; filename*=UTF-8''%E6%96%87%E4%BB%B6.jsonl"
    )
    assert content_disposition("naïve.jsonl").startswith('attachment; filename="naive.jsonl"; filename*=')
    header = content_disposition('a"b\r\nX-Evil: 1\\%.jsonl')
    header.encode("latin-1")  # always sendable
    assert "\r" not in header and "\n" not in header and header.count('"') == 2


# ============================================================================================ writers
@pytest.fixture
async def stores(tmp_path):
    redis = embedded_redis()
    settings = Settings(redis_url=None, storage_url=f"file://{tmp_path / 'store'}")
    storage = open_storage(settings.storage_url)
    yield Records(redis), storage, Producer(redis, storage, settings)
    await redis.aclose()


async def _media_batch(
    stores, ids: list[str], kind: Kind, data: bytes, content_type: str, body: dict, n_files: int = 1
) -> str:
    """A finished batch: every job succeeded with `n_files` result files of `data`."""
    records, storage, producer = stores
    batch = await producer.create_batch(tenant="t")
    pipe = records.redis.pipeline(transaction=False)
    for n, custom_id in enumerate(ids):
        job = JobRecord(id=f"job_{n}", batch_id=batch.id, custom_id=custom_id, tenant="t", kind=kind)
        key = f"results/t/{batch.id}/{job.id}"
        await storage.put(f"{key}.json", json.dumps(body).encode())
        files = []
        for f in range(n_files):
            await storage.put(f"{key}-{f}", data + job.id.encode())  # bytes tell the jobs apart
            files.append(ResultFile(key=f"{key}-{f}", content_type=content_type, bytes=len(data)))
        job.status, job.result = JobStatus.succeeded, JobResult(body_key=f"{key}.json", files=files)
        records.add_job(pipe, job)
    await pipe.execute()
    await records.seal_batch(batch.id)
    return batch.id


def _media_on_disk(out: Path, index: str) -> list[Path]:
    files = _files(out)
    _assert_contained(out, files)
    return [p for p in files if p.name != index]


def _each_job_has_its_own_bytes(files: list[Path], n_jobs: int) -> None:
    """Nothing was overwritten: every job's bytes are on disk, in a file of their own."""
    tails = {p.read_bytes()[-8:] for p in files}
    assert len(tails) == len(files) >= n_jobs


@pytest.mark.parametrize("writer, index", [(write_images, "images.jsonl"), (write_speech, "speech.jsonl")])
async def test_image_and_speech_files_for_hostile_ids(stores, tmp_path, writer, index):
    records, storage, _ = stores
    if writer is write_images:
        batch_id = await _media_batch(
            stores, HOSTILE, Kind.image, png_bytes((1, 2, 3)), "image/png", {"data": []}
        )
    else:
        wav = encode_speech_wav("hello")
        batch_id = await _media_batch(
            stores, HOSTILE, Kind.speech, wav, "audio/wav", {"content_type": "audio/wav"}
        )
    out = tmp_path / "out"
    written = await writer(records, storage, batch_id, out)
    media = _media_on_disk(out, index)
    assert written.media == len(media) == len(HOSTILE)
    _each_job_has_its_own_bytes(media, len(HOSTILE))
    rows = [json.loads(x) for x in (out / index).read_text(encoding="utf-8").splitlines()]
    listed = [f for r in rows for f in (r["files"] if "files" in r else [r["file"]])]
    assert sorted(listed) == sorted(p.relative_to(out).as_posix() for p in media)
    assert all(r["error"] is None for r in rows)


async def test_several_images_per_job_for_hostile_ids(stores, tmp_path):
    records, storage, _ = stores
    batch_id = await _media_batch(
        stores, HOSTILE, Kind.image, png_bytes((4, 5, 6)), "image/png", {}, n_files=2
    )
    written = await write_images(records, storage, batch_id, tmp_path / "out")
    media = _media_on_disk(tmp_path / "out", "images.jsonl")
    assert written.media == len(media) == 2 * len(HOSTILE)


async def test_transcript_files_for_hostile_ids(stores, tmp_path):
    records, storage, _ = stores
    ids = [*HOSTILE, "rec/a.mp3", "rec/a.wav", "rec/a"]
    verbose = {"text": "hi", "segments": [{"start": 0, "end": 1, "text": "hi"}]}
    batch_id = await _media_batch(stores, ids, Kind.transcription, b"", "text/plain", verbose, n_files=0)
    out = tmp_path / "out"
    written = await write_transcripts(records, storage, batch_id, out, {"txt", "srt"})
    media = _media_on_disk(out, "transcripts.jsonl")
    assert written.media == len(media) == 2 * len(ids)
    names = {p.relative_to(out).as_posix() for p in media}
    assert {"rec/a.txt", "rec/a.srt", "rec/a.wav.txt", "rec/a.wav.srt"} <= names  # the documented names
    rows = [json.loads(x) for x in (out / "transcripts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(f for r in rows for f in r["files"]) == sorted(names)


@pytest.mark.parametrize("same_folder", [False, True])
async def test_results_files_for_hostile_ids(stores, tmp_path, same_folder):
    """`mmq results --files`: one flat folder; the count it prints is the files that exist."""
    records, storage, _ = stores
    ids = [*HOSTILE, "output.jsonl"]
    batch_id = await _media_batch(stores, ids, Kind.image, png_bytes((3, 3, 3)), "image/png", {"data": []})
    files_dir = tmp_path / "files"
    output = (files_dir if same_folder else tmp_path) / "output.jsonl"
    count = await export_batch(records, storage, batch_id, output, files_dir)
    media = _media_on_disk(files_dir, "output.jsonl")
    assert count == len(media) == len(ids)
    assert all(p.parent == files_dir for p in media)
    _each_job_has_its_own_bytes(media, len(ids))
    assert len(output.read_text(encoding="utf-8").splitlines()) == len(ids)  # not overwritten by a job


async def test_template_outputs_for_hostile_ids(stores, tmp_path):
    records, storage, _ = stores
    batch_id = await _media_batch(stores, HOSTILE, Kind.speech, encode_speech_wav("hello"), "audio/wav", {})
    out = tmp_path / "run"
    ok, failed, count = await write_results(records, storage, batch_id, out)
    media = _media_on_disk(out / "files", "")
    assert (ok, failed) == (len(HOSTILE), 0) and count == len(media) == len(HOSTILE)
    _each_job_has_its_own_bytes(media, len(HOSTILE))
    with (out / "results.csv").open(newline="", encoding="utf-8") as f:
        assert len(list(csv.reader(f))) == len(HOSTILE) + 1


async def test_a_file_that_still_cannot_be_written_fails_only_its_row(stores, tmp_path):
    """A path deeper than the OS allows (PATH_MAX) fails its own row; the jobs around it are written."""
    records, storage, _ = stores
    too_deep = "/".join(f"{n:03d}" + "d" * 196 for n in range(30))
    ids = ["before", too_deep, "after"]
    batch_id = await _media_batch(stores, ids, Kind.image, png_bytes((7, 8, 9)), "image/png", {})
    out = tmp_path / "out"
    written = await write_images(records, storage, batch_id, out)
    assert written.media == 2 and sorted(p.name for p in _media_on_disk(out, "images.jsonl")) == [
        "after.png",
        "before.png",
    ]
    rows = [json.loads(x) for x in (out / "images.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[1]["files"] == [] and rows[1]["error"].startswith("cannot write")
    assert rows[0]["error"] is None and rows[2]["error"] is None
    # `mmq results --files` (flat) writes it; nothing crashes either way
    assert await export_batch(records, storage, batch_id, tmp_path / "o.jsonl", tmp_path / "f") == 3
    assert os.path.isdir(tmp_path / "f")


# ============================================================================================ downloads
@pytest.fixture
async def api(tmp_path):
    redis = embedded_redis()
    settings = Settings(
        redis_url=None, storage_url=f"file://{tmp_path / 'store'}", api_keys={hash_key("k"): "tenant-a"}
    )
    app = create_app(settings, redis=redis, storage=open_storage(settings.storage_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        headers = {"authorization": "Bearer k"}
        async with httpx.AsyncClient(transport=transport, base_url="http://mmq", headers=headers) as c:
            yield c
    await redis.aclose()


@pytest.mark.parametrize("name", ["文件.jsonl", "😀.jsonl", "naïve.jsonl", "rés umé;1.jsonl", "in.jsonl"])
async def test_an_uploaded_file_downloads_under_its_own_name(api, name):
    """`GET /v1/files/{id}/content` answered 500 for a name a header cannot hold as is."""
    data = b'{"custom_id": "a"}\n'
    up = await api.post(
        "/v1/files", data={"purpose": "batch"}, files={"file": (name, data, "application/jsonl")}
    )
    assert up.status_code == 200, up.text
    assert up.json()["filename"] == name
    down = await api.get(f"/v1/files/{up.json()['id']}/content")
    assert down.status_code == 200 and down.content == data
    header = down.headers["content-disposition"]
    assert header.startswith('attachment; filename="')
    real = header.split("filename*=UTF-8''")[1] if "filename*=" in header else header.split('"')[1]
    assert unquote(real) == name
