"""One spelling per meaning across the commands, and the old spellings still accepted with a note.

    --out PATH        where a command writes: a folder (workflows, template run) or a file (results)
    --files DIR       a folder for every result file (image, audio, text) of a batch
    --format FMT      the format of the results asked of the provider (transcripts, speech audio)
    --watch/--no-watch  wait for the end with a progress display
    --json            machine-readable output instead of the human view (status, batches)

Renamed spellings print one line on stderr (`mmq: -o/--output is deprecated; use --out`) and work as
before, so scripts written against the older CLI keep running while they are updated.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


class Deprecated(argparse.Action):
    """An old option spelling: stores into the new option's dest and says which spelling to use.
    Hidden from --help (the new spelling is documented there)."""

    def __init__(self, option_strings: list[str], dest: str, *, use: str, **kwargs: Any) -> None:
        self.use = use
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[no-untyped-def]
        spelled = "/".join(self.option_strings)
        print(f"mmq: {spelled} is deprecated; use {self.use}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated(p: argparse.ArgumentParser, *old: str, dest: str, use: str, **kwargs: Any) -> None:
    p.add_argument(*old, dest=dest, action=Deprecated, use=use, **kwargs)


def add_out(p: argparse.ArgumentParser, help: str, *, default: str | None = None, old: bool = False) -> None:
    """--out; `old`: also the former `-o/--output` (mmq results)."""
    p.add_argument("--out", default=default, metavar="PATH", help=help)
    if old:
        add_deprecated(p, "-o", "--output", dest="out", use="--out", metavar="PATH")


def add_watch(p: argparse.ArgumentParser, *, default: bool, then: str = "") -> None:
    """--watch/--no-watch, on every command that starts or re-runs jobs."""
    p.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"wait for the end with a progress display{then} (default: {'on' if default else 'off'})",
    )


def add_json(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON (for scripts)")


DEFAULT_TENANT = "default"  # admin mode's tenant when none is named; a key of this tenant sees that work


def add_tenant(p: argparse.ArgumentParser, *, api: bool = False) -> None:
    """--tenant (admin mode); `api`: the command also runs through the API, where the key decides."""
    p.add_argument(
        "--tenant",
        default=DEFAULT_TENANT,
        help=f"the tenant in admin mode (default: {DEFAULT_TENANT}); the keys of that tenant see the work"
        + ("; with MMQ_API_URL set, the tenant is MMQ_API_KEY's" if api else ""),
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value
