"""How provider answers become one error type: Retry-After in every form an OpenAI-dialect sends."""

from __future__ import annotations

import httpx
import pytest

from mmq.errors import parse_go_duration, parse_retry_after
from worker.providers.openai import error_from_response


def rate_limited(**headers: str) -> httpx.Response:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    return httpx.Response(429, json=body, headers=headers)


def test_retry_after_ms_wins_over_seconds():
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25


def test_an_http_date_retry_after_counts_from_now():
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2026 00:00:10 GMT"}, now=1767225600.0) == 10.0


@pytest.mark.parametrize(("value", "seconds"), [("6m0s", 360.0), ("1.5s", 1.5), ("250ms", 0.25), ("2", 2.0)])
def test_go_durations(value, seconds):
    assert parse_go_duration(value) == pytest.approx(seconds)


def test_a_429_without_retry_after_waits_for_the_exhausted_limit_to_reset():
    err = error_from_response(
        rate_limited(
            **{
                "x-ratelimit-remaining-requests": "12",
                "x-ratelimit-reset-requests": "200ms",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "6m0s",
            }
        ),
        "openai",
    )
    assert err.retryable and err.retry_after_s == pytest.approx(360.0)


def test_retry_after_beats_the_reset_headers():
    err = error_from_response(
        rate_limited(**{"retry-after": "2", "x-ratelimit-reset-requests": "9s"}), "openai"
    )
    assert err.retry_after_s == 2.0
