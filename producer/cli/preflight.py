"""Checks a long-running command makes before it starts: its port is free, and a worker can pay its
default target.

A server that cannot bind its port must say so and exit, not run on without it (`mmq run` used to drop
its API silently). A worker whose default target is OpenAI's public endpoint but has no key would start
quietly and fail every job with 401: it refuses to start instead. When a routing config could supply
the keys (MMQ_DEFAULT_CONFIG, virtual keys in MMQ_SECRETS_FILE or MMQ_VK_* variables) the jobs that
carry such a config can still run, so the worker starts and warns loudly: refusing would block a
deployment where every batch names its own target.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

from mmq.settings import Settings
from producer.cli.errors import UserError, port_in_use

PUBLIC_OPENAI_HOST = "api.openai.com"


def bound_socket(host: str, port: int, command: str) -> socket.socket:
    """A socket bound to host:port for a server to listen on (uvicorn's `sockets=`), or UserError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(port_in_use(host, port, command)) from None
        why = e.strerror or e
        raise UserError(f"cannot listen on {host}:{port} ({why}); pass another --host or --port.") from None
    return sock


def check_port_free(host: str, port: int, command: str) -> None:
    """For a server that binds its own socket a moment later (`mmq run`'s embedded API)."""
    bound_socket(host, port, command).close()


def default_key(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """The key of the worker's default target, found as worker.targets.default_target finds it."""
    if settings.openai_api_key and settings.openai_api_key.get_secret_value():
        return settings.openai_api_key.get_secret_value()
    return environ.get("OPENAI_API_KEY") or None


def _config_may_supply_keys(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    sources = []
    if settings.default_config:
        sources.append("MMQ_DEFAULT_CONFIG")
    if settings.secrets_file:
        sources.append("MMQ_SECRETS_FILE")
    if any(name.startswith("MMQ_VK_") for name in environ):
        sources.append("MMQ_VK_* variables")
    return sources


def provider_key_problem(settings: Settings, environ: Mapping[str, str] = os.environ) -> tuple[str, bool]:
    """('', False) when the default target can be called; else (message, fatal): fatal when nothing
    could supply a key, a warning when a routing config could."""
    host = urlsplit(settings.openai_base_url).hostname
    if settings.provider != "openai" or host != PUBLIC_OPENAI_HOST or default_key(settings, environ):
        return "", False
    what = (
        f"no API key for the default target ({settings.openai_base_url}): MMQ_OPENAI_API_KEY and "
        "OPENAI_API_KEY are unset"
    )
    fix = (
        "Set MMQ_OPENAI_API_KEY (in the environment or .env), or point MMQ_OPENAI_BASE_URL at your own "
        "OpenAI-compatible server (e.g. `mmq simulate`'s http://127.0.0.1:8090/v1)"
    )
    sources = _config_may_supply_keys(settings, environ)
    if not sources:
        return f"mmq worker: {what}, so every job would fail with 401. {fix}.", True
    return (
        f"mmq worker: WARNING: {what}. Jobs whose routing config names a key ({', '.join(sources)}) run; "
        f"every other job will fail with 401. {fix}.",
        False,
    )
