"""`mmq caption`, `mmq transcribe`, `mmq generate-images` and `mmq speak`: catalog and recording workflows.

    caption DIR|CSV        a vision job per image of a folder (recursively) or per id,url[,prompt] row
    transcribe DIR         a transcription (or translation) job per audio file of a folder
    generate-images FILE   an image job per non-empty line
    speak FILE             a speech job per non-empty line

Each is a Workflow (workflow_run.py): what it builds from its input (producer.workflows.inputs and
caption_csv), what it writes when the batch ends (producer.workflows.outputs), and its flags.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.cli.flags import add_deprecated, add_out, add_tenant, add_watch
from producer.cli.inputs import input_file
from producer.cli.options import add_cache_options, add_config_option, add_media_options, add_schedule_options
from producer.cli.quote import add_dry_run
from producer.cli.workflow_run import Workflow, run_workflow

if TYPE_CHECKING:  # imported lazily at run time: `mmq --help` stays fast
    from mmq.records import Records
    from mmq.storage import Storage
    from producer.workflows.outputs import Written


def _files_option(value: str | None) -> set[str]:
    return {f.strip().lower().lstrip(".") for f in (value or "").split(",") if f.strip()}


def _build_caption(args: argparse.Namespace) -> tuple[Iterator[Any], Path, str]:
    from producer.workflows.caption_csv import caption_lines_from_csv
    from producer.workflows.inputs import (
        DEFAULT_CAPTION_PROMPT,
        CaptionOptions,
        WorkflowError,
        caption_lines_from_folder,
        scan_images,
    )

    src = Path(args.source)
    opts = CaptionOptions(args.model, args.prompt or DEFAULT_CAPTION_PROMPT, args.max_tokens, args.detail)
    if src.is_dir():
        scan = scan_images(src)
        skipped = f"; {scan.skipped} other files skipped" if scan.skipped else ""
        if not scan.files:
            raise WorkflowError(f"no images in {src}{skipped}")
        return caption_lines_from_folder(scan, opts), src, f"{len(scan.files)} images in {src}{skipped}"
    if src.is_file():
        return caption_lines_from_csv(src, opts), src.parent, f"rows of {src}"
    raise WorkflowError(f"{src}: no such folder or CSV file")


def _write_captions(
    args: argparse.Namespace, records: Records, storage: Storage, batch_id: str, out: Path
) -> Awaitable[Written]:
    from producer.workflows.outputs import write_captions

    return write_captions(records, storage, batch_id, out)


def _build_transcribe(args: argparse.Namespace) -> tuple[Iterator[Any], Path, str]:
    from producer.workflows.inputs import (
        TranscribeOptions,
        WorkflowError,
        scan_audio,
        transcript_format,
        transcription_lines,
    )

    src = Path(args.source)
    try:
        fmt = transcript_format(args.format, _files_option(args.write))
    except WorkflowError as e:  # producer.workflows still calls the option by its old name
        raise WorkflowError(str(e).replace("--files", "--write")) from None
    scan = scan_audio(src)
    skipped = f"; {scan.skipped} other files skipped" if scan.skipped else ""
    if not scan.files:
        raise WorkflowError(f"no audio files in {src}{skipped}")
    opts = TranscribeOptions(args.model, args.translate, args.language, fmt)
    what = "translations" if args.translate else "transcriptions"
    return (
        transcription_lines(scan, opts),
        src,
        f"{len(scan.files)} audio files in {src}{skipped} ({what}, {fmt})",
    )


def _transcribe_metadata(args: argparse.Namespace) -> dict[str, str]:
    return {"files": ",".join(sorted(_files_option(args.write)))}


async def _write_transcripts(
    args: argparse.Namespace, records: Records, storage: Storage, batch_id: str, out: Path
) -> Written:
    from producer.workflows.outputs import write_transcripts

    wanted = _files_option(args.write)
    if args.resume and args.write is None:  # re-attaching: the files asked for at submit time
        batch = await records.get_batch(batch_id)
        wanted = _files_option(batch.metadata.get("files") if batch else None)
    return await write_transcripts(records, storage, batch_id, out, wanted)


def _build_images(args: argparse.Namespace) -> tuple[Iterator[Any], Path, str]:
    from producer.workflows.inputs import image_lines

    src = _lines_file(args.source)
    return (
        image_lines(src, model=args.model, size=args.size, n=args.n),
        src.parent,
        f"one image prompt per line of {src}",
    )


def _write_images(
    args: argparse.Namespace, records: Records, storage: Storage, batch_id: str, out: Path
) -> Awaitable[Written]:
    from producer.workflows.outputs import write_images

    return write_images(records, storage, batch_id, out)


def _build_speech(args: argparse.Namespace) -> tuple[Iterator[Any], Path, str]:
    from producer.workflows.inputs import speech_lines

    src = _lines_file(args.source)
    lines = speech_lines(src, model=args.model, voice=args.voice, response_format=args.format)
    return lines, src.parent, f"one text per line of {src}"


def _write_speech(
    args: argparse.Namespace, records: Records, storage: Storage, batch_id: str, out: Path
) -> Awaitable[Written]:
    from producer.workflows.outputs import write_speech

    return write_speech(records, storage, batch_id, out)


def _lines_file(source: str) -> Path:
    from producer.workflows.inputs import check_text_file

    path = input_file(source, kind="a text file (one line per job)")
    check_text_file(path)
    return path


WORKFLOWS = {
    "caption": Workflow("caption", "captions", _build_caption, _write_captions),
    "transcribe": Workflow(
        "transcribe", "transcripts", _build_transcribe, _write_transcripts, _transcribe_metadata
    ),
    "generate-images": Workflow("generate-images", "images", _build_images, _write_images),
    "speak": Workflow("speak", "audio files", _build_speech, _write_speech),
}


def cmd_workflow(args: argparse.Namespace) -> int:
    return run_workflow(WORKFLOWS[args.command], args)


def _workflow_parser(sub: Any, name: str, help: str, source: str, model: str | None, out: str):
    p = sub.add_parser(name, help=help)
    p.add_argument("source", nargs="?", metavar=source, help="the input (omit with --resume)")
    p.add_argument("--model", default=model, help=f"default: {model or 'the provider default'}")
    add_out(p, f"folder for the results (default: {out})", default=out)
    add_tenant(p)
    add_config_option(p)
    add_watch(p, default=True, then=", then write the results")
    p.add_argument(
        "--resume", metavar="BATCH_ID", help="re-attach to a batch this command submitted; write its outputs"
    )
    add_cache_options(p)
    add_schedule_options(p)
    add_dry_run(p)
    p.set_defaults(fn=cmd_workflow)
    return p


def add_parsers(sub: Any) -> None:
    c = _workflow_parser(
        sub,
        "caption",
        "caption every image of a folder (recursively) or of an id,url[,prompt] CSV",
        "DIR|CSV",
        "gpt-4o-mini",
        "mmq-captions",
    )
    c.add_argument("--prompt", help="the instruction sent with every image (a CSV prompt column overrides)")
    c.add_argument("--max-tokens", type=int, metavar="N", help="the longest caption, in tokens")
    c.add_argument(
        "--detail", choices=["auto", "low", "high"], default="auto", help="image detail asked (default: auto)"
    )
    add_media_options(c)

    t = _workflow_parser(
        sub,
        "transcribe",
        "transcribe (or translate) every audio file of a folder, recursively",
        "DIR",
        "whisper-1",
        "mmq-transcripts",
    )
    t.add_argument("--translate", action="store_true", help="translate into English instead")
    t.add_argument("--language", help="the spoken language (ISO-639-1, e.g. de); transcription only")
    t.add_argument(
        "--format",
        choices=["json", "text", "srt", "vtt", "verbose_json"],
        help="the transcript format asked of the provider (default: json, or verbose_json when --write "
        "has srt/vtt)",
    )
    t.add_argument(
        "--write", metavar="txt,srt,vtt", help="also write one file per recording in each of these formats"
    )
    add_deprecated(t, "--files", dest="write", use="--write (--files names a folder elsewhere)")

    g = _workflow_parser(
        sub, "generate-images", "one image job per non-empty line of a text file", "FILE", None, "mmq-images"
    )
    g.add_argument("--size", help="e.g. 1024x1024 (default: the provider's)")
    g.add_argument("--n", type=int, help="images per prompt (default: 1)")

    s = _workflow_parser(
        sub, "speak", "one speech job per non-empty line of a text file", "FILE", "tts-1", "mmq-speech"
    )
    s.add_argument("--voice", default="alloy", help="the voice (default: alloy)")
    s.add_argument(
        "--format",
        choices=["mp3", "opus", "aac", "flac", "wav", "pcm"],
        default="mp3",
        help="the audio format asked of the provider (default: mp3)",
    )
