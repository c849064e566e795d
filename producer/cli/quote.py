"""`mmq quote FILE.jsonl`, and `--dry-run` on `mmq submit` and the workflow commands: what a batch would
cost, before it runs.

Why: a batch of 10,000 photos costs real money; the quote says how much (low-high, realtime and on the
batch tier) from the same lines and the same checks a submit makes, and leaves nothing behind: no
Redis connection is made (MMQ_REDIS_URL need not be set), nothing is stored, no provider is called. The
lines are measured and priced by producer.quoting; quote_view.py shows them.

Prices: the shipped book, with `--prices FILE` (else MMQ_PRICES_FILE) over it. A price file that does
not load stops the command with one paragraph naming the file, the line and the reason.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmq.settings import get_settings
from producer.cli.errors import UserError
from producer.cli.flags import add_json
from producer.cli.inputs import input_file, opened_jsonl
from producer.cli.options import add_config_option, add_media_options, batch_options

PROBLEMS_SHOWN = 3


def refused_book(error: Any, given: str | None) -> str:
    """One paragraph for a mmq.pricing.PriceBookError: the file, its first problems (line and reason)."""
    problems = [str(p) for p in error.problems[:PROBLEMS_SHOWN]]
    if len(error.problems) > PROBLEMS_SHOWN:
        problems.append(f"and {len(error.problems) - PROBLEMS_SHOWN} more")
    fix = "drop --prices" if given else "unset MMQ_PRICES_FILE"
    listed = "; ".join(problems) or "unreadable"
    return (
        f"the price file {error.source} is refused: {listed}. Fix it (the shape of mmq/pricing/prices.yaml), "
        f"or {fix} to quote with the shipped prices alone."
    )


def add_prices_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prices",
        metavar="FILE.yaml",
        help="a price file over the shipped book (default: MMQ_PRICES_FILE), same shape as prices.yaml",
    )


def add_dry_run(p: argparse.ArgumentParser) -> None:
    """--dry-run (and --prices for it) on a submitting command."""
    p.add_argument(
        "--dry-run", action="store_true", help="print the quote only: nothing is submitted or stored"
    )
    add_prices_option(p)


def quote_lines(
    args: argparse.Namespace,
    lines: Iterable[Any],
    *,
    base_dir: Path,
    metadata: dict[str, str],
    options: dict[str, Any],
    dry_run: bool = False,
) -> int:
    """Quotes `lines` with a submit's options (batch_options' keywords) and prints the quote."""
    from mmq.pricing import PriceBookError
    from producer.cli.quote_view import show
    from producer.options import LineError, parse_options
    from producer.quoting import quote_batch

    fields = {k: v for k, v in options.items() if k != "tenant"}
    settings = get_settings()
    try:
        parsed = parse_options(fields, metadata=metadata)
        result = asyncio.run(
            quote_batch(
                lines,
                parsed,
                settings,
                prices_file=args.prices,
                allow_local_paths=True,
                base_dir=base_dir,
            )
        )
    except LineError as e:  # a bad routing config or option: a submit would refuse the batch
        raise UserError(str(e)) from None
    except PriceBookError as e:
        raise UserError(refused_book(e, args.prices)) from None
    show(result, as_json=getattr(args, "json", False), dry_run=dry_run)
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    # mmq quote has no cache or scheduling flags: their defaults, as batch_options reads them
    unset = dict.fromkeys(("cache_level", "cache_ttl", "refresh_cache", "cache_threshold", "no_cache"))
    return batch_options(argparse.Namespace(**{**unset, **vars(args)}), None)


def cmd_quote(args: argparse.Namespace) -> int:
    path = input_file(
        args.file, kind="a JSONL file", instead="quote a folder with `mmq caption FOLDER --dry-run`"
    )
    lines = opened_jsonl(path, get_settings().max_line_bytes)
    metadata = {"source": path.name}
    return quote_lines(args, lines, base_dir=path.parent, metadata=metadata, options=_options(args))


def add_parsers(sub: Any) -> None:
    q = sub.add_parser("quote", help="what a JSONL file would cost (nothing is submitted)")
    q.add_argument("file", metavar="FILE.jsonl", help="one request per line: custom_id, method, url, body")
    add_prices_option(q)
    add_config_option(q, "for every job: its first target's provider is priced")
    add_media_options(q)
    add_json(q, "the quote")
    q.set_defaults(fn=cmd_quote, tenant="default")
