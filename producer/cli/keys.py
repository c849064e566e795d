"""`mmq keys create --tenant NAME`: a new API key, shown once, and the hash to configure for it."""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_keys(args: argparse.Namespace) -> int:
    from producer.auth import hash_key, new_key

    key = new_key()
    print(f"API key for tenant {args.tenant!r} (shown once): {key}")
    print("Add to MMQ_API_KEYS (JSON) or the MMQ_API_KEYS_FILE object:")
    print(json.dumps({hash_key(key): args.tenant}))
    return 0


def add_parsers(sub: Any) -> None:
    k = sub.add_parser("keys", help="create an API key for a tenant")
    k.add_argument("action", choices=["create"], help="create: a new key, printed once")
    k.add_argument("--tenant", required=True, help="the tenant the key acts for")
    k.set_defaults(fn=cmd_keys)
