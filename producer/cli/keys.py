"""`mmq keys create|list|revoke`: API keys, made and revoked by an operator on the Redis host.

Keys live in Redis (producer/api_keys.py): a key made here works on the API's next request, a revoked one
is refused (401) from its next request on, and console sessions opened with it end; the API is not
restarted and no file is edited. `create` prints the key once, on stdout; Redis keeps only its SHA-256.
`list` shows the keys made here and the configured ones (MMQ_API_KEYS, MMQ_API_KEYS_FILE) by id, tenant,
name, first characters and age, never a key. `revoke` takes a key's id (from `list`), its name, its first
characters, or the key itself; a configured key can be revoked too (Redis remembers it as revoked).

These commands always work on Redis (MMQ_REDIS_URL), whatever MMQ_API_URL says: a key cannot make keys.
A key of tenant `default` sees the batches made in admin mode without `--tenant`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from producer.cli.errors import UserError
from producer.cli.flags import DEFAULT_TENANT, add_json

if TYPE_CHECKING:
    from producer.api_keys import ApiKeyStore, KeyInfo

_HEX = re.compile(r"^[0-9a-f]{6,64}$")
HEADERS = ("ID", "TENANT", "NAME", "KEY", "CREATED", "STATE", "SOURCE")


async def _with_store(fn):  # type: ignore[no-untyped-def]
    """`await fn(settings, store)` on a checked connection to MMQ_REDIS_URL (no store needed)."""
    from mmq.settings import get_settings
    from producer.api_keys import ApiKeyStore
    from producer.cli.common import connect_checked

    settings = get_settings()
    redis = await connect_checked(settings)
    try:
        return await fn(settings, ApiKeyStore(redis, settings.key_prefix))
    finally:
        await redis.aclose()


def _configured(settings: Any) -> list[KeyInfo]:
    from producer.auth import KeyTable

    try:
        return KeyTable(settings).configured_keys()
    except (OSError, ValueError) as e:
        raise UserError(f"MMQ_API_KEYS_FILE={settings.api_keys_file}: {e}") from None


async def every_key(settings: Any, store: ApiKeyStore) -> list[KeyInfo]:
    """The keys made in Redis and the configured ones (a configured key revoked here shows revoked)."""
    found = {k.key_hash: k for k in _configured(settings)}
    for k in await store.all():
        was = found.get(k.key_hash)
        found[k.key_hash] = k if was is None else replace(was, revoked=k.revoked)
    return sorted(found.values(), key=lambda k: (k.created or 0, k.tenant, k.name))


def _state(k: KeyInfo, now: float) -> str:
    from producer.cli.humanize import ago

    return f"revoked {ago(k.revoked, now)}" if k.revoked else "active"


def table(keys: list[KeyInfo], now: float) -> list[str]:
    from producer.cli.humanize import ago

    rows = [
        (
            k.id,
            k.tenant,
            k.name or "-",
            f"{k.prefix}…" if k.prefix else "-",
            ago(k.created, now) if k.created else "-",
            _state(k, now),
            k.source,
        )
        for k in keys
    ]
    widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [HEADERS, *rows]]


def cmd_create(args: argparse.Namespace) -> int:
    from producer.api_keys import TENANT_NAME

    if not TENANT_NAME.match(args.tenant):
        raise UserError(
            f"--tenant {args.tenant!r}: a tenant is 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit."
        )

    async def go(settings, store):
        if args.name:
            same = [k for k in await store.all() if (k.tenant, k.name) == (args.tenant, args.name)]
            if any(k.revoked is None for k in same):
                raise UserError(
                    f"tenant {args.tenant!r} already has an active key named {args.name!r}: choose "
                    "another --name, or revoke that one first "
                    f"(`mmq keys revoke {args.name} --tenant {args.tenant}`)."
                )
        key, info = await store.create(args.tenant, args.name or "")
        print(key, flush=True)
        named = f", name {info.name!r}" if info.name else ""
        print(
            f"mmq: API key for tenant {info.tenant!r}{named}, id {info.id}: shown this once, keep it now. It "
            "works from the next request, no restart: as MMQ_API_KEY for the CLI (with MMQ_API_URL), as "
            "the OpenAI SDK's api_key, or to sign in to the console. Redis keeps only its SHA-256.",
            file=sys.stderr,
        )
        return 0

    return asyncio.run(_with_store(go))


def cmd_list(args: argparse.Namespace) -> int:
    async def go(settings, store):
        keys = [k for k in await every_key(settings, store) if args.tenant in (None, k.tenant)]
        if not args.all:
            keys = [k for k in keys if k.revoked is None]
        if args.json:
            shown = [
                {
                    "id": k.id,
                    "tenant": k.tenant,
                    "name": k.name,
                    "prefix": k.prefix,
                    "created": k.created,
                    "revoked": k.revoked,
                    "source": k.source,
                }
                for k in keys
            ]
            print(json.dumps(shown, indent=2))
        elif keys:
            print("\n".join(table(keys, time.time())))
        else:
            whose = f" for tenant {args.tenant!r}" if args.tenant else ""
            print(f"mmq: no keys{whose}; make one with `mmq keys create --tenant NAME`", file=sys.stderr)
        return 0

    return asyncio.run(_with_store(go))


def _matches(ref: str, keys: list[KeyInfo]) -> list[KeyInfo]:
    from producer.api_keys import PREFIX_CHARS, hash_key

    if ref.startswith("mmq_") and len(ref) > PREFIX_CHARS + 8:  # the key itself
        wanted = hash_key(ref)
        return [k for k in keys if k.key_hash == wanted]
    if _HEX.match(ref) and (by_id := [k for k in keys if k.key_hash.startswith(ref)]):
        return by_id
    return [k for k in keys if ref in (k.name, k.prefix) or (k.prefix and ref == f"{k.prefix}…")]


def cmd_revoke(args: argparse.Namespace) -> int:
    async def go(settings, store):
        keys = [k for k in await every_key(settings, store) if args.tenant in (None, k.tenant)]
        found = _matches(args.key, keys)
        if not found:
            raise UserError(
                f"no key matches {args.key!r}"
                + (f" for tenant {args.tenant!r}" if args.tenant else "")
                + ": give its ID, name or first characters from `mmq keys list`, or the key itself."
            )
        active = [k for k in found if k.revoked is None]
        if not active:
            print(f"mmq: key {found[0].id} (tenant {found[0].tenant!r}) was already revoked", file=sys.stderr)
            return 0
        if len(active) > 1:
            listed = "; ".join(f"{k.id} (tenant {k.tenant!r}, name {k.name or '-'})" for k in active)
            raise UserError(f"{args.key!r} matches {len(active)} keys: {listed}. Give the ID of one.")
        k = active[0]
        await store.revoke(k)
        named = f", name {k.name!r}" if k.name else ""
        print(
            f"mmq: revoked key {k.id} (tenant {k.tenant!r}{named}): the API refuses it from its next request "
            "on, and console sessions opened with it end.",
            file=sys.stderr,
        )
        return 0

    return asyncio.run(_with_store(go))


def add_parsers(sub: Any) -> None:
    k = sub.add_parser(
        "keys",
        help="API keys: create, list, revoke (admin mode, on Redis; no API restart needed)",
        description=__doc__.split("\n\n")[1],
    )
    actions = k.add_subparsers(dest="action", required=True, metavar="ACTION")

    c = actions.add_parser("create", help="a new key for a tenant, printed once (Redis keeps its SHA-256)")
    c.add_argument(
        "--tenant",
        default=DEFAULT_TENANT,
        help=f"the tenant the key acts for (default: {DEFAULT_TENANT}, the tenant of admin-mode batches "
        "made without --tenant)",
    )
    c.add_argument(
        "--name", default="", help="a name to tell the key apart (e.g. laptop, ci), unique per tenant"
    )
    c.set_defaults(fn=cmd_create)

    ls = actions.add_parser("list", help="the keys by id, tenant, name, first characters, age (never a key)")
    ls.add_argument("--tenant", help="only this tenant's keys")
    ls.add_argument("--all", action="store_true", help="revoked keys too")
    add_json(ls, "the keys")
    ls.set_defaults(fn=cmd_list)

    r = actions.add_parser("revoke", help="refuse a key from the API's next request on")
    r.add_argument(
        "key",
        metavar="ID|NAME|KEY",
        help="the key's ID, name or first characters (`mmq keys list`), or the key",
    )
    r.add_argument("--tenant", help="look only among this tenant's keys (when names repeat across tenants)")
    r.set_defaults(fn=cmd_revoke)
