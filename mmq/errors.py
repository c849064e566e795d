"""One error type for every provider failure, and Retry-After parsing in the forms providers send."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

# Statuses worth another try. 400/401/403/404/422 cannot succeed by repetition.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# A 429 with these codes means "pay first", not "slow down".
NON_RETRYABLE_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


class ProviderError(Exception):
    """A provider call that did not produce a usable answer."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        provider: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.provider = provider

    def __str__(self) -> str:
        where = f"{self.provider} " if self.provider else ""
        status = f"HTTP {self.status}" if self.status else "no response"
        code = f" ({self.code})" if self.code else ""
        return f"{where}{status}{code}: {self.message}"


def unparseable(provider: str, body: object, status: int = 200, message: str | None = None) -> ProviderError:
    """A success status whose body is not a usable answer: a provider failure worth retrying, never a
    result."""
    return ProviderError(
        message or f"HTTP {status} with an unusable body: {str(body)[:200]!r}",
        status=status,
        code="unparseable_response",
        retryable=True,
        provider=provider,
    )


class InvalidJob(Exception):
    """The job itself is wrong (bad request body, unusable media): fail it, never retry it."""

    def __init__(self, message: str, *, type: str = "invalid_request") -> None:
        super().__init__(message)
        self.type = type


def is_retryable(status: int, code: str | None) -> bool:
    return status in RETRYABLE_STATUSES and code not in NON_RETRYABLE_CODES


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from `retry-after-ms`, `retry-after` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:h|ms|us|µs|ns|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNITS: dict[str, float] = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
RATE_LIMIT_FAMILIES = ("requests", "tokens")


def parse_go_duration(value: str | None) -> float | None:
    """Seconds in a Go duration as OpenAI and Groq send them ("2m59.56s", "7.66s", "12ms"), or plain
    seconds."""
    text = (value or "").strip()
    if not text:
        return None
    if not _DURATION.fullmatch(text):
        try:
            return max(0.0, float(text))
        except ValueError:
            return None
    return sum(float(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(text))


def ratelimit_reset_s(headers: Mapping[str, str]) -> float | None:
    """When an OpenAI-style limit lifts (x-ratelimit-reset-*): the latest reset among exhausted
    families (remaining 0); failing that, the requests reset, then the tokens one."""
    resets = {f: parse_go_duration(headers.get(f"x-ratelimit-reset-{f}")) for f in RATE_LIMIT_FAMILIES}
    exhausted = [
        reset
        for family, reset in resets.items()
        if reset is not None and headers.get(f"x-ratelimit-remaining-{family}") == "0"
    ]
    if exhausted:
        return max(exhausted)
    return resets["requests"] if resets["requests"] is not None else resets["tokens"]
