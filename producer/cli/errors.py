"""The user's mistakes and the machine's state, as one paragraph each instead of a traceback.

A command stops on a mistake it can name itself with `sys.exit("mmq: …")`. What it cannot foresee,
because it surfaces deep inside a library, is translated here once for every command: Redis that does
not answer, a store that lacks what Redis refers to, a setting that does not parse, a port in use. Each
message names the setting, the file or the command that fixes it. Anything else is a bug in mmq and
keeps its traceback.
"""

from __future__ import annotations

import errno
import re
from urllib.parse import urlsplit, urlunsplit


class UserError(Exception):
    """A mistake a command found while it ran (printed as `mmq: <message>`, exit status 1)."""


def redacted(url: str) -> str:
    """The URL without its password (MMQ_REDIS_URL may hold one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _why(cause: object) -> str:
    text = str(cause)
    if "Error 111 " in text or "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.rstrip(".")


def redis_unreachable(url: str, cause: object) -> str:
    return (
        f"cannot reach Redis at MMQ_REDIS_URL={redacted(url)} ({_why(cause)}). Start Redis (e.g. "
        "`docker compose up -d redis`), or point MMQ_REDIS_URL at a running server; `mmq run FILE` needs "
        "no Redis at all."
    )


def store_mismatch(storage_url: str, missing: object, command: str) -> str:
    return (
        f"a stored file this batch refers to ({missing}) is not in the store at MMQ_STORAGE_URL="
        f"{storage_url}. The API, the CLI and every worker must share one MMQ_STORAGE_URL (the same "
        "absolute path, file:///…, or the same bucket, s3://…); a relative path like the default "
        f"file://./mmq-data means a different store in each folder. Set it as the workers have it, then "
        f"run `mmq {command} …` again."
    )


def settings_invalid(error: object) -> str:
    """A pydantic ValidationError of mmq.settings.Settings: each bad MMQ_* variable with its problem."""
    problems = []
    for e in getattr(error, "errors", list)():
        name = "MMQ_" + "_".join(str(p) for p in e.get("loc", ())[:1]).upper()
        problems.append(f"{name}: {e.get('msg')} (got {e.get('input')!r})")
    listed = "; ".join(problems) or str(error)
    return f"a setting does not parse: {listed}. Fix it in the environment or in .env."


def port_in_use(host: str, port: int, command: str) -> str:
    return (
        f"port {port} on {host} is already in use (another `mmq api`, `mmq run` or other server?). "
        f"Stop that process or give this one another port: `mmq {command} --port {port + 1} …`."
    )


def explain(exc: BaseException, command: str) -> str | None:
    """The one-paragraph message for an exception a user can fix, or None for a bug (keep the traceback)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError
    from redis.exceptions import RedisError

    from mmq.extras import MissingExtra
    from mmq.settings import get_settings
    from mmq.storage import BlobNotFound

    if isinstance(exc, (UserError, MissingExtra)):  # MissingExtra: a feature whose extra is not installed
        return str(exc)
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return settings_invalid(exc)
    if isinstance(exc, SettingsError):  # a JSON-valued MMQ_* variable that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"MMQ_{field.group(1).upper()}" if field else "an MMQ_* variable"
        return f"{name} does not parse as JSON. Fix it in the environment or in .env."
    settings = get_settings()
    if isinstance(exc, RedisError):
        return redis_unreachable(settings.redis_url or "", exc)
    if isinstance(exc, BlobNotFound):
        return store_mismatch(settings.storage_url, exc.args[0] if exc.args else exc, command)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"{exc.strerror}: another process holds the port; stop it or pass --port with a free one."
    return None
