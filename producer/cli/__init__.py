"""The `mmq` command line: `mmq COMMAND ...`, one module per family of commands.

    processes.py     run (all-in-one), worker, api, simulate
    submit.py        submit, status, results, cancel, retry-failed
    workflows.py     caption, transcribe, generate-images, speak (run by workflow_run.py)
    templates.py     template save|list|show|run
    keys.py          keys create
    options.py       the flags several commands share (cache, scheduling, images, --config)
    common.py        the Redis connection, records and storage of a command; Ctrl-C

`run()` is the console script (`mmq = "producer.cli:run"`); `python -m producer.cli` runs it too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from producer.cli import keys, processes, submit, templates, workflows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmq", description="Batch multimodal AI jobs on Redis + arq workers")
    sub = p.add_subparsers(dest="command", required=True)
    processes.add_parsers(sub)
    submit.add_submit_parser(sub)
    workflows.add_parsers(sub)
    templates.add_parsers(sub)
    submit.add_batch_parsers(sub)
    keys.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("\nmmq: interrupted; submitted jobs keep running in the workers", file=sys.stderr)
        return 130


def exit_now(code: int) -> None:
    """Leave without interpreter finalization when the S3 client is loaded: obstore's Tokio threads
    are never shut down and can abort the process (SIGABRT) while Python tears itself down, after all
    work is done. Everything is flushed first; nothing of ours runs at exit."""
    if "obstore" in sys.modules:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run() -> None:
    """The `mmq` console script."""
    try:
        code = main()
    except SystemExit as e:  # sys.exit("mmq: …") from a command: print it as Python would
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = 1 if isinstance(e.code, str) else (e.code or 0)
    exit_now(code)
