"""`mmq budget`: the operator's budgets (admin mode, on the Redis host).

    mmq budget show  [--tenant T]                  a tenant's spending and budgets this UTC day and month
    mmq budget set   --tenant T [--day USD] [--month USD]   ("none" removes one)
    mmq budget batch BATCH_ID --max-cost USD|none  raise, lower or remove a batch's budget

Setting or raising a budget wakes the jobs waiting for it (mmq.budgets): they run on the next worker
sweep, about a second later, without a restart. A tenant sees its own spending through `GET /api/spend`
and raises its own batch's budget with `PATCH /api/batches/{id}`; tenant budgets are the operator's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from producer.cli.common import with_records
from producer.cli.errors import UserError
from producer.cli.flags import add_json


def _amount(text: str | None, flag: str) -> Decimal | None:
    """A budget given on the command line: dollars, or "none" to remove it."""
    if text is None or text.lower() == "none":
        return None
    try:
        value = Decimal(text.removeprefix("$"))
    except InvalidOperation:
        raise UserError(f"{flag} {text!r}: give an amount of USD such as 40 or 12.50, or none") from None
    if not value.is_finite() or value <= 0:
        raise UserError(f"{flag} {text!r}: a budget is a positive amount of USD, or none to remove it")
    return value


def _print_spend(tenant: str, periods: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"tenant": tenant, **{p: s.to_dict() for p, s in periods.items()}}, indent=2))
        return
    for period, s in periods.items():
        data = s.to_dict()
        limit = f"${data['limit_usd']}" if data["limit_usd"] is not None else "no budget"
        held = f", ${data['reserved_usd']} held by calls in flight" if s.reserved else ""
        print(f"{tenant} this {period}: ${data['spent_usd']} spent of {limit}{held}")


def cmd_show(args: argparse.Namespace) -> int:
    from mmq.budgets import Budgets

    async def go(settings, redis, records, storage):
        periods = await Budgets(redis, settings.key_prefix).tenant(args.tenant)
        _print_spend(args.tenant, periods, args.json)
        return 0

    return asyncio.run(with_records(go))


def cmd_set(args: argparse.Namespace) -> int:
    from mmq.budgets import Budgets

    if args.day is None and args.month is None:
        raise UserError("mmq budget set: give --day USD and/or --month USD (or none to remove one)")
    changes = {"day": args.day, "month": args.month}
    amounts = {p: _amount(v, f"--{p}") for p, v in changes.items() if v is not None}

    async def go(settings, redis, records, storage):
        budgets = Budgets(redis, settings.key_prefix)
        for period, amount in amounts.items():
            await budgets.set_tenant(args.tenant, period, amount)
        _print_spend(args.tenant, await budgets.tenant(args.tenant), args.json)
        return 0

    return asyncio.run(with_records(go))


def cmd_batch(args: argparse.Namespace) -> int:
    from mmq.budgets import Budgets, dollars

    amount = _amount(args.max_cost, "--max-cost")

    async def go(settings, redis, records, storage):
        if not await Budgets(redis, settings.key_prefix).set_batch(args.batch_id, amount):
            raise UserError(f"no batch {args.batch_id} (see `mmq batches`)")
        batch = await records.get_batch(args.batch_id)
        limit = dollars(batch.max_cost_micro_usd)
        print(
            f"{batch.id}: ${dollars(batch.spent_micro_usd)} spent of "
            + (f"${limit}" if limit else "no budget")
            + (f"; {batch.counts.budget} job(s) waiting for it check again" if batch.counts.budget else "")
        )
        return 0

    return asyncio.run(with_records(go))


def add_parsers(sub: Any) -> None:
    b = sub.add_parser("budget", help="spending and budgets (operators: tenant budgets, a batch's max cost)")
    actions = b.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="a tenant's spending and budgets this UTC day and month")
    show.add_argument("--tenant", default="default", help="whose (default: default)")
    add_json(show, "the spending")
    show.set_defaults(fn=cmd_show)
    put = actions.add_parser("set", help="set a tenant's daily and/or monthly budget (wakes waiting jobs)")
    put.add_argument("--tenant", required=True, help="whose budget")
    put.add_argument("--day", metavar="USD", help="the budget per UTC day, or none")
    put.add_argument("--month", metavar="USD", help="the budget per UTC month, or none")
    add_json(put, "the spending after the change")
    put.set_defaults(fn=cmd_set)
    one = actions.add_parser("batch", help="raise, lower or remove one batch's budget (wakes waiting jobs)")
    one.add_argument("batch_id", metavar="BATCH_ID", help="the batch (see `mmq batches`)")
    one.add_argument("--max-cost", required=True, metavar="USD", help="the new budget in USD, or none")
    one.set_defaults(fn=cmd_batch)
