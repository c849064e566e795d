"""`mmq batches`: a tenant's recent batches, newest first, with their state and counts.

Read as the API lists them (`GET /api/batches`: Records.list_batches, the tenant's batches by creation
time; with MMQ_API_URL set, through that route, as the key's tenant). `--all-tenants` merges every
tenant's list, for an operator on the Redis host (admin mode). `--json` prints the API's batch views.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from producer.cli import remote
from producer.cli.common import with_records
from producer.cli.flags import add_json, add_tenant, positive_int
from producer.cli.humanize import clock, state

if TYPE_CHECKING:
    from mmq.contract import BatchRecord
    from mmq.records import Records

HEADERS = ("BATCH", "CREATED", "STATE", "DONE", "FAILED", "SOURCE")


async def _tenants(records: Records) -> list[str]:
    pattern = records.tenant_batches_key("*")
    head, tail = pattern.split("*")
    found = set()
    async for key in records.redis.scan_iter(match=pattern, count=500):
        text = key.decode() if isinstance(key, bytes) else key
        found.add(text[len(head) : len(text) - len(tail)])
    return sorted(found)


async def recent_batches(records: Records, tenants: list[str], limit: int) -> list[BatchRecord]:
    ids = [i for t in tenants for i in await records.list_batches(t, limit=limit)]
    batches = [b for b in [await records.get_batch(i) for i in ids] if b is not None]
    return sorted(batches, key=lambda b: b.created_at, reverse=True)[:limit]


def table(batches: list[BatchRecord], now: float, *, with_tenant: bool) -> list[str]:
    rows = [
        (
            b.id,
            clock(b.created_at, now),
            state(b, now),
            f"{b.counts.done}/{b.counts.total}",
            str(b.counts.failed),
            (f"{b.tenant}: " if with_tenant else "") + (b.metadata.get("source") or "-"),
        )
        for b in batches
    ]
    widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [HEADERS, *rows]
    ]


def cmd_batches(args: argparse.Namespace) -> int:
    from producer.views import batch_view

    if (api := remote.api_mode()) is not None:  # MMQ_API_URL: the key's tenant's batches
        return remote.run(remote.batches, api, args)

    async def go(settings, redis, records, storage):
        tenants = await _tenants(records) if args.all_tenants else [args.tenant]
        batches = await recent_batches(records, tenants, args.limit)
        if args.json:
            print(json.dumps([batch_view(b) for b in batches], indent=2))
        elif batches:
            print("\n".join(table(batches, time.time(), with_tenant=args.all_tenants)))
        else:
            where = "any tenant" if args.all_tenants else f"tenant {args.tenant!r} (or try --all-tenants)"
            print(f"mmq: no batches for {where}", file=sys.stderr)
        return 0

    return asyncio.run(with_records(go))


def add_parsers(sub: Any) -> None:
    b = sub.add_parser(
        "batches", help="recent batches, newest first, with state and counts", description=remote.mode_note()
    )
    add_tenant(b, api=True)
    b.add_argument("--all-tenants", action="store_true", help="every tenant's batches (operators)")
    b.add_argument(
        "--limit", type=positive_int, default=20, metavar="N", help="how many batches (default: 20)"
    )
    add_json(b, "the batches")
    b.set_defaults(fn=cmd_batches)
