"""The `mmq` command line: `mmq COMMAND ...`, one module per family of commands.

    processes.py     run (all-in-one), worker, api, simulate
    submit.py        submit, results, cancel, retry-failed
    quote.py         quote (what a file would cost), and --dry-run on submit and the workflows
    quote_view.py    a quote as a rich table, or --json
    status.py        status (human, or --json)
    batches.py       batches (a tenant's recent batches)
    workflows.py     caption, transcribe, generate-images, speak (run by workflow_run.py)
    templates.py     template save|list|show|run
    keys.py          keys create|list|revoke (API keys in Redis; admin mode)
    budget.py        budget show|set|batch (spending, tenant budgets, a batch's max cost; admin mode)
    remote.py        API mode: with MMQ_API_URL, submit/status/batches/results/cancel/retry-failed go
                     through the HTTP API with MMQ_API_KEY; without it every command is admin mode (Redis)
    options.py       the option groups several commands share (cache, scheduling, images, --config)
    flags.py         one spelling per meaning (--out, --files, --format, --watch, --json) and old spellings
    common.py        the Redis connection (checked first), records and storage of a command; Ctrl-C
    inputs.py        input files checked and opened before a batch exists
    preflight.py     what servers and workers check before they start (port, provider key)
    progress.py      a batch's progress on the terminal (rich), plain lines in logs
    humanize.py      local times, durations, "waiting until 01:00"
    errors.py        what a user can fix, as one paragraph instead of a traceback

`run()` is the console script (`mmq = "producer.cli:run"`); `python -m producer.cli` runs it too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from producer.cli import (
    batches,
    budget,
    keys,
    processes,
    quote,
    remote,
    status,
    submit,
    templates,
    workflows,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmq")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmq",
        description="Batch multimodal AI jobs on Redis + arq workers",
        epilog=remote.modes_help(),  # API mode (MMQ_API_URL + MMQ_API_KEY) or admin mode (Redis)
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"mmq {_version()}", help="print mmq's version")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    processes.add_parsers(sub)
    submit.add_submit_parser(sub)
    quote.add_parsers(sub)
    workflows.add_parsers(sub)
    templates.add_parsers(sub)
    status.add_parsers(sub)
    batches.add_parsers(sub)
    submit.add_batch_parsers(sub)
    keys.add_parsers(sub)
    budget.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from producer.cli.errors import explain

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("\nmmq: interrupted; submitted jobs keep running in the workers", file=sys.stderr)
        return 130
    except Exception as e:
        try:
            message = explain(e, args.command)
        except Exception:  # explaining failed too: show the original
            message = None
        if message is None:
            raise  # a bug in mmq: its traceback is what a report needs
        print(f"mmq: {message}", file=sys.stderr)
        return 1


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
