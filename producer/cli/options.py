"""The option groups several commands share, and how they become Producer.submit_batch arguments.

`mmq submit`, `mmq template run` and the workflow commands (caption, transcribe, generate-images, speak)
take the same cache flags (--cache-level, --no-cache, --refresh-cache, --cache-ttl, --cache-threshold),
the same scheduling flags (--priority, --not-before, --deadline, --webhook), image fitting (--max-side,
--max-bytes) and a routing config file (--config); batch_options turns them into
submit_batch keywords.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def cache_option(args: argparse.Namespace) -> dict[str, Any] | bool | None:
    """The `cache=` for Producer.submit_batch from the --cache-* flags; None when no flag is given (the
    producer's default: exact-level cache)."""
    given = {
        "level": args.cache_level,
        "ttl_s": args.cache_ttl,
        "refresh": True if args.refresh_cache else None,
        "threshold": args.cache_threshold,
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    if args.no_cache:
        if chosen:
            sys.exit("mmq: --no-cache cannot be combined with --cache-level/--cache-ttl/--refresh-cache")
        return False
    return chosen or None


def _read_config(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as e:
        sys.exit(f"mmq: --config {path}: {e.strerror or e}")


def batch_options(args: argparse.Namespace, producer: Any) -> dict[str, Any]:
    """submit_batch keyword arguments shared by `submit` and the workflow commands."""
    media = {"max_side": getattr(args, "max_side", None), "max_bytes": getattr(args, "max_bytes", None)}
    options: dict[str, Any] = {
        "tenant": args.tenant,
        "config": _read_config(args.config),
        "media": {k: v for k, v in media.items() if v} or None,
    }
    cache = cache_option(args)
    if cache is not None:  # only when asked: the default stays the producer's own
        options["cache"] = cache
    return options | schedule_options(args)


def parse_when(text: str, after: float | None = None) -> float:
    """`01:00` (the next such local time after `after`, default now), an ISO date-time, or epoch seconds."""
    import datetime as dt

    try:
        return float(text)
    except ValueError:
        pass
    base = dt.datetime.fromtimestamp(after or time.time()).astimezone()
    try:
        clock = dt.time.fromisoformat(text)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            sys.exit(f"mmq: {text!r} is not a time (HH:MM), an ISO date-time or epoch seconds")
        return (moment if moment.tzinfo else moment.astimezone()).timestamp()
    moment = base.replace(hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0)
    if moment.timestamp() <= base.timestamp():
        moment += dt.timedelta(days=1)
    return moment.timestamp()


def schedule_options(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"priority": getattr(args, "priority", "normal")}
    if getattr(args, "not_before", None):
        out["not_before"] = parse_when(args.not_before)
    if getattr(args, "deadline", None):
        out["deadline"] = parse_when(args.deadline, after=out.get("not_before"))
    if getattr(args, "webhook", None):
        out["webhook_url"] = args.webhook
    if getattr(args, "max_cost", None) is not None:
        out["max_cost"] = args.max_cost
    if getattr(args, "on_budget", None):
        out["on_budget"] = args.on_budget
    if getattr(args, "tier", None):
        out["tier"] = args.tier
    return out


def add_schedule_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scheduling")
    g.add_argument(
        "--priority",
        choices=["high", "normal", "low"],
        default="normal",
        help="every due high job runs before any normal one, every normal before any low (default: normal)",
    )
    g.add_argument("--not-before", metavar="WHEN", help="no job starts before (01:00, ISO time, epoch s)")
    g.add_argument("--deadline", metavar="WHEN", help="what has not run by then expires (batch_expired)")
    g.add_argument(
        "--tier",
        choices=["realtime", "batch", "auto"],
        help="batch: through the providers' own batch APIs at their batch price; auto (the default with a "
        "--deadline an hour away or more): batch for what can wait, realtime for the rest",
    )
    g.add_argument(
        "--webhook", metavar="URL", help="POST the batch here when it ends (MMQ_WEBHOOK_SECRET signs)"
    )
    b = p.add_argument_group("budget")
    b.add_argument(
        "--max-cost",
        metavar="USD",
        help="no call starts that could take the batch's spending past this (e.g. 40 for $40)",
    )
    b.add_argument(
        "--on-budget",
        choices=["wait", "fail"],
        help="at the budget, jobs wait until it is raised (default) or fail with budget_exceeded",
    )


def add_cache_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cache (default: the exact-bytes cache)")
    g.add_argument(
        "--cache-level", choices=["exact", "pixels", "perceptual"], help="how alike inputs must be"
    )
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    g.add_argument(
        "--refresh-cache", action="store_true", help="call the provider and overwrite cached results"
    )
    g.add_argument("--cache-ttl", type=int, metavar="SECONDS", help="how long new cache entries live")
    g.add_argument("--cache-threshold", type=int, metavar="BITS", help="perceptual level: max hash distance")


def add_config_option(p: argparse.ArgumentParser, what: str = "for every job") -> None:
    p.add_argument("--config", metavar="FILE.json", help=f"routing config file (Portkey schema, JSON) {what}")


def add_media_options(p: argparse.ArgumentParser) -> None:
    """--max-side and --max-bytes: how images are fitted before they are sent (submit_batch's media)."""
    g = p.add_argument_group("images")
    g.add_argument(
        "--max-side", type=int, metavar="PX", help="downscale images to this longest side before sending"
    )
    g.add_argument(
        "--max-bytes", type=int, metavar="BYTES", help="re-encode images above this size before sending"
    )
