"""A quote on the terminal: one rich table row per kind, provider and model (jobs, input tokens, output
bound, low-high cost, the batch tier and its saving), then what could not be priced, the lines a submit
would refuse, and the totals. `--json` prints producer.quote_sums.BatchQuote.to_dict() instead.

Why apart from quote.py: the same view follows `mmq quote`, `mmq submit --dry-run` and every workflow's
`--dry-run`; the command module only gathers the lines.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mmq.pricing.quotes import usd

if TYPE_CHECKING:
    from decimal import Decimal

    from mmq.pricing.quotes import QuoteGroup
    from producer.quote_sums import BatchQuote

REFUSED_SHOWN = 5
COLUMNS = ("KIND", "PROVIDER/MODEL", "JOBS", "INPUT", "OUTPUT", "COST", "BATCH TIER", "SAVING")


def money(low: Decimal, high: Decimal) -> str:
    return usd(low) if low == high else f"{usd(low)}-{usd(high)}"


def _input(g: QuoteGroup) -> str:
    if g.kind == "chat":
        return f"{g.input_tokens:,} tokens ({g.text_tokens:,} text + {g.image_tokens:,} image)"
    if g.kind == "image":
        return f"{g.input_tokens:,} prompt tokens"
    if g.kind == "speech":
        return f"{g.characters:,} characters"
    unmeasured = f", {g.unmeasured_audio} unmeasured" if g.unmeasured_audio else ""
    return f"{g.audio_seconds:.1f} s of audio{unmeasured}"


def _output(g: QuoteGroup) -> str:
    if g.kind == "chat":
        if g.unbounded_jobs == g.jobs:
            return "unbounded"
        return f"≤ {g.output_bound:,} tokens" + (
            f" + {g.unbounded_jobs} unbounded" if g.unbounded_jobs else ""
        )
    if g.kind == "image":
        return f"{g.images_out} image(s)"
    return "-"


def _row(bq: BatchQuote, g: QuoteGroup) -> list[Text]:
    if g.priced_jobs:
        cost = money(g.low, g.high) + (f" ({g.priced_jobs} priced)" if g.priced_jobs < g.jobs else "")
        tiered = bq.batch_tier(g)
        batch = money(g.batch_low, g.batch_high) if tiered else "realtime only"
        saving = money(g.low - g.batch_low, g.high - g.batch_high) if tiered else "-"
    else:
        cost, batch, saving = "no price", "-", "-"
    cells = [g.kind, f"{g.provider}/{g.model}", str(g.jobs), _input(g), _output(g), cost, batch, saving]
    return [Text(c) for c in cells]  # Text: a model id with [brackets] is not rich markup


def footer(bq: BatchQuote) -> list[str]:
    """What follows the table: unpriced jobs, notes, refused lines, the totals."""
    q = bq.quote
    out = [f"{reason}: {n} job(s) not priced" for reason, n in q.missing.items()]
    for g in q.groups:
        out += [
            f"note ({g.provider}/{g.model}): {text}" + (f" ({n} jobs)" if n > 1 else "")
            for text, n in g.notes.items()
        ]
    if bq.invalid:
        out.append(f"{bq.invalid} line(s) a submit would refuse (failed jobs, not quoted):")
        for r in bq.refused[:REFUSED_SHOWN]:
            who = f" ({r.custom_id})" if r.custom_id else ""
            out.append(f"  line {r.line}{who}: {r.error}" if r.line else f"  {r.custom_id or '?'}: {r.error}")
        if bq.invalid > REFUSED_SHOWN:
            out.append(f"  … and {bq.invalid - REFUSED_SHOWN} more (--json lists {len(bq.refused)})")
    total = f"total: {q.priced_jobs} of {q.jobs} job(s) priced, {money(q.low, q.high)}"
    if not q.high_is_bound:
        total += " (the high figure is no bound: some chat jobs have no max_tokens)"
    out.append(total)
    saving = money(q.low - q.batch_low, q.high - q.batch_high)
    out.append(f"on the batch tier: {money(q.batch_low, q.batch_high)} (saving {saving})")
    return out


def show(bq: BatchQuote, *, as_json: bool = False, file: TextIO | None = None, dry_run: bool = False) -> None:
    file = file or sys.stdout
    if as_json:
        print(json.dumps(bq.to_dict(), indent=2), file=file)
        return
    # a pipe or a log gets the whole table, not 80 columns of it
    console = Console(file=file, highlight=False, width=None if file.isatty() else 220)
    console.print(Text(f"quote (price book {bq.quote.price_book_version}, USD)"))
    table = Table()
    for name in COLUMNS:
        table.add_column(name, justify="right" if name == "JOBS" else "left")
    for g in bq.quote.groups:
        table.add_row(*_row(bq, g))
    if bq.quote.groups:
        console.print(table)
    for line in footer(bq):
        console.print(Text(line))
    if dry_run:
        console.print(Text("dry run: nothing was submitted"))
